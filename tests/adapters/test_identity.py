"""Identity-document checks beyond the schema's format (docs/protocol.md §6.1, PROTO-6.1-3).

Every number of ../shared/vectors/identity.json is classified as labelled. The property
tests hold the module against check algorithms written here another way: MOD 11-2 as
python-stdnum writes it (`(1 - 2 * int(first17, 13)) % 11`), and HKID as "the weighted
sum including the check character is 0 mod 11".
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from typing import Any

import pytest
from hypothesis import given, strategies as st

from gateway.adapters.identity import (
    AREA_CODE_INVALID,
    BIRTH_DATE_INVALID,
    CHECK_DIGIT_INVALID,
    IdentityFault,
    check_identity_document,
    hkid_check_character,
    mod11_2_check_character,
)
from gateway.contract import contract_dir
from gateway.protocol.errors import CATALOGUE, ProtocolError
from tests.conftest import NOW, shared_vectors

TODAY = NOW.date()
CHECKED_KINDS = ("cn_resident_id", "cn_residence_permit_hk_mo", "hkid")
FORMAT_ONLY_KINDS = ("mo_resident_id", "home_return_permit", "exit_entry_permit_hk_mo", "passport")
DOCUMENT_AT = "/body/household/members/0/person/identity_documents/0"

# Each `why` of identity.json, and what it means here: one of our codes, or "format"
# (the schema refuses the written form; the check-digit kinds' layout parser refuses it too).
WHY = {
    "check character": CHECK_DIGIT_INVALID,
    "check digit": CHECK_DIGIT_INVALID,
    "check digit (a widely copied 'example' that is wrong)": CHECK_DIGIT_INVALID,
    "birth month 13": BIRTH_DATE_INVALID,
    "17 characters": "format",
    "5 digits": "format",
    "first digit must be 1, 5 or 7": "format",
    "too short": "format",
    "prefix": "format",
    "7 digits": "format",
    "letter I is not used": "format",
}


def _vectors() -> dict[str, Any]:
    return json.loads(shared_vectors("identity.json").read_text("utf-8"))


def _valid(kind: str) -> list[str]:
    entry = _vectors()[kind]
    return entry.get("valid") or entry.get("valid_format") or []


def _cases(kind: str) -> list[tuple[str, str]]:
    return [(case["number"], case["why"]) for case in _vectors()[kind].get("invalid", [])]


def _canonical(kind: str, number: str) -> str:
    """The written form the schema requires: uppercase, HKID check character in brackets."""
    number = number.upper()
    if kind == "hkid" and not number.endswith(")"):
        number = f"{number[:-1]}({number[-1]})"
    return number


def _in_message(example, kind: str, number: str) -> dict[str, Any]:
    payload = example("referral.submit")
    document = {"kind": kind, "number": number}
    if kind == "passport":
        document["issuer"] = "HK"
    payload["body"]["household"]["members"][0]["person"]["identity_documents"][0] = document
    return payload


# --- identity.json, every number ---------------------------------------------------


@pytest.mark.parametrize("kind", CHECKED_KINDS + FORMAT_ONLY_KINDS[:-1])
def test_every_valid_vector_passes(kind):
    numbers = _valid(kind)
    assert numbers, kind
    for number in numbers:
        assert check_identity_document(kind, number, TODAY) is None, (kind, number)


@pytest.mark.parametrize("kind", CHECKED_KINDS + FORMAT_ONLY_KINDS[:-1])
def test_every_invalid_vector_is_refused_for_its_labelled_reason(kind, schemas, example):
    cases = _cases(kind)
    assert cases, kind
    for number, why in cases:
        assert why in WHY, f"identity.json has a new label {why!r}: classify it in WHY"
        expected = WHY[why]
        if expected == "format":
            _assert_schema_refuses(schemas, _in_message(example, kind, number))
            if kind in CHECKED_KINDS:
                with pytest.raises(ValueError):
                    check_identity_document(kind, number, TODAY)
            else:
                assert check_identity_document(kind, number, TODAY) is None
        else:
            fault = check_identity_document(kind, number, TODAY)
            assert fault is not None and fault.code == expected, (kind, why)


def test_a_wrong_check_digit_passes_the_schema_so_only_the_adapter_catches_it(schemas, example):
    for kind in CHECKED_KINDS:
        for number, why in _cases(kind):
            if WHY[why] == CHECK_DIGIT_INVALID:
                schemas.validate(_in_message(example, kind, _canonical(kind, number)))


def test_an_impossible_birth_month_is_also_refused_by_the_schema(schemas, example):
    _assert_schema_refuses(schemas, _in_message(example, "cn_resident_id", "360426199113010071"))


@pytest.mark.parametrize("kind", CHECKED_KINDS + FORMAT_ONLY_KINDS[:-1])
def test_valid_vectors_in_their_written_form_pass_the_schema_in_a_message(kind, schemas, example):
    for number in _valid(kind):
        schemas.validate(_in_message(example, kind, _canonical(kind, number)))


def _assert_schema_refuses(schemas, payload: dict[str, Any]) -> None:
    with pytest.raises(ProtocolError) as raised:
        schemas.validate(payload)
    assert raised.value.code == "schema-violation"
    assert raised.value.where in (DOCUMENT_AT, f"{DOCUMENT_AT}/number")


# --- the algorithms ------------------------------------------------------------------


def test_mod11_2_reproduces_the_gb_11643_annex_a_example():
    assert mod11_2_check_character("11010519491231002") == "X"
    assert mod11_2_check_character("36042619910101007") == "1"


def test_hkid_check_character_of_one_and_two_letter_prefixes():
    assert hkid_check_character("A", "123456") == "3"
    assert hkid_check_character("E", "364912") == "5"
    assert hkid_check_character("G", "123456") == "A"
    assert hkid_check_character("AB", "987654") == "3"


@pytest.mark.parametrize("first17", ["1101051949123100", "110105194912310021", "1101051949123100X", "１" * 17])
def test_mod11_2_needs_seventeen_ascii_digits(first17):
    with pytest.raises(ValueError):
        mod11_2_check_character(first17)


@pytest.mark.parametrize(
    ("prefix", "digits"), [("", "123456"), ("ABC", "123456"), ("a", "123456"), ("A", "12345"), ("A", "1234567")]
)
def test_hkid_check_character_needs_a_prefix_and_six_digits(prefix, digits):
    with pytest.raises(ValueError):
        hkid_check_character(prefix, digits)


def test_hkid_is_read_with_or_without_brackets():
    assert check_identity_document("hkid", "A123456(3)", TODAY) is None
    assert check_identity_document("hkid", "A1234563", TODAY) is None
    assert check_identity_document("hkid", "A1234564", TODAY).code == CHECK_DIGIT_INVALID


@pytest.mark.parametrize("number", ["A123456(3", "A1234563)", "A123456[3]", "a123456(3)", "A123456(B)", "ABC123456(3)"])
def test_hkid_outside_its_layout_is_a_precondition_failure(number):
    with pytest.raises(ValueError):
        check_identity_document("hkid", number, TODAY)


def test_a_lowercase_x_is_read_as_the_check_character_x():
    assert check_identity_document("cn_resident_id", "11010519491231002x", TODAY) is None


def test_an_unknown_kind_is_a_precondition_failure():
    with pytest.raises(ValueError):
        check_identity_document("driving_licence", "12345678", TODAY)


# --- mainland area codes and birth dates -----------------------------------------------


def _mainland(area: str, born: str, sequence: str = "002") -> str:
    first17 = area + born + sequence
    return first17 + mod11_2_check_character(first17)


@pytest.mark.parametrize("area", ["810000", "820000", "830000", "710000", "910000", "010105"])
def test_a_resident_id_needs_a_mainland_area_code(area):
    assert check_identity_document("cn_resident_id", _mainland(area, "19800101"), TODAY).code == AREA_CODE_INVALID


@pytest.mark.parametrize("area", ["830000", "110105", "810001", "820100"])
def test_a_residence_permit_needs_the_hong_kong_or_macao_area_code(area):
    fault = check_identity_document("cn_residence_permit_hk_mo", _mainland(area, "19800101"), TODAY)
    assert fault.code == AREA_CODE_INVALID


@pytest.mark.parametrize("area", ["810000", "820000"])
def test_a_residence_permit_of_a_holder_born_before_the_handovers_is_valid(area):
    # python-stdnum 2.2 refuses these (it reads the area code as a birth place); the spec does not.
    assert check_identity_document("cn_residence_permit_hk_mo", _mainland(area, "19580312"), TODAY) is None


@pytest.mark.parametrize("born", ["19810229", "19000230", "20261301", "19991200", "18991231", "00000101"])
def test_a_birth_date_that_is_no_real_date_or_before_1900_is_refused(born):
    assert check_identity_document("cn_resident_id", _mainland("440113", born), TODAY).code == BIRTH_DATE_INVALID


def test_a_birth_date_after_today_is_refused_and_the_ends_of_the_range_are_accepted():
    tomorrow = (TODAY + timedelta(days=1)).strftime("%Y%m%d")
    assert check_identity_document("cn_resident_id", _mainland("440113", tomorrow), TODAY).code == BIRTH_DATE_INVALID
    assert check_identity_document("cn_resident_id", _mainland("440113", TODAY.strftime("%Y%m%d")), TODAY) is None
    assert check_identity_document("cn_resident_id", _mainland("440113", "19000101"), TODAY) is None
    assert check_identity_document("cn_resident_id", _mainland("440113", "19800229"), TODAY) is None


def _with_wrong_check(number: str) -> str:
    return number[:-1] + ("1" if number[-1] == "0" else "0")


def test_the_first_failing_check_is_reported_area_then_birth_date_then_check_digit():
    def code(area: str, born: str) -> str:
        return check_identity_document("cn_resident_id", _with_wrong_check(_mainland(area, born)), TODAY).code

    assert code("810000", "19801301") == AREA_CODE_INVALID
    assert code("440113", "19801301") == BIRTH_DATE_INVALID
    assert code("440113", "19801201") == CHECK_DIGIT_INVALID


@pytest.mark.parametrize("kind", FORMAT_ONLY_KINDS)
def test_kinds_without_a_published_check_are_left_to_the_schema(kind):
    for number in ("1234567(8)", "2234567(8)", "X12345678", "CI1234567", "K12345678", "not a number"):
        assert check_identity_document(kind, number, TODAY) is None


def test_every_identity_number_of_the_shipped_examples_passes():
    documents = []
    for schema in sorted(contract_dir("schemas").glob("*.json")):
        _collect_documents(json.loads(schema.read_text("utf-8")).get("examples", []), documents)
    assert len(documents) > 5
    for document in documents:
        assert check_identity_document(document["kind"], document["number"], TODAY) is None, document["kind"]


def _collect_documents(value: Any, found: list[dict[str, str]]) -> None:
    if isinstance(value, dict):
        if {"kind", "number"} <= value.keys():
            found.append(value)
        for member in value.values():
            _collect_documents(member, found)
    elif isinstance(value, list):
        for member in value:
            _collect_documents(member, found)


# --- faults never quote the number ---------------------------------------------------


def test_every_fault_code_the_hub_reports_is_in_the_error_catalogue():
    for code in (CHECK_DIGIT_INVALID, BIRTH_DATE_INVALID):
        assert CATALOGUE[code].status == 422
    # An area code outside its kind's never passes the schema; the hub reports it as schema-violation.
    assert AREA_CODE_INVALID not in CATALOGUE


def test_a_fault_is_a_fixed_sentence_without_digits():
    faults = [
        check_identity_document("cn_resident_id", "36042619910102009X", TODAY),
        check_identity_document("cn_resident_id", "360426199113010071", TODAY),
        check_identity_document("cn_residence_permit_hk_mo", "830000200008230028", TODAY),
        check_identity_document("hkid", "K034178(2)", TODAY),
        check_identity_document("hkid", "Z123456(7)", TODAY),
    ]
    by_code: dict[str, set[str]] = {}
    for fault in faults:
        assert isinstance(fault, IdentityFault)
        assert not any(character.isdigit() for character in fault.detail), fault.detail
        by_code.setdefault(fault.code, set()).add(fault.detail)
    assert by_code.keys() == {CHECK_DIGIT_INVALID, BIRTH_DATE_INVALID, AREA_CODE_INVALID}
    assert all(len(details) == 1 for details in by_code.values())


# --- properties: a single changed character is caught exactly when the algorithm catches it


def _stdnum_mod11_2(first17: str) -> str:
    return "X" if (value := (1 - 2 * int(first17, 13)) % 11) == 10 else str(value)


def _real_date(yyyymmdd: str) -> bool:
    try:
        born = date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:]))
    except ValueError:
        return False
    return date(1900, 1, 1) <= born <= TODAY


def _expected_mainland(kind: str, number: str) -> str | None:
    area_ok = number[0] in "123456" if kind == "cn_resident_id" else number[:6] in ("810000", "820000")
    if not area_ok:
        return AREA_CODE_INVALID
    if not _real_date(number[6:14]):
        return BIRTH_DATE_INVALID
    if _stdnum_mod11_2(number[:17]) != number[17].upper():
        return CHECK_DIGIT_INVALID
    return None


def _hkid_sum_is_zero(number: str) -> bool:
    compact = number.replace("(", "").replace(")", "")
    padded = compact.rjust(9)
    values = [36 if c == " " else ord(c) - 55 if c.isalpha() else int(c) for c in padded]
    return sum(value * weight for value, weight in zip(values, range(9, 0, -1))) % 11 == 0


@st.composite
def mainland_numbers(draw) -> tuple[str, str]:
    """A valid resident ID or residence permit: drawn from the vectors, or built afresh."""
    kind = draw(st.sampled_from(["cn_resident_id", "cn_residence_permit_hk_mo"]))
    if draw(st.booleans()):
        return kind, draw(st.sampled_from(_valid(kind)))
    if kind == "cn_resident_id":
        area = str(draw(st.integers(100000, 699999)))
    else:
        area = draw(st.sampled_from(["810000", "820000"]))
    born = draw(st.dates(date(1900, 1, 1), TODAY)).strftime("%Y%m%d")
    first17 = area + born + f"{draw(st.integers(0, 999)):03d}"
    return kind, first17 + _stdnum_mod11_2(first17)


@st.composite
def hkid_numbers(draw) -> str:
    if draw(st.booleans()):
        return draw(st.sampled_from(_valid("hkid")))
    prefix = draw(st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=2))
    digits = f"{draw(st.integers(0, 999999)):06d}"
    check = next(c for c in "0123456789A" if _hkid_sum_is_zero(prefix + digits + c))
    return f"{prefix}{digits}({check})" if draw(st.booleans()) else prefix + digits + check


@given(mainland_numbers(), st.data())
def test_a_changed_mainland_character_is_reported_exactly_when_a_rule_breaks(drawn, data):
    kind, number = drawn
    assert check_identity_document(kind, number, TODAY) is None
    position = data.draw(st.integers(0, 17))
    alphabet = "0123456789X" if position == 17 else "0123456789"
    replacement = data.draw(st.sampled_from(alphabet).filter(lambda c: c != number[position].upper()))
    changed = number[:position] + replacement + number[position + 1:]
    fault = check_identity_document(kind, changed, TODAY)
    assert (fault.code if fault else None) == _expected_mainland(kind, changed)


@given(hkid_numbers(), st.data())
def test_a_changed_hkid_character_is_reported_exactly_when_the_check_breaks(number, data):
    assert check_identity_document("hkid", number, TODAY) is None
    prefix = 2 if number[1].isalpha() else 1
    check_at = len(number) - 2 if number.endswith(")") else len(number) - 1
    position = data.draw(st.sampled_from([*range(prefix, prefix + 6), check_at]))
    alphabet = "0123456789A" if position == check_at else "0123456789"
    replacement = data.draw(st.sampled_from(alphabet).filter(lambda c: c != number[position]))
    changed = number[:position] + replacement + number[position + 1:]
    fault = check_identity_document("hkid", changed, TODAY)
    assert (fault.code if fault else None) == (None if _hkid_sum_is_zero(changed) else CHECK_DIGIT_INVALID)


@given(st.sampled_from(["A", "Z", "AB", "XY"]), st.integers(0, 999999))
def test_hkid_check_character_closes_the_weighted_sum(prefix, serial):
    digits = f"{serial:06d}"
    assert _hkid_sum_is_zero(prefix + digits + hkid_check_character(prefix, digits))


@given(st.text("0123456789", min_size=17, max_size=17))
def test_mod11_2_matches_python_stdnum_formula(first17):
    assert mod11_2_check_character(first17) == _stdnum_mod11_2(first17)


def test_a_number_without_its_kinds_format_says_that_only_the_format_is_checked(schemas, example):
    """docs/data-protection.md: the kinds without a published algorithm are checked for format only — and the error says so."""
    with pytest.raises(ProtocolError) as raised:
        schemas.validate(_in_message(example, "mo_resident_id", "2234567(8)"))
    assert raised.value.code == "schema-violation" and raised.value.where == f"{DOCUMENT_AT}/number"
    assert "only the format is checked" in raised.value.detail and "2234567" not in raised.value.detail
