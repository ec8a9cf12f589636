"""The v1 JSON Schemas and their two validators (docs/protocol.md §5 envelope, §6 types).

Every `examples` entry must be accepted, and every counter-example refused at the
expected location, by both jsonschema-rs (the hot path) and python-jsonschema (the
reference). Schema files are read only through the package.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import jsonschema_rs
import pytest

from gateway.protocol import schema as schema_module
from gateway.protocol.errors import ProtocolError
from gateway.protocol.schema import SCHEMA_BASE, MessageSchemas, _ecma_regex, load_message_schemas

SCHEMAS = load_message_schemas()
MESSAGE_FILES = [f"{name}.json" for name in SCHEMAS.types]
DOCUMENT_KINDS = SCHEMAS.documents["defs.json"]["$defs"]["identity_document_kind"]["enum"]

# Keywords whose value is a subschema, a list of subschemas, or a map of subschemas.
_SUBSCHEMA = ("items", "contains", "not", "if", "then", "else", "additionalProperties", "unevaluatedProperties")
_SUBSCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")
_SUBSCHEMA_MAPS = ("$defs", "properties")
# Subschemas that only add constraints to an object described (and closed) elsewhere.
_PARTIAL = ("if", "then", "else", "not", "contains")


def _subschemas(schema: Any, pointer: str = "", partial: bool = False) -> Iterator[tuple[str, dict, bool]]:
    """Every subschema of `schema` with its JSON Pointer and whether it only constrains."""
    if not isinstance(schema, dict):
        return
    yield pointer, schema, partial
    for keyword in _SUBSCHEMA:
        if keyword in schema:
            yield from _subschemas(schema[keyword], f"{pointer}/{keyword}", partial or keyword in _PARTIAL)
    for keyword in _SUBSCHEMA_LISTS:
        for index, member in enumerate(schema.get(keyword, ())):
            yield from _subschemas(member, f"{pointer}/{keyword}/{index}", partial)
    for keyword in _SUBSCHEMA_MAPS:
        for name, member in schema.get(keyword, {}).items():
            yield from _subschemas(member, f"{pointer}/{keyword}/{name}", partial)


def _all_examples() -> Iterator[tuple[str, Any]]:
    for file_name, document in SCHEMAS.documents.items():
        for pointer, schema, _ in _subschemas(document):
            for example in schema.get("examples", ()):
                yield f"{file_name}#{pointer}", example


EXAMPLES = list(_all_examples())
WHOLE_MESSAGE_EXAMPLES = [
    (ref, example) for ref, example in EXAMPLES if ref.endswith("#") and not ref.startswith("defs.json")
]


def _example(message_type: str, index: int = 0) -> dict[str, Any]:
    return copy.deepcopy(SCHEMAS.documents[f"{message_type}.json"]["examples"][index])


# ----------------------------------------------------------------------------- the files


def test_every_message_type_has_its_own_schema_file() -> None:
    assert SCHEMAS.types == (
        "referral.submit", "referral.accept", "referral.decline", "referral.update", "referral.withdraw",
        "referral.close", "verification.request", "verification.response", "verification.cancel", "receipt",
    )
    assert set(SCHEMAS.documents) == {"defs.json", "envelope.json", "message.json", *MESSAGE_FILES}


@pytest.mark.parametrize("file_name", sorted(SCHEMAS.documents))
def test_schema_file_is_draft_2020_12_with_an_id_under_the_base(file_name: str) -> None:
    document = SCHEMAS.documents[file_name]
    assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert document["$id"] == SCHEMA_BASE + file_name
    jsonschema.Draft202012Validator.check_schema(document)
    assert document["description"]


@pytest.mark.parametrize("file_name", sorted(SCHEMAS.documents))
def test_every_ref_is_relative_and_local(file_name: str) -> None:
    refs = [schema["$ref"] for _, schema, _ in _subschemas(SCHEMAS.documents[file_name]) if "$ref" in schema]
    assert refs or file_name == "defs.json"
    for ref in refs:
        target, _, _ = ref.partition("#")
        assert "://" not in ref
        assert target == "" or target in SCHEMAS.documents


@pytest.mark.parametrize("file_name", sorted(SCHEMAS.documents))
def test_every_object_schema_is_closed(file_name: str) -> None:
    for pointer, schema, partial in _subschemas(SCHEMAS.documents[file_name]):
        if partial or ("properties" not in schema and schema.get("type") != "object"):
            continue
        if (file_name, pointer) == ("envelope.json", "/properties/body"):
            continue  # closed by the body schema of each type
        closed = schema.get("additionalProperties") is False or schema.get("unevaluatedProperties") is False
        assert closed, f"{file_name}#{pointer} allows unknown members"


@pytest.mark.parametrize("file_name", sorted(SCHEMAS.documents))
def test_every_array_schema_has_max_items(file_name: str) -> None:
    for pointer, schema, partial in _subschemas(SCHEMAS.documents[file_name]):
        if not partial and (schema.get("type") == "array" or "items" in schema):
            assert isinstance(schema.get("maxItems"), int), f"{file_name}#{pointer} has no maxItems"


@pytest.mark.parametrize("file_name", sorted(SCHEMAS.documents))
def test_only_formats_both_libraries_assert_are_used(file_name: str) -> None:
    formats = {schema["format"] for _, schema, _ in _subschemas(SCHEMAS.documents[file_name]) if "format" in schema}
    assert formats <= {"date-time", "date"}


@pytest.mark.parametrize("file_name", sorted(SCHEMAS.documents))
def test_every_schema_has_examples(file_name: str) -> None:
    document = SCHEMAS.documents[file_name]
    if file_name == "defs.json":
        for name, definition in document["$defs"].items():
            assert definition.get("examples"), f"defs.json#/$defs/{name} has no examples"
    else:
        assert document.get("examples")


@pytest.mark.parametrize("file_name", MESSAGE_FILES)
def test_message_schema_examples_are_of_its_type(file_name: str) -> None:
    for example in SCHEMAS.documents[file_name]["examples"]:
        assert f"{example['type']}.json" == file_name


def test_message_dispatch_covers_every_type() -> None:
    targets = [rule["then"]["$ref"] for rule in SCHEMAS.documents["message.json"]["allOf"]]
    assert targets == MESSAGE_FILES


def test_every_identity_document_kind_has_a_number_pattern() -> None:
    rules = SCHEMAS.documents["defs.json"]["$defs"]["identity_document"]["allOf"]
    patterned = [
        rule["if"]["properties"]["kind"]["const"]
        for rule in rules
        if "pattern" in rule["then"].get("properties", {}).get("number", {})
    ]
    assert sorted(patterned) == sorted(DOCUMENT_KINDS)
    assert len(DOCUMENT_KINDS) == 7


# ----------------------------------------------------------------------------- the examples


@pytest.mark.parametrize(("schema_ref", "example"), EXAMPLES, ids=[ref for ref, _ in EXAMPLES])
def test_example_is_accepted_by_both_validators(schema_ref: str, example: Any) -> None:
    assert SCHEMAS.fragment_errors(schema_ref, example) == ([], [])


@pytest.mark.parametrize(
    ("schema_ref", "message"), WHOLE_MESSAGE_EXAMPLES, ids=[ref for ref, _ in WHOLE_MESSAGE_EXAMPLES]
)
def test_example_message_passes_validate_and_the_reference(schema_ref: str, message: dict[str, Any]) -> None:
    SCHEMAS.validate(message)
    assert SCHEMAS.reference_errors(message) == []


def _defs_reachable_from(file_name: str) -> set[str]:
    """The shared definitions that the schema in `file_name` refers to, directly or not."""
    reached: set[str] = set()
    seen_files = {file_name}
    pending: list[tuple[str, Any]] = [(file_name, SCHEMAS.documents[file_name])]
    while pending:
        current, schema = pending.pop()
        for _, subschema, _ in _subschemas(schema):
            if "$ref" not in subschema:
                continue
            target, _, fragment = subschema["$ref"].partition("#")
            if target and not fragment and target not in seen_files:
                seen_files.add(target)
                pending.append((target, SCHEMAS.documents[target]))
            elif (target or current) == "defs.json" and fragment.removeprefix("/$defs/") not in reached:
                name = fragment.removeprefix("/$defs/")
                reached.add(name)
                pending.append(("defs.json", SCHEMAS.documents["defs.json"]["$defs"][name]))
    return reached


def test_referral_submit_example_exercises_every_shared_definition_it_can_reach() -> None:
    message = _example("referral.submit")
    validator = jsonschema_rs.Draft202012Validator(
        {"$ref": SCHEMA_BASE + "referral.submit.json"},
        registry=jsonschema_rs.Registry([(SCHEMA_BASE + n, d) for n, d in SCHEMAS.documents.items()]),
        validate_formats=True,
    )
    visited = {
        match[1]
        for entry in validator.evaluate(message).list()["details"]
        if (match := re.search(r"defs\.json#/\$defs/(\w+)", entry.get("schemaLocation", "")))
    }
    reachable = _defs_reachable_from("referral.submit.json")
    assert {"person", "identity_document", "money", "address", "contact", "free_text", "legal_basis"} <= reachable
    assert reachable <= visited
    kinds = {
        document["kind"]
        for member in message["body"]["household"]["members"]
        for document in member["person"]["identity_documents"]
    }
    assert kinds == set(DOCUMENT_KINDS)
    scripts = {name["script"] for name in message["body"]["household"]["members"][0]["person"]["names"]}
    assert scripts == {"Hans", "Hant", "Latn"}


# ----------------------------------------------------------------------------- counter-examples


@dataclass(frozen=True)
class Refusal:
    """A mutation of an example message and the refusal both validators must give."""

    name: str
    base: str
    mutate: Callable[[dict[str, Any]], None]
    where: str
    code: str = "schema-violation"
    index: int = 0


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A mutation that sets the member at the JSON Pointer `path` (numeric steps index arrays)."""

    def mutate(message: dict[str, Any]) -> None:
        *parents, last = path.strip("/").split("/")
        node: Any = message
        for step in parents:
            node = node[int(step)] if isinstance(node, list) else node[step]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return mutate


