"""Each jurisdiction's scheme list (docs/protocol.md §6.1 *scheme*, *assistance_category*; PROTO-6.7-1)."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from gateway.adapters.schemes import CN_GD, HK, MO, SCHEME_LISTS, Scheme, SchemeList
from gateway.contract import contract_dir

DEFS = json.loads((contract_dir("schemas") / "defs.json").read_text("utf-8"))["$defs"]
SCHEME_PATTERN = re.compile(DEFS["scheme"]["pattern"])
CATEGORIES = set(DEFS["assistance_category"]["enum"])
NAMES_NEEDED = {
    "CN-GD": {"zh-Hans", "zh-Hant", "en"},
    "HK": {"zh-Hant", "zh-Hans", "en"},
    "MO": {"zh-Hant", "zh-Hans", "pt", "en"},
}
ALL = [(listed.jurisdiction, scheme) for listed in (CN_GD, HK, MO) for scheme in listed.schemes]


def _schemes_in(value: Any) -> Iterator[str]:
    """Every `scheme` member's value (awards, a verification request's scheme)."""
    if isinstance(value, dict):
        for key, member in value.items():
            if key == "scheme" and isinstance(member, str):
                yield member
            yield from _schemes_in(member)
    elif isinstance(value, list):
        for member in value:
            yield from _schemes_in(member)


def _example_messages() -> Iterator[tuple[str, dict[str, Any]]]:
    """Every example message of the shipped schemas and every valid conformance vector's payload."""
    for schema in sorted(contract_dir("schemas").glob("*.json")):
        for index, message in enumerate(json.loads(schema.read_text("utf-8")).get("examples", [])):
            if isinstance(message, dict) and "from" in message:
                yield f"{schema.name} example {index}", message
    for vector in sorted((contract_dir("conformance") / "vectors" / "valid").glob("*.jws")):
        payload = vector.read_text("ascii").strip().split(".")[1]
        yield vector.name, json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def test_the_lists_are_keyed_by_jurisdiction():
    assert dict(SCHEME_LISTS) == {"CN-GD": CN_GD, "HK": HK, "MO": MO}


@pytest.mark.parametrize(("jurisdiction", "scheme"), ALL, ids=[scheme.code for _, scheme in ALL])
def test_every_code_matches_the_schema_and_every_category_is_canonical(jurisdiction, scheme):
    assert SCHEME_PATTERN.fullmatch(scheme.code) and len(scheme.code) <= DEFS["scheme"]["maxLength"]
    assert scheme.category in CATEGORIES


@pytest.mark.parametrize(("jurisdiction", "scheme"), ALL, ids=[scheme.code for _, scheme in ALL])
def test_every_scheme_has_its_jurisdictions_names(jurisdiction, scheme):
    assert NAMES_NEEDED[jurisdiction] <= scheme.names.keys()
    assert all(name.strip() == name and name for name in scheme.names.values())


def test_codes_are_unique_across_jurisdictions():
    codes = [scheme.code for _, scheme in ALL]
    assert len(codes) == len(set(codes))


def test_hong_kong_and_macao_codes_carry_their_prefix():
    assert all(scheme.code.startswith("HK_") for scheme in HK.schemes)
    assert all(scheme.code.startswith("MO_") for scheme in MO.schemes)
    assert not any(scheme.code.startswith(("HK_", "MO_")) for scheme in CN_GD.schemes)


def test_guangdong_covers_every_canonical_category():
    """The 2021 Guangdong plan's basic, special and emergency assistance: one scheme per category."""
    assert {scheme.category for scheme in CN_GD.schemes} == CATEGORIES


def test_every_scheme_of_the_examples_and_vectors_is_listed_by_its_sender():
    """An award's scheme is the responder's (PROTO-6.7-1); a verification request's is the requester's: the `from`."""
    seen = []
    for where, message in _example_messages():
        for code in _schemes_in(message.get("body", {})):
            seen.append(code)
            assert SCHEME_LISTS[message["from"]].get(code) is not None, (where, message["from"], code)
    assert {"HK_OALA_GD", "HK_CSSA", "MO_IAS_GENERAL"} <= set(seen)


# Awards whose category is not their scheme's, in the shipped examples: a HK_CSSA award
# filed under "temporary" for a one-off emergency payment. The adapters refuse such an
# award (scheme-category-mismatch), so the example must change; remove it from here then.
KNOWN_CATEGORY_CONFLICTS = {
    ("referral.update.json example 1", "HK_CSSA", "temporary"),
    ("defs.json award example 1", "HK_CSSA", "temporary"),
}


def test_every_award_of_the_examples_and_vectors_names_its_schemes_category():
    conflicts = set()
    for where, message in _example_messages():
        for award in message.get("body", {}).get("awards", []):
            scheme = SCHEME_LISTS[message["from"]].get(award["scheme"])
            if scheme is not None and scheme.category != award["category"]:
                conflicts.add((where, award["scheme"], award["category"]))
    by_code = {scheme.code: scheme for _, scheme in ALL}
    for index, award in enumerate(DEFS["award"]["examples"]):
        if by_code[award["scheme"]].category != award["category"]:
            conflicts.add((f"defs.json award example {index}", award["scheme"], award["category"]))
    assert conflicts == KNOWN_CATEGORY_CONFLICTS


def test_every_scheme_named_in_defs_json_is_listed():
    named = set(DEFS["scheme"]["examples"]) | set(_schemes_in(DEFS["award"]["examples"]))
    named |= set(re.findall(r"\b[A-Z][A-Z0-9_]{2,}\b", DEFS["scheme"]["description"]))
    listed = {scheme.code for _, scheme in ALL}
    assert named and named <= listed, named - listed


def test_get_and_for_category():
    assert HK.get("HK_CSSA").category == "minimum_living_allowance"
    assert HK.get("DIBAO") is None
    assert [scheme.code for scheme in CN_GD.for_category("minimum_living_allowance")] == ["DIBAO"]
    assert MO.for_category("legal_aid") == ()


def test_name_takes_the_closest_language_then_english():
    assert HK.name("HK_CSSA", "zh-Hant-HK") == "綜合社會保障援助"
    assert HK.name("HK_CSSA", "zh-Hans-CN") == "综合社会保障援助"
    assert MO.name("MO_IAS_GENERAL", "pt-MO") == "Subsídio regular"
    assert CN_GD.name("DIBAO", "pt") == "Minimum Living Allowance (dibao)"
    with pytest.raises(KeyError):
        CN_GD.name("HK_CSSA", "en")


def test_chinese_names_of_a_scheme_differ_only_in_script():
    """A cross-check of the typed names: converting the Traditional name gives the Simplified one."""
    opencc = pytest.importorskip("opencc")
    to_simplified = opencc.OpenCC("hk2s")
    for _, scheme in ALL:
        assert to_simplified.convert(scheme.names["zh-Hant"]) == scheme.names["zh-Hans"], scheme.code


def test_a_list_refuses_a_repeated_code():
    scheme = Scheme("DIBAO", "minimum_living_allowance", {"en": "Dibao"})
    with pytest.raises(ValueError):
        SchemeList("CN-GD", (scheme, scheme))
