"""`gateway conformance run` against our own hub and against the simulator as an endpoint: every case passes;
filters, set-up faults and the reports behave as docs/conformance.md says."""

from __future__ import annotations

from xml.etree import ElementTree

from gateway.conformance.cases import load_cases
from gateway.demo.exchange import free_port
from tests.conformance.fixtures.broken import Fault
from tests.conformance.fixtures.proxy import Exchange, Reply, proxy
from tests.conformance.suite import (CN_GD_KEY, KEYS, KNOWN_HUB_DEFECTS, PRODUCTION_ONLY, PROFILE_CASES, cli, endpoint_with_the_suite_as_hub,
                                     routes_refusing_the_suites_route, run_suite, verdicts)
from tests.hub.harness import running_hub


def test_every_hub_case_passes_against_our_own_hub(database_url, tmp_path):
    with running_hub(database_url, routes=routes_refusing_the_suites_route()) as hub:
        result, report = run_suite(hub.base_url, tmp_path)
    cases = load_cases("hub")
    assert report["format"] == "gba-conformance-report/v1" and report["role"] == "hub"
    assert {r["case"] for r in report["results"]} == {case.id for case in cases}
    assert verdicts(report, "fail") == set(KNOWN_HUB_DEFECTS), result.stdout
    assert verdicts(report, "skip") == PROFILE_CASES, "only the cases that need a set-up this hub lacks skip"
    assert report["counts"] == {"pass": len(cases) - len(KNOWN_HUB_DEFECTS) - len(PROFILE_CASES), "fail": len(KNOWN_HUB_DEFECTS),
                                "skip": len(PROFILE_CASES), "error": 0}
    assert result.status == (1 if KNOWN_HUB_DEFECTS else 0)
    assert all(r["evidence"] and r["requirements"] for r in report["results"] if r["verdict"] != "skip"), (
        "every verdict carries its evidence and requirements")
    assert all(r["reason"] and not r["evidence"] for r in report["results"] if r["verdict"] == "skip"), "a skip says why, and sent nothing"
    suite = ElementTree.parse(tmp_path / "junit.xml").getroot()
    assert suite.get("tests") == str(len(cases)) and suite.get("failures") == str(len(KNOWN_HUB_DEFECTS))
    assert f"[{len(cases)}/{len(cases)}]" in result.stdout, "progress is printed per case"


def test_every_endpoint_case_passes_against_the_simulator(tmp_path):
    with endpoint_with_the_suite_as_hub(tmp_path) as (endpoint, serving):
        result, report = run_suite(endpoint, tmp_path / "report", *serving, role="endpoint")
    cases = load_cases("endpoint")
    assert result.status == 0, result.stdout + result.stderr
    assert verdicts(report, "skip") == PRODUCTION_ONLY
    assert report["role"] == "endpoint" and report["counts"] == {"pass": len(cases) - len(PRODUCTION_ONLY), "fail": 0,
                                                                 "skip": len(PRODUCTION_ONLY), "error": 0}


def test_without_a_refused_route_the_route_case_is_skipped_with_its_reason(database_url, tmp_path):
    with running_hub(database_url) as hub:
        result = cli("conformance", "run", "--target", hub.base_url, "--as", "CN-GD", "--key", CN_GD_KEY, "-k", "route the policy",
                         "--report-dir", str(tmp_path))
    assert result.status == 3 and "SKIP" in result.stdout and "no --refused-route" in result.stdout
    assert "every selected case was skipped" in result.stderr


def test_a_filter_that_matches_nothing_is_an_error_not_a_pass(tmp_path):
    result = cli("conformance", "run", "--target", "http://127.0.0.1:9", "--as", "CN-GD", "--key", CN_GD_KEY, "-k", "no-such-case-anywhere",
                     "--report-dir", str(tmp_path))
    assert result.status == 3 and "nothing was run" in result.stderr


def test_an_unreachable_target_is_a_set_up_error_not_failed_cases(tmp_path):
    result = cli("conformance", "run", "--target", f"http://127.0.0.1:{free_port()}", "--as", "CN-GD", "--key", CN_GD_KEY,
                     "--case", "hub-ingress-001", "--report-dir", str(tmp_path))
    assert result.status == 2 and "preflight: cannot reach" in result.stderr
    assert not (tmp_path / "conformance.json").exists()


def test_a_key_that_is_not_the_jurisdictions_is_a_set_up_error(database_url, tmp_path):
    with running_hub(database_url) as hub:
        result = cli("conformance", "run", "--target", hub.base_url, "--as", "CN-GD", "--key", str(KEYS / "test-hk-message-1.key.jwk"),
                         "--case", "hub-ingress-001", "--report-dir", str(tmp_path))
    assert result.status == 2 and "preflight" in result.stderr and "not a message key of CN-GD" in result.stderr
    assert not (tmp_path / "conformance.json").exists()


class _SaysProduction(Fault):
    async def rewrite(self, request: Exchange, reply: Reply) -> Reply:
        if request.path == "/v1/about":
            return Reply(200, "application/json", reply.body.replace(b'"test"', b'"production"'))
        return reply


def test_a_production_hub_is_refused_unless_allowed(database_url, tmp_path):
    with running_hub(database_url) as hub, proxy(hub.base_url, _SaysProduction()) as production:
        refused = cli("conformance", "run", "--target", production, "--as", "CN-GD", "--key", CN_GD_KEY, "--case", "hub-ingress-001",
                          "--report-dir", str(tmp_path / "refused"))
        allowed = cli("conformance", "run", "--target", production, "--as", "CN-GD", "--key", CN_GD_KEY, "--case", "hub-ingress-001",
                          "--allow-production", "--report-dir", str(tmp_path / "allowed"))
    assert refused.status == 2 and "mode 'production'" in refused.stderr
    assert allowed.status == 0, allowed.stdout + allowed.stderr


def test_the_endpoint_role_needs_the_endpoints_jurisdiction(tmp_path):
    result = cli("conformance", "run", "--role", "endpoint", "--target", "http://127.0.0.1:9/v1/deliveries", "--as", "CN-GD",
                     "--key", CN_GD_KEY, "--report-dir", str(tmp_path))
    assert result.status == 2 and "--to" in result.stderr


def test_a_trust_list_that_cannot_be_read_is_a_set_up_error(tmp_path):
    broken = tmp_path / "trust.json"
    broken.write_text("{", "utf-8")
    result = cli("conformance", "run", "--target", "http://127.0.0.1:9", "--as", "CN-GD", "--key", CN_GD_KEY, "--trust", str(broken),
                     "--case", "hub-ingress-001", "--report-dir", str(tmp_path))
    assert result.status == 2 and "cannot read the trust list" in result.stderr