def _delete(path: str) -> Callable[[dict[str, Any]], None]:
    def mutate(message: dict[str, Any]) -> None:
        *parents, last = path.strip("/").split("/")
        node: Any = message
        for step in parents:
            node = node[int(step)] if isinstance(node, list) else node[step]
        del node[last]

    return mutate


def _decline_for_other_reason_without_note(message: dict[str, Any]) -> None:
    message["body"]["reason"] = "other"
    del message["body"]["note"]


def _empty_body(message: dict[str, Any]) -> None:
    message["body"].clear()


def _append(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(message: dict[str, Any]) -> None:
        node: Any = message
        for step in path.strip("/").split("/"):
            node = node[int(step)] if isinstance(node, list) else node[step]
        node.append(value)

    return mutate


_APPLICANT = "/body/household/members/0"
_INCOME = f"{_APPLICANT}/declared_monthly_income"
_DOC0 = f"{_APPLICANT}/person/identity_documents/0"

REFUSALS = [
    # created: RFC 3339 UTC with uppercase T and Z only, and a real date
    Refusal("created_with_offset", "referral.submit", _set("/created", "2026-11-28T17:30:00+08:00"), "/created"),
    Refusal("created_with_lowercase_t", "referral.submit", _set("/created", "2026-11-28t09:30:00Z"), "/created"),
    Refusal("created_with_lowercase_z", "referral.submit", _set("/created", "2026-11-28T09:30:00z"), "/created"),
    Refusal("created_with_leap_second", "referral.submit", _set("/created", "2026-12-31T23:59:60Z"), "/created"),
    Refusal("created_on_february_30", "referral.submit", _set("/created", "2026-02-30T09:30:00Z"), "/created"),
    Refusal("created_with_seven_fraction_digits", "referral.submit",
            _set("/created", "2026-11-28T09:30:00.1234567Z"), "/created"),
    Refusal("respond_by_on_april_31", "verification.request",
            _set("/body/respond_by", "2026-04-31T09:00:00Z"), "/body/respond_by"),
    Refusal("date_of_birth_on_february_29_of_a_common_year", "referral.submit",
            _set(f"{_APPLICANT}/person/date_of_birth", "1958-02-29"), f"{_APPLICANT}/person/date_of_birth"),
    # years 1900-2199 only (PROTO-5.3-3): Python's datetime has no year 0, and validators disagreed on it
    Refusal("created_in_year_0000", "referral.submit", _set("/created", "0000-01-01T00:00:00Z"), "/created"),
    Refusal("created_in_year_1899", "referral.submit", _set("/created", "1899-12-31T23:59:59Z"), "/created"),
    Refusal("created_in_year_2200", "referral.submit", _set("/created", "2200-01-01T00:00:00Z"), "/created"),
    Refusal("respond_by_in_year_2200", "verification.request",
            _set("/body/respond_by", "2200-01-01T00:00:00Z"), "/body/respond_by"),
    Refusal("date_of_birth_in_year_0000", "referral.submit",
            _set(f"{_APPLICANT}/person/date_of_birth", "0000-01-01"), f"{_APPLICANT}/person/date_of_birth"),
    Refusal("date_of_birth_in_year_1899", "referral.submit",
            _set(f"{_APPLICANT}/person/date_of_birth", "1899-12-31"), f"{_APPLICANT}/person/date_of_birth"),
    Refusal("date_of_birth_in_year_2200", "referral.submit",
            _set(f"{_APPLICANT}/person/date_of_birth", "2200-01-01"), f"{_APPLICANT}/person/date_of_birth"),
    # a trailing line feed: `$` is ECMA 262's end of input, not Python's "end or before a final \n"
    Refusal("jurisdiction_with_trailing_newline", "referral.submit", _set("/to", "HK\n"), "/to"),
    Refusal("id_with_trailing_newline", "referral.submit",
            _set("/id", "01a2217d-75c0-7754-90bd-7b93e6fa7d18\n"), "/id"),
    Refusal("created_with_trailing_newline", "referral.submit", _set("/created", "2026-11-28T09:30:00Z\n"),
            "/created"),
    Refusal("date_of_birth_with_trailing_newline", "referral.submit",
            _set(f"{_APPLICANT}/person/date_of_birth", "1958-03-12\n"), f"{_APPLICANT}/person/date_of_birth"),
    Refusal("currency_with_trailing_newline", "referral.submit", _set(f"{_INCOME}/currency", "HKD\n"),
            f"{_INCOME}/currency"),
    Refusal("hkid_with_trailing_newline", "referral.submit", _set(f"{_DOC0}/number", "A123456(3)\n"),
            f"{_DOC0}/number"),
    Refusal("email_with_trailing_newline", "referral.update", _set("/body/contact/email", "chan.wk@example.com\n"),
            "/body/contact/email"),
    # money
    Refusal("money_amount_as_float", "referral.submit", _set(f"{_INCOME}/amount", 1234.5), f"{_INCOME}/amount"),
    Refusal("money_amount_as_integer", "referral.submit", _set(f"{_INCOME}/amount", 1234), f"{_INCOME}/amount"),
    Refusal("money_amount_with_exponent", "referral.submit", _set(f"{_INCOME}/amount", "1.2e3"), f"{_INCOME}/amount"),
    Refusal("money_amount_with_leading_zero", "referral.submit", _set(f"{_INCOME}/amount", "01640"),
            f"{_INCOME}/amount"),
    Refusal("money_with_lowercase_currency", "referral.submit", _set(f"{_INCOME}/currency", "hkd"),
            f"{_INCOME}/currency"),
    # ids
    Refusal("uppercase_uuid_in_id", "referral.submit",
            _set("/id", "01A2217D-75C0-7754-90BD-7B93E6FA7D18"), "/id"),
    Refusal("uuid_version_4_in_id", "referral.submit", _set("/id", "0b6f3a52-1c7e-4d3a-9f2a-6d1e2b3c4d5e"), "/id"),
    Refusal("uuid_with_wrong_variant_in_case", "referral.submit",
            _set("/case", "01a2217d-2c82-7178-c13e-df91be156a03"), "/case"),
    # type and version come before the schema
    Refusal("unknown_type", "referral.submit", _set("/type", "referral.forward"), "/type", "type-unknown"),
    Refusal("type_that_is_not_a_string", "referral.submit", _set("/type", 7), "/type", "type-unknown"),
    Refusal("version_2", "referral.submit", _set("/v", 2), "/v", "version-unsupported"),
    Refusal("version_as_string", "referral.submit", _set("/v", "1"), "/v", "version-unsupported"),
    Refusal("version_true", "receipt", _set("/v", True), "/v", "version-unsupported"),
    Refusal("missing_type", "receipt", _delete("/type"), ""),
    Refusal("missing_version", "receipt", _delete("/v"), ""),
    # envelope
    Refusal("extra_envelope_member", "referral.submit", _set("/priority", "high"), ""),
    Refusal("missing_legal_basis", "referral.submit", _delete("/legal_basis"), ""),
    Refusal("jurisdiction_in_lowercase", "referral.submit", _set("/to", "hk"), "/to"),
    Refusal("consent_basis_without_consent_ref", "referral.submit", _delete("/legal_basis/consent_ref"),
            "/legal_basis"),
    Refusal("unknown_transfer_mechanism", "referral.submit",
            _set("/legal_basis/transfer_mechanism/kind", "binding_corporate_rules"),
            "/legal_basis/transfer_mechanism/kind"),
    # reply_to and purpose per type
    Refusal("reply_to_null_on_referral_accept", "referral.accept", _set("/reply_to", None), "/reply_to"),
    Refusal("reply_to_null_on_receipt", "receipt", _set("/reply_to", None), "/reply_to"),
    Refusal("reply_to_set_on_referral_submit", "referral.submit",
            _set("/reply_to", "01a2217d-2c82-7178-b13e-df91be156a03"), "/reply_to"),
    Refusal("verification_purpose_on_referral_submit", "referral.submit",
            _set("/purpose", "economic_verification"), "/purpose"),
    Refusal("referral_purpose_on_receipt", "receipt", _set("/purpose", "referral"), "/purpose"),
    Refusal("unknown_purpose", "verification.request", _set("/purpose", "marketing"), "/purpose"),
    # bodies
    Refusal("unknown_assistance_category", "referral.submit", _append("/body/needs", "pension"), "/body/needs/2"),
    Refusal("repeated_assistance_category", "referral.submit", _append("/body/needs", "medical"), "/body/needs"),
    Refusal("unknown_verification_item", "verification.request", _append("/body/items", "crypto_assets"),
            "/body/items/4"),
    Refusal("found_result_without_amounts", "verification.response", _delete("/body/results/0/amounts"),
            "/body/results/0"),
    Refusal("not_found_result_with_amounts", "verification.response",
            _set("/body/results/1/amounts", [{"measure": "balance", "money": {"amount": "1", "currency": "CNY"}}]),
            "/body/results/1/amounts"),
    Refusal("cannot_verify_result_without_reason", "verification.response", _delete("/body/results/4/reason"),
            "/body/results/4"),
    Refusal("person_to_verify_without_documents", "verification.request",
            _delete("/body/members/0/person/identity_documents"), "/body/members/0/person"),
    Refusal("unknown_identity_document_kind", "referral.submit", _set(f"{_DOC0}/kind", "driving_licence"),
            f"{_DOC0}/kind"),
    Refusal("hkid_with_five_digits", "referral.submit", _set(f"{_DOC0}/number", "A12345(3)"), f"{_DOC0}/number"),
    Refusal("hkid_in_compact_form", "referral.submit", _set(f"{_DOC0}/number", "A1234563"), f"{_DOC0}/number"),
    Refusal("cn_resident_id_with_lowercase_x", "referral.submit",
            _set(f"{_DOC0}", {"kind": "cn_resident_id", "number": "11010519491231002x"}), f"{_DOC0}/number"),
    Refusal("cn_resident_id_with_month_13", "referral.submit",
            _set(f"{_DOC0}", {"kind": "cn_resident_id", "number": "360426199113010071"}), f"{_DOC0}/number"),
    Refusal("macao_id_with_first_digit_2", "referral.submit",
            _set(f"{_DOC0}", {"kind": "mo_resident_id", "number": "2234567(8)"}), f"{_DOC0}/number"),
    Refusal("home_return_permit_with_prefix_x", "referral.submit",
            _set(f"{_DOC0}", {"kind": "home_return_permit", "number": "X12345678"}), f"{_DOC0}/number"),
    Refusal("exit_entry_permit_with_letter_i", "referral.submit",
            _set(f"{_DOC0}", {"kind": "exit_entry_permit_hk_mo", "number": "CI1234567"}), f"{_DOC0}/number"),
    Refusal("residence_permit_with_taiwan_area_code", "referral.submit",
            _set(f"{_DOC0}", {"kind": "cn_residence_permit_hk_mo", "number": "830000200008230021"}),
            f"{_DOC0}/number"),
    Refusal("passport_without_issuer", "referral.submit",
            _set(f"{_DOC0}", {"kind": "passport", "number": "K12345678"}), _DOC0),
    Refusal("two_names_in_one_script", "referral.submit",
            _set(f"{_APPLICANT}/person/names/1", {"script": "Hans", "family": "陈"}), f"{_APPLICANT}/person/names"),
    Refusal("household_with_two_applicants", "referral.submit",
            _set("/body/household/members/1/relationship", "applicant"), "/body/household/members"),
    Refusal("extra_member_in_body", "referral.submit", _set("/body/priority", "high"), "/body"),
    Refusal("extra_member_in_money", "referral.submit", _set(f"{_INCOME}/fx_rate", "0.92"), _INCOME),
    Refusal("phone_not_in_e164", "referral.submit", _set("/body/contact/phone", "139 2608 1357"),
            "/body/contact/phone"),
    Refusal("email_with_a_quoted_local_part", "referral.update", _set("/body/contact/email", '"chan wk"@example.com'),
            "/body/contact/email"),
    Refusal("free_text_without_language", "referral.submit", _delete("/body/circumstances/lang"),
            "/body/circumstances"),
    Refusal("receipt_rejected_without_code", "receipt", _set("/body/status", "rejected"), "/body"),
    Refusal("receipt_accepted_with_code", "receipt", _set("/body/code", "schema-violation"), "/body/code"),
    Refusal("receipt_digest_in_uppercase", "receipt",
            _set("/body/message_digest", "A" * 64), "/body/message_digest"),
    Refusal("close_granted_without_awards", "referral.close", _delete("/body/awards"), "/body"),
    Refusal("close_refused_with_awards", "referral.close",
            _set("/body/awards", _example("referral.close")["body"]["awards"]), "/body/awards", index=1),
    Refusal("decline_for_other_reason_without_note", "referral.decline",
            _decline_for_other_reason_without_note, "/body"),
    Refusal("feedback_update_carrying_household", "referral.update",
            _set("/body/household", _example("referral.submit")["body"]["household"]), "/body/household", index=1),
    Refusal("referral_update_carrying_awards", "referral.update",
            _set("/body/awards", _example("referral.close")["body"]["awards"]), "/body/awards"),
    Refusal("empty_update", "referral.update", _empty_body, "/body"),
]


def _refused(refusal: Refusal) -> dict[str, Any]:
    message = _example(refusal.base, refusal.index)
    refusal.mutate(message)
    return message


@pytest.mark.parametrize("refusal", REFUSALS, ids=[refusal.name for refusal in REFUSALS])
def test_counter_example_is_refused_at_its_location(refusal: Refusal) -> None:
    message = _refused(refusal)
    with pytest.raises(ProtocolError) as raised:
        SCHEMAS.validate(message)
    assert (raised.value.code, raised.value.where) == (refusal.code, refusal.where)


@pytest.mark.parametrize("refusal", REFUSALS, ids=[refusal.name for refusal in REFUSALS])
def test_reference_validator_refuses_counter_example_at_the_same_location(refusal: Refusal) -> None:
    errors = SCHEMAS.reference_errors(_refused(refusal))
    assert errors and errors[0] == refusal.where


def test_both_validators_agree_on_every_example_and_counter_example() -> None:
    disagreements = []
    for schema_ref, example in EXAMPLES:
        fast, reference = SCHEMAS.fragment_errors(schema_ref, example)
        if fast != reference:
            disagreements.append(schema_ref)
    for refusal in REFUSALS:
        message = _refused(refusal)
        for schema_ref in ("message.json", f"{refusal.base}.json", "envelope.json"):
            fast, reference = SCHEMAS.fragment_errors(schema_ref, message)
            if fast != reference:
                disagreements.append(f"{refusal.name} under {schema_ref}: {fast} != {reference}")
    assert disagreements == []


def _string_locations(node: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    if isinstance(node, str):
        yield path
    elif isinstance(node, dict):
        for name, value in node.items():
            yield from _string_locations(value, (*path, name))
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from _string_locations(item, (*path, index))


def _with_line_feed(example: Any, path: tuple[str | int, ...]) -> Any:
    if not path:
        return example + "\n"
    changed = copy.deepcopy(example)
    node = changed
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] += "\n"
    return changed


def test_both_validators_agree_when_any_string_of_any_example_ends_with_a_line_feed() -> None:
    disagreements = []
    for schema_ref, example in EXAMPLES:
        for path in _string_locations(example):
            fast, reference = SCHEMAS.fragment_errors(schema_ref, _with_line_feed(example, path))
            if fast != reference:
                disagreements.append(f"{schema_ref} at {path}: {fast} != {reference}")
    assert disagreements == []


# ----------------------------------------------------------------------------- patterns are ECMA 262


def test_stock_python_jsonschema_would_accept_a_trailing_line_feed() -> None:
    """Why the reference validator has its own `pattern`: Python's `$` matches before a final "\n"."""
    pattern_only = {"type": "string", "pattern": SCHEMAS.documents["defs.json"]["$defs"]["jurisdiction"]["pattern"]}
    assert jsonschema.Draft202012Validator(pattern_only).is_valid("HK\n")
    assert not jsonschema_rs.Draft202012Validator(pattern_only).is_valid("HK\n")
    assert SCHEMAS.fragment_errors("defs.json#/$defs/jurisdiction", "HK\n") == ([""], [""])


@pytest.mark.parametrize(
    ("pattern", "text", "matches"),
    [
        ("^[A-Z]{2}$", "HK", True),
        ("^[A-Z]{2}$", "HK\n", False),
        ("^[A-Z]{2}$", "\nHK", False),
        ("^(a|b$)", "b\n", False),
        ("^a\\$", "a$", True),  # an escaped $ is a literal
        ("^[$]+$", "$$", True),  # so is a $ inside a class
        ("^[a\\]$]+$", "a]$", True),
        ("^x{2,3}$", "xxx", True),
    ],
)
def test_ecma_regex_anchors_dollar_at_the_end_of_input_only(pattern: str, text: str, matches: bool) -> None:
    assert bool(_ecma_regex(pattern).search(text)) is matches
    assert jsonschema_rs.Draft202012Validator({"pattern": pattern}).is_valid(text) is matches


@pytest.mark.parametrize("pattern", ["^\\d{4}$", "^\\w+$", "^\\s$", "^a.b$", "^[]a]$", "^[^]$", "^a{,3}$", "^a\\Z", "a\\"])
def test_ecma_regex_refuses_constructs_whose_meaning_differs(pattern: str) -> None:
    with pytest.raises(ValueError, match="pattern"):
        _ecma_regex(pattern)


def test_email_pattern_keeps_the_dollar_of_its_class_literal() -> None:
    assert SCHEMAS.fragment_errors("defs.json#/$defs/contact", {"email": "a$b@example.com"}) == ([], [])
    refused = SCHEMAS.fragment_errors("defs.json#/$defs/contact", {"email": "a@example.com\n"})
    assert refused == (["/email"], ["/email"])


@pytest.mark.parametrize(
    ("definition", "value", "accepted"),
    [
        ("date", "1900-01-01", True),
        ("date", "2199-12-31", True),
        ("date", "0000-01-01", False),
        ("date", "1899-12-31", False),
        ("date", "2200-01-01", False),
        ("date", "12026-01-01", False),
        ("timestamp", "1900-01-01T00:00:00Z", True),
        ("timestamp", "2199-12-31T23:59:59.999999Z", True),
        ("timestamp", "0000-01-01T00:00:00Z", False),
        ("timestamp", "1899-12-31T23:59:59Z", False),
        ("timestamp", "2200-01-01T00:00:00Z", False),
    ],
)
def test_years_from_1900_to_2199_only(definition: str, value: str, accepted: bool) -> None:
    expected = [] if accepted else [""]
    assert SCHEMAS.fragment_errors(f"defs.json#/$defs/{definition}", value) == (expected, expected)


# ----------------------------------------------------------------------------- refusals never echo


@pytest.mark.parametrize("refusal", REFUSALS, ids=[refusal.name for refusal in REFUSALS])
def test_refusal_never_echoes_the_refused_value(refusal: Refusal) -> None:
    message = _refused(refusal)
    with pytest.raises(ProtocolError) as raised:
        SCHEMAS.validate(message)
    problem = raised.value.problem()
    assert problem["detail"] in (
        "The message does not match the schema of its type.",
        "The message type is not one of the registered types.",
        "Only protocol version 1 is supported.",
        schema_module._IDENTITY_FORMAT,
    )
    said = problem["detail"] + " " + problem["where"]
    assert [value for value in _strings(message) if len(value) >= 4 and value in said] == []


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)


