"""Traceability: every MUST of docs/protocol.md has a conformance case, and every catalogue code a negative case per role.

A MUST without a case is allowed only with a recorded reason in conformance/not-covered.json
and the project test that covers our implementation's side; that test must exist. The data
files the wheel ships in place of docs/protocol.md (requirements.json, catalogue.json) must
say what the spec says.
"""

from __future__ import annotations

import ast
import json
import re

import pytest

from gateway.conformance import requirements as extraction
from gateway.conformance.cases import load_cases
from gateway.contract import contract_dir
from gateway.protocol.errors import CATALOGUE
from tests.conftest import REPO

SPEC = (REPO / "docs" / "protocol.md").read_text("utf-8")
DATA = contract_dir("conformance")
NOT_COVERED = {item["id"]: item for item in json.loads((DATA / "not-covered.json").read_text("utf-8"))["requirements"]}
CODE_ROLES = json.loads((DATA / "code-roles.json").read_text("utf-8"))["codes"]
CASES = load_cases("hub") + load_cases("endpoint")
KINDS = ("internal", "integrator-practice", "deferred")


def _cited() -> set[str]:
    return {requirement for case in CASES for requirement in case.requirements}


def _refused_codes(role: str) -> set[str]:
    """The codes the cases of `role` expect in a refusal or a rejected receipt."""
    codes = set()
    for case in CASES:
        if case.role == role:
            for step in case.steps:
                expect = step.get("expect", {})
                codes.update(value for key, value in expect.items() if key in ("code", "refused", "problem"))
    return codes


@pytest.mark.parametrize("name", ["requirements.json", "catalogue.json"])
def test_the_shipped_requirement_data_says_what_the_spec_says(name):
    expected = extraction.render(extraction.documents(SPEC)[name])
    assert (DATA / name).read_text("utf-8") == expected, (
        f"conformance/{name} is out of step with docs/protocol.md: python -m gateway.conformance.requirements docs/protocol.md conformance/")


def test_the_extraction_finds_every_defined_requirement_once():
    ids = re.findall(r"\*\*\[(PROTO-[\d.]+-\d+)\]\*\*", SPEC)
    extracted = extraction.extract_requirements(SPEC)
    assert [r.id for r in extracted] == ids and len(set(ids)) == len(ids)
    assert sum(r.level == "MUST" for r in extracted) >= 141, "the issue counted 141 MUSTs; the spec has not lost any"


def test_the_shipped_catalogue_is_the_one_the_hub_uses():
    shipped = {code.code: (code.status, code.title, code.requirement) for code in extraction.catalogue().values()}
    assert shipped == {entry.code: (entry.status, entry.title, entry.requirement) for entry in CATALOGUE.values()}


def test_every_must_has_a_case_or_a_recorded_reason():
    musts = {r.id for r in extraction.requirements().values() if r.level == "MUST"}
    missing = sorted(musts - _cited() - set(NOT_COVERED))
    assert not missing, f"MUST requirements with neither a conformance case nor an entry in not-covered.json: {missing}"


def test_a_requirement_with_a_case_is_not_also_listed_as_not_covered():
    assert not sorted(_cited() & set(NOT_COVERED))


def test_cases_and_not_covered_entries_name_requirements_the_spec_defines():
    defined = set(extraction.requirements())
    assert not sorted((_cited() | set(NOT_COVERED)) - defined)


def _test_exists(reference: str) -> bool:
    path, _, name = reference.partition("::")
    source = REPO / path
    if not source.is_file():
        return False
    tree = ast.parse(source.read_text("utf-8"))
    return any(isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name for node in ast.walk(tree))


@pytest.mark.parametrize("requirement", sorted(NOT_COVERED))
def test_each_not_covered_entry_has_a_kind_a_reason_and_an_existing_test(requirement):
    entry = NOT_COVERED[requirement]
    assert entry["kind"] in KINDS and len(entry["reason"]) > 20
    if entry["kind"] != "integrator-practice":
        assert entry["covered_by"], f"{requirement}: an internal or deferred requirement names the project test that covers it"
    if entry["covered_by"]:
        assert _test_exists(entry["covered_by"]), f"{requirement}: {entry['covered_by']} does not exist"


def test_every_catalogue_code_has_its_roles():
    assert set(CODE_ROLES) == set(CATALOGUE)
    assert all(item["roles"] and set(item["roles"]) <= {"hub", "endpoint"} for item in CODE_ROLES.values())


def _observed(code: str, role: str, expected: set[str]) -> bool:
    """A code a role uses inside, never on the wire (`observed_as` in code-roles.json: a trust list refused with it
    leaves its key unknown): covered by a case of the role that cites the code's requirement and expects what shows."""
    shows = CODE_ROLES[code].get("observed_as")
    cited = {requirement for case in CASES if case.role == role for requirement in case.requirements}
    return shows is not None and shows in expected and CATALOGUE[code].requirement in cited


@pytest.mark.parametrize("role", ["hub", "endpoint"])
def test_every_code_has_a_negative_case_for_each_role_it_applies_to(role):
    expected = _refused_codes(role)
    missing = sorted(code for code, item in CODE_ROLES.items()
                     if role in item["roles"] and code not in expected and CATALOGUE[code].requirement not in NOT_COVERED
                     and not _observed(code, role, expected))
    assert not missing, f"codes of the {role} role with no negative case and no recorded reason: {missing}"


def test_cases_expect_only_catalogue_codes_with_their_status():
    for case in CASES:
        for step in case.steps:
            expect = step.get("expect", {})
            code = expect.get("code") or expect.get("refused") or expect.get("problem")
            if code:
                assert code in CATALOGUE, f"{case.id} expects {code}, which is not in the catalogue"
                if case.role == "hub":
                    assert expect["status"] == CATALOGUE[code].status, f"{case.id}: {code} has status {CATALOGUE[code].status}"


def test_case_ids_are_unique_and_every_case_is_complete():
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids))
    for case in CASES:
        assert case.title and case.requirements and case.level in ("MUST", "SHOULD") and case.steps and case.tags
        assert any("expect" in step for step in case.steps) or case.role == "endpoint"


def test_each_message_type_and_flow_has_a_positive_case_in_each_role():
    for role in ("hub", "endpoint"):
        positive = [case for case in CASES if case.role == role and "positive" in case.tags]
        types = {step.get("template") for case in positive for step in case.steps}
        assert {"referral.submit", "referral.accept", "referral.decline", "referral.update", "referral.withdraw", "referral.close",
                "verification.request", "verification.response", "verification.cancel", "receipt"} <= types, role


def test_no_observable_requirement_is_deferred():
    assert not [item for item in NOT_COVERED.values() if item["kind"] == "deferred"]
