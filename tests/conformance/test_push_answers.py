"""The push-answer cases (conformance/cases/hub-push.json) against our hub pushing HK's deliveries to the suite
(--receive-at): every bad answer is a failed attempt the hub retries (PROTO-12.5-2)."""

from __future__ import annotations

from gateway.conformance.cases import load_cases
from gateway.demo.exchange import free_port
from gateway.hub.delivery import DeliveryPolicy
from tests.conformance.suite import run_suite
from tests.hub.harness import running_hub

PUSH_CASES = {case.id for case in load_cases("hub") if case.profile == "push-receiver"}
QUICK_RETRIES = DeliveryPolicy(retry_initial_seconds=0.2, retry_max_seconds=1.0, sweep_seconds=0.5)
"""Retries within a second, so that a redelivery comes well inside the suite's wait."""


def test_every_push_answer_case_passes_against_a_hub_that_pushes_to_the_suite(database_url, tmp_path):
    port = free_port()
    with running_hub(database_url, push_endpoints={"HK": f"http://127.0.0.1:{port}/v1/deliveries"}, delivery=QUICK_RETRIES) as hub:
        result, report = run_suite(hub.base_url, tmp_path, "--receive-at", f"127.0.0.1:{port}", "--push-wait", "20", "-k", "hub-push-*")
    assert result.status == 0, result.stdout + result.stderr
    assert report["counts"] == {"pass": len(PUSH_CASES), "fail": 0, "skip": 0, "error": 0} and len(PUSH_CASES) == 4


def test_a_hub_that_never_retries_fails_every_push_answer_case(database_url, tmp_path):
    port = free_port()
    never = DeliveryPolicy(retry_initial_seconds=3600.0, retry_max_seconds=3600.0, sweep_seconds=3600.0)
    with running_hub(database_url, push_endpoints={"HK": f"http://127.0.0.1:{port}/v1/deliveries"}, delivery=never) as hub:
        result, report = run_suite(hub.base_url, tmp_path, "--receive-at", f"127.0.0.1:{port}", "--push-wait", "3", "-k", "hub-push-*")
    assert result.status == 1
    assert {r["case"] for r in report["results"] if r["verdict"] == "fail"} == PUSH_CASES
    assert all("did not push the message again after the bad answer" in r["reason"] for r in report["results"])
