"""The witness cases (conformance/cases/endpoint-witness.json) against the simulator as HK's witness of the suite's
own log: every answer of C2SP tlog-witness, down to the size in a 409 and the cosignature in a 200."""

from __future__ import annotations

from urllib.parse import urlsplit

from gateway.conformance import published_keys
from gateway.conformance.cases import load_cases
from gateway.conformance.crafting import SigningKey
from gateway.conformance.witness import DEFAULT_ORIGIN, log_vkey
from gateway.ledger import notes
from tests.conformance.fixtures.simulator import simulator
from tests.conformance.suite import run_suite
from tests.conftest import REPO

WITNESS_CASES = {case.id for case in load_cases("endpoint") if case.id.startswith("endpoint-witness-")}
LOG_KEY = SigningKey.load(published_keys.test_key_path("test-hub-checkpoint-1"))


def _witness_url(push_url: str) -> str:
    parts = urlsplit(push_url)
    return f"{parts.scheme}://{parts.netloc}/witness"


def test_the_suites_log_key_is_the_vkey_the_ledger_code_would_write():
    assert notes.parse_vkey(log_vkey(DEFAULT_ORIGIN, LOG_KEY)).vkey() == log_vkey(DEFAULT_ORIGIN, LOG_KEY)


def test_every_witness_case_passes_against_the_simulator_as_a_witness_and_again_once_it_holds_the_log(tmp_path):
    with simulator(tmp_path, witnessed_log=log_vkey(DEFAULT_ORIGIN, LOG_KEY)) as endpoint:
        arguments = ("--witness", _witness_url(endpoint), "-k", "endpoint-witness-*")
        first, first_report = run_suite(endpoint, tmp_path / "first", *arguments, role="endpoint")
        again, again_report = run_suite(endpoint, tmp_path / "again", *arguments, role="endpoint")
    for result, report in ((first, first_report), (again, again_report)):
        assert result.status == 0, result.stdout + result.stderr
        assert report["counts"] == {"pass": len(WITNESS_CASES), "fail": 0, "skip": 0, "error": 0}


def test_a_witness_that_does_not_list_the_suites_log_fails_every_case_with_the_vkey_to_add(tmp_path):
    other_origin = log_vkey("another.example/log", LOG_KEY)
    with simulator(tmp_path, witnessed_log=other_origin) as endpoint:
        result, report = run_suite(endpoint, tmp_path / "report", "--witness", _witness_url(endpoint), "-k", "endpoint-witness-*", role="endpoint")
    assert result.status == 1
    assert {r["case"] for r in report["results"] if r["verdict"] == "fail"} == WITNESS_CASES
    assert all(log_vkey(DEFAULT_ORIGIN, LOG_KEY) in r["reason"] for r in report["results"])


def test_without_a_witness_the_witness_cases_skip_with_their_reason(tmp_path):
    with simulator(tmp_path) as endpoint:
        result, report = run_suite(endpoint, tmp_path / "report", "-k", "endpoint-witness-*", role="endpoint")
    assert result.status == 3 and all("no --witness" in r["reason"] for r in report["results"])


def test_the_guide_gives_the_vkey_of_the_default_log():
    assert log_vkey(DEFAULT_ORIGIN, LOG_KEY) in (REPO / "docs" / "conformance.md").read_text("utf-8")
