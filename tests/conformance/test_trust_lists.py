"""The trust-list cases (conformance/cases/endpoint-trust.json): against an endpoint configured for production too, and
skipped, with the reason, when the suite cannot serve the endpoint's hub or the endpoint never fetches from it."""

from __future__ import annotations

import json

from gateway.conformance.cases import load_cases
from gateway.contract import contract_dir
from gateway.demo.exchange import free_port
from tests.conformance.fixtures.simulator import simulator
from tests.conformance.suite import endpoint_with_the_suite_as_hub, run_suite

TRUST_CASES = {case.id for case in load_cases("endpoint") if case.id.startswith("endpoint-trust-")}


def test_an_endpoint_configured_for_production_takes_production_lists_and_refuses_a_test_mode_one(tmp_path):
    document = json.loads((contract_dir("keys") / "test" / "trust-list.json").read_text("utf-8"))
    document["mode"] = "production"
    for entry in document["keys"]:
        entry["test_key"] = False  # a closed rehearsal: the published keys, trusted as if they were not test keys
    anchor = tmp_path / "production-anchor.json"
    anchor.write_text(json.dumps(document), "utf-8")
    with endpoint_with_the_suite_as_hub(tmp_path, anchor=anchor) as (endpoint, serving):
        result, report = run_suite(endpoint, tmp_path / "report", *serving, "--trust", str(anchor), "--endpoint-mode", "production",
                                   "-k", "endpoint-trust-*", role="endpoint")
    assert result.status == 0, result.stdout + result.stderr
    assert report["counts"] == {"pass": len(TRUST_CASES), "fail": 0, "skip": 0, "error": 0} and len(TRUST_CASES) == 12


def test_without_serve_hub_the_trust_list_cases_skip_with_their_reason(tmp_path):
    with simulator(tmp_path) as endpoint:
        result, report = run_suite(endpoint, tmp_path / "report", "-k", "endpoint-trust-*", role="endpoint")
    assert result.status == 3
    assert {r["case"] for r in report["results"]} == TRUST_CASES
    assert all("--serve-hub" in r["reason"] or "--endpoint-mode production" in r["reason"] for r in report["results"])


def test_an_endpoint_that_never_fetches_from_the_suite_skips_the_cases_rather_than_passing_them(tmp_path):
    with simulator(tmp_path) as endpoint:  # its hub is elsewhere: it never reads the lists the suite serves
        result, report = run_suite(endpoint, tmp_path / "report", "--serve-hub", f"127.0.0.1:{free_port()}", "--trust-fetch-wait", "2",
                                   "--case", "endpoint-trust-001", "--case", "endpoint-trust-002", role="endpoint")
    assert result.status == 3
    assert all(r["verdict"] == "skip" and "did not fetch GET /v1/trust-list" in r["reason"] for r in report["results"])
