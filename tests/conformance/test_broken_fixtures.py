"""The suite catches broken implementations: against each fixture EXACTLY the cases that check the broken rule fail."""

from __future__ import annotations

from urllib.parse import urlsplit

from gateway.conformance.cases import load_cases
from gateway.demo.exchange import free_port
from tests.conformance.fixtures.broken import (SKIPS_FRESHNESS, AcceptsAlgNone, CorruptsInclusionProofs, NewReceiptOnRedelivery,
                                               ReceiptsTheWrongDigest, TakesEveryTrustList)
from tests.conformance.fixtures.proxy import proxy
from tests.conformance.fixtures.simulator import simulator
from tests.conformance.suite import (KNOWN_HUB_DEFECTS, PRODUCTION_ONLY, PROFILE_CASES, endpoint_with_the_suite_as_hub,
                                     routes_refusing_the_suites_route, run_suite, verdicts)
from tests.hub.harness import running_hub


THROUGH_THE_PROXY = {"hub-transport-005"}
"""Cases the test proxy itself fails: it reads a whole body before forwarding, so a declared Content-Length over its own
limit gets aiohttp's plain 413 (no problem details), not the hub's refusal."""


def _failed(report) -> set[str]:
    assert verdicts(report, "error") == set() and verdicts(report, "skip") <= PROFILE_CASES | PRODUCTION_ONLY
    return verdicts(report, "fail")


def test_a_hub_that_accepts_alg_none_fails_exactly_the_alg_none_case(database_url, tmp_path):
    with running_hub(database_url, routes=routes_refusing_the_suites_route()) as hub, proxy(hub.base_url, AcceptsAlgNone()) as broken:
        result, report = run_suite(broken, tmp_path)
    assert result.status == 1
    assert _failed(report) - set(KNOWN_HUB_DEFECTS) == {"hub-ingress-004"} | THROUGH_THE_PROXY


def test_a_hub_that_skips_freshness_fails_exactly_the_stale_and_future_cases(database_url, tmp_path):
    with running_hub(database_url, routes=routes_refusing_the_suites_route(), **SKIPS_FRESHNESS) as hub:
        result, report = run_suite(hub.base_url, tmp_path)
    assert result.status == 1
    assert _failed(report) - set(KNOWN_HUB_DEFECTS) == {"hub-ingress-012", "hub-ingress-013", "hub-bulk-002"}, (
        "hub-bulk-002 holds a stale line among good ones (PROTO-12.9-1)")


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def test_an_endpoint_that_receipts_the_wrong_digest_fails_exactly_the_cases_it_accepts(tmp_path):
    accepting = {case.id for case in load_cases("endpoint")
                 if any(step.get("expect", {}).get("receipt") == "accepted" for step in case.steps)}
    with endpoint_with_the_suite_as_hub(tmp_path) as (endpoint, serving), proxy(_origin(endpoint), ReceiptsTheWrongDigest()) as broken:
        result, report = run_suite(broken + "/v1/deliveries", tmp_path / "report", *serving, role="endpoint")
    assert result.status == 1 and len(accepting) > 10
    assert _failed(report) == accepting
    assert all("names another digest" in r["reason"] for r in report["results"] if r["verdict"] == "fail")


def test_an_endpoint_that_answers_a_redelivery_with_another_receipt_fails_exactly_the_redelivery_cases(tmp_path):
    # With the suite as its hub: the simulator judges an unknown key once it can fetch its hub's list (§9.4).
    with endpoint_with_the_suite_as_hub(tmp_path) as (endpoint, serving), \
            proxy(_origin(endpoint), NewReceiptOnRedelivery()) as broken:
        result, report = run_suite(broken + "/v1/deliveries", tmp_path / "report", *serving, "-k", "endpoint-0*", role="endpoint")
    assert result.status == 1
    assert _failed(report) == {"endpoint-014", "endpoint-015"}
    assert all("not the same bytes" in r["reason"] for r in report["results"] if r["verdict"] == "fail")


def test_a_hub_whose_inclusion_proofs_lead_elsewhere_fails_exactly_the_proof_case(database_url, tmp_path):
    with running_hub(database_url) as hub, proxy(hub.base_url, CorruptsInclusionProofs()) as broken:
        result, report = run_suite(broken, tmp_path, "-k", "hub-ledger-*")
    assert result.status == 1
    assert _failed(report) == {"hub-ledger-001"}
    (failed,) = [r for r in report["results"] if r["verdict"] == "fail"]
    assert "the inclusion proof does not verify: the inclusion proof leads to another root" in failed["reason"]


def test_an_endpoint_that_takes_every_trust_list_fails_exactly_the_broken_list_cases(tmp_path):
    port = free_port()
    with proxy(f"http://127.0.0.1:{port}", TakesEveryTrustList()) as repairing, simulator(tmp_path, hub=repairing) as endpoint:
        result, report = run_suite(endpoint, tmp_path / "report", "--serve-hub", f"127.0.0.1:{port}", "-k", "trust-list", role="endpoint")
    broken_lists = {case.id for case in load_cases("endpoint") if "trust-list" in case.tags and "negative" in case.tags}
    assert result.status == 1
    assert _failed(report) == broken_lists - PRODUCTION_ONLY and len(broken_lists) == 11
    assert all("expected 'rejected', got 'accepted'" in r["reason"] for r in report["results"] if r["verdict"] == "fail")
