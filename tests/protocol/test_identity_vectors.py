"""Published identity-document numbers fit the schema's format for their kind (§6.1).

The schema checks the written form only; check digits are the adapters' job. Numbers
are first put in the canonical written form the spec requires: uppercase, and the
HKID / Macao check character in round brackets.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import shared_vectors

ISSUERS = {"cn_resident_id": "CN", "cn_residence_permit_hk_mo": "CN", "hkid": "HK", "mo_resident_id": "MO",
           "home_return_permit": "CN", "exit_entry_permit_hk_mo": "CN"}


def _canonical(kind: str, number: str) -> str:
    number = number.upper()
    if kind in ("hkid", "mo_resident_id") and not number.endswith(")"):
        number = f"{number[:-1]}({number[-1]})"
    return number


def _valid_numbers(kind: str) -> list[str]:
    entry = json.loads(shared_vectors("identity.json").read_text("utf-8"))[kind]
    return entry.get("valid") or entry.get("valid_format") or []


@pytest.mark.parametrize("kind", sorted(ISSUERS))
def test_published_valid_numbers_fit_the_schema_in_canonical_form(kind, schemas):
    numbers = _valid_numbers(kind)
    assert numbers, f"identity.json lists no valid {kind} numbers"
    for number in numbers:
        document = {"kind": kind, "number": _canonical(kind, number), "issuer": ISSUERS[kind]}
        fast, reference = schemas.fragment_errors("defs.json#/$defs/identity_document", document)
        assert fast == reference == [], (kind, number)


def test_non_canonical_hkid_forms_are_refused(schemas):
    for number in ("A1234563", "a123456(3)", "A123456[3]"):
        document = {"kind": "hkid", "number": number, "issuer": "HK"}
        fast, reference = schemas.fragment_errors("defs.json#/$defs/identity_document", document)
        assert fast and reference, number


def test_published_numbers_invalid_by_form_are_refused_by_the_schema(schemas):
    """Every published invalid number except a wrong check character breaks the written form."""
    entries = json.loads(shared_vectors("identity.json").read_text("utf-8"))
    for kind in ISSUERS:
        for case in entries[kind].get("invalid", []):
            if case["why"].startswith("check"):
                continue  # a check digit: the adapters' test, not the schema's
            document = {"kind": kind, "number": _canonical(kind, case["number"]), "issuer": ISSUERS[kind]}
            fast, reference = schemas.fragment_errors("defs.json#/$defs/identity_document", document)
            assert fast and reference, (kind, case)