@pytest.mark.parametrize("length", [13, 141, 142, 5000])
def test_overlong_array_is_refused_at_the_array_before_its_items(length: int) -> None:
    message = _example("referral.submit")
    message["body"]["needs"] = ["pension"] * length
    with pytest.raises(ProtocolError) as raised:
        SCHEMAS.validate(message)
    assert raised.value.where == "/body/needs" == SCHEMAS.reference_errors(message)[0]


def test_first_location_is_first_in_member_order_not_schema_order() -> None:
    message = _example("referral.submit")
    message["body"]["circumstances"]["lang"] = "Chinese"
    message["body"]["household"]["members"][2]["person"]["sex"] = "female"
    message["legal_basis"]["statute"] = ""
    expected = ["/legal_basis/statute", "/body/household/members/2/person/sex", "/body/circumstances/lang"]
    assert SCHEMAS.reference_errors(message) == expected
    with pytest.raises(ProtocolError) as raised:
        SCHEMAS.validate(message)
    assert raised.value.where == expected[0]


@pytest.mark.parametrize(
    "email",
    ["chan.wk@example.com", "o'brien+gba@mail.example.hk", "a@b.c", "x" * 65 + "@example.com",
     "a@" + "b" * 63 + ".com", "a@" + "b" * 64 + ".com", "a..b@example.com", "a@example", "a@-x.com", "中@example.com"],
)
def test_email_is_checked_by_pattern_only_so_both_validators_agree(email: str) -> None:
    fast, reference = SCHEMAS.fragment_errors("defs.json#/$defs/contact", {"email": email})
    assert fast == reference


