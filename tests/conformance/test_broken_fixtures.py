"""The suite catches broken implementations: against each fixture EXACTLY the cases that check the broken rule fail."""

from __future__ import annotations

from urllib.parse import urlsplit

from gateway.conformance.cases import load_cases
from tests.conformance.fixtures.broken import SKIPS_FRESHNESS, AcceptsAlgNone, NewReceiptOnRedelivery, ReceiptsTheWrongDigest
from tests.conformance.fixtures.proxy import proxy
from tests.conformance.fixtures.simulator import simulator
from tests.conformance.suite import KNOWN_HUB_DEFECTS, routes_refusing_the_suites_route, run_suite, verdicts
from tests.hub.harness import running_hub


def _failed(report) -> set[str]:
    assert verdicts(report, "error") == set() and verdicts(report, "skip") == set()
    return verdicts(report, "fail")


def test_a_hub_that_accepts_alg_none_fails_exactly_the_alg_none_case(database_url, tmp_path):
    with running_hub(database_url, routes=routes_refusing_the_suites_route()) as hub, proxy(hub.base_url, AcceptsAlgNone()) as broken:
        result, report = run_suite(broken, tmp_path)
    assert result.status == 1
    assert _failed(report) - set(KNOWN_HUB_DEFECTS) == {"hub-ingress-004"}


def test_a_hub_that_skips_freshness_fails_exactly_the_stale_and_future_cases(database_url, tmp_path):
    with running_hub(database_url, routes=routes_refusing_the_suites_route(), **SKIPS_FRESHNESS) as hub:
        result, report = run_suite(hub.base_url, tmp_path)
    assert result.status == 1
    assert _failed(report) - set(KNOWN_HUB_DEFECTS) == {"hub-ingress-012", "hub-ingress-013"}


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def test_an_endpoint_that_receipts_the_wrong_digest_fails_exactly_the_cases_it_accepts(tmp_path):
    accepting = {case.id for case in load_cases("endpoint")
                 if any(step.get("expect", {}).get("receipt") == "accepted" for step in case.steps)}
    with simulator(tmp_path) as endpoint, proxy(_origin(endpoint), ReceiptsTheWrongDigest()) as broken:
        result, report = run_suite(broken + "/v1/deliveries", tmp_path / "report", role="endpoint")
    assert result.status == 1 and len(accepting) > 10
    assert _failed(report) == accepting
    assert all("names another digest" in r["reason"] for r in report["results"] if r["verdict"] == "fail")


def test_an_endpoint_that_answers_a_redelivery_with_another_receipt_fails_exactly_the_redelivery_cases(tmp_path):
    with simulator(tmp_path) as endpoint, proxy(_origin(endpoint), NewReceiptOnRedelivery()) as broken:
        result, report = run_suite(broken + "/v1/deliveries", tmp_path / "report", role="endpoint")
    assert result.status == 1
    assert _failed(report) == {"endpoint-014", "endpoint-015"}
    assert all("not the same bytes" in r["reason"] for r in report["results"] if r["verdict"] == "fail")
