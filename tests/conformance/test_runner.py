"""`gateway conformance run` against our own hub: every case passes; filters and set-up faults are not passes."""

from __future__ import annotations

import json
from xml.etree import ElementTree

from gateway.conformance.runner import load_cases
from gateway.contract import contract_dir
from gateway.demo.exchange import free_port
from tests.cli_runner import run_cli
from tests.hub.harness import running_hub

KEY = str(contract_dir("keys") / "test" / "test-cn-gd-message-1.key.jwk")


def test_every_hub_case_passes_against_our_own_hub(database_url, tmp_path):
    with running_hub(database_url) as hub:
        result = run_cli("conformance", "run", "--target", hub.base_url, "--as", "CN-GD", "--key", KEY, "--report-dir", str(tmp_path))
    assert result.status == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "conformance.json").read_text("utf-8"))
    cases = load_cases("hub")
    assert report["format"] == "gba-conformance-report/v1" and report["counts"] == {"pass": len(cases), "fail": 0, "skip": 0, "error": 0}
    assert {r["case"] for r in report["results"]} == {case.id for case in cases}
    assert all(r["evidence"] and r["requirements"] for r in report["results"]), "every verdict carries its evidence and requirements"
    suite = ElementTree.parse(tmp_path / "junit.xml").getroot()
    assert suite.get("tests") == str(len(cases)) and suite.get("failures") == "0"
    assert f"{len(cases)} passed, 0 failed, 0 skipped" in result.stdout


def test_a_filter_that_matches_nothing_is_an_error_not_a_pass(tmp_path):
    result = run_cli("conformance", "run", "--target", "http://127.0.0.1:9", "--as", "CN-GD", "--key", KEY, "-k", "no-such-case-anywhere",
                     "--report-dir", str(tmp_path))
    assert result.status == 3 and "nothing was run" in result.stderr


def test_an_unreachable_target_is_a_set_up_error_not_failed_cases(tmp_path):
    result = run_cli("conformance", "run", "--target", f"http://127.0.0.1:{free_port()}", "--as", "CN-GD", "--key", KEY,
                     "--case", "hub-ingress-001", "--report-dir", str(tmp_path))
    assert result.status == 2 and "preflight: cannot reach" in result.stderr
    assert not (tmp_path / "conformance.json").exists()


def test_every_case_cites_requirements_the_spec_defines():
    spec = (contract_dir("schemas").parent / "docs" / "protocol.md")
    text = spec.read_text("utf-8") if spec.exists() else None
    for case in load_cases("hub"):
        assert case.requirements and case.expect.get("status")
        if text is not None:
            for requirement in case.requirements:
                assert f"**[{requirement}]**" in text, f"{case.id} cites {requirement}, which docs/protocol.md does not define"