def test_payload_that_is_not_an_object_is_a_schema_violation() -> None:
    with pytest.raises(ProtocolError) as raised:
        SCHEMAS.validate(["referral.submit"])
    assert (raised.value.code, raised.value.where) == ("schema-violation", "")


# ----------------------------------------------------------------------------- formats really run


@pytest.mark.parametrize(
    ("definition", "impossible"),
    [("timestamp", "2026-02-30T00:00:00Z"), ("timestamp", "2026-11-28T24:00:00Z"), ("date", "2027-02-29")],
)
def test_format_check_refuses_what_the_pattern_lets_through(definition: str, impossible: str) -> None:
    schema = SCHEMAS.documents["defs.json"]["$defs"][definition]
    pattern_only = {"type": "string", "pattern": schema["pattern"]}
    assert jsonschema_rs.Draft202012Validator(pattern_only).is_valid(impossible)
    assert jsonschema.Draft202012Validator(pattern_only).is_valid(impossible)
    fast, reference = SCHEMAS.fragment_errors(f"defs.json#/$defs/{definition}", impossible)
    assert fast == [""] and reference == [""]


def test_format_checks_run_in_both_libraries() -> None:
    impossible = "2026-02-30T00:00:00Z"
    with_format = {"type": "string", "format": "date-time"}
    assert jsonschema_rs.Draft202012Validator(with_format).is_valid(impossible)  # annotation only by default
    assert not jsonschema_rs.Draft202012Validator(with_format, validate_formats=True).is_valid(impossible)
    assert not jsonschema.Draft202012Validator(with_format, format_checker=jsonschema.FormatChecker()).is_valid(
        impossible
    )
    message = _example("receipt")
    message["created"] = impossible
    assert SCHEMAS.reference_errors(message) == ["/created"]
    with pytest.raises(ProtocolError) as raised:
        SCHEMAS.validate(message)
    assert raised.value.where == "/created"


# ----------------------------------------------------------------------------- loading


def test_schemas_are_built_once_per_process() -> None:
    assert load_message_schemas() is SCHEMAS


def _install(directory: Path, changed: dict[str, dict[str, Any]]) -> None:
    for name, document in SCHEMAS.documents.items():
        (directory / name).write_text(json.dumps(changed.get(name, document)), encoding="utf-8")


def test_a_schema_file_with_a_foreign_id_is_refused_at_load(tmp_path: Path) -> None:
    _install(tmp_path, {"defs.json": dict(SCHEMAS.documents["defs.json"], **{"$id": "https://elsewhere.example/d"})})
    with pytest.raises(ValueError, match="defs.json"):
        MessageSchemas(tmp_path)


@pytest.mark.parametrize(
    "regex_keyword",
    [{"pattern": "^[0-9]{2}$"}, {"pattern": "^\\d{2}$"}, {"patternProperties": {"^x$": {}}}],
    ids=["portable_pattern", "digit_escape", "pattern_properties"],
)
def test_a_pattern_the_reference_cannot_read_as_ecma_is_refused_at_load(
    tmp_path: Path, regex_keyword: dict[str, Any]
) -> None:
    defs = copy.deepcopy(SCHEMAS.documents["defs.json"])
    defs["$defs"]["extra"] = {"type": "string", **regex_keyword}
    _install(tmp_path, {"defs.json": defs})
    if regex_keyword.get("pattern") == "^[0-9]{2}$":
        MessageSchemas(tmp_path)
    else:
        with pytest.raises(ValueError, match="defs.json"):
            MessageSchemas(tmp_path)


def test_a_reference_outside_the_installed_schemas_is_refused_not_fetched(tmp_path: Path) -> None:
    envelope = copy.deepcopy(SCHEMAS.documents["envelope.json"])
    envelope["properties"]["body"] = {"$ref": "https://elsewhere.example/schemas/body.json"}
    _install(tmp_path, {"envelope.json": envelope})
    with pytest.raises(ValueError, match="never fetched"):
        MessageSchemas(tmp_path)
