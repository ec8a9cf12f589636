"""The I-JSON profile (docs/protocol.md §4): what passes and where the edges are."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.protocol import strict_json
from gateway.protocol.errors import ProtocolError
from gateway.protocol.strict_json import MAX_DEPTH, loads


def _code(text: bytes) -> str:
    with pytest.raises(ProtocolError) as refused:
        loads(text)
    return refused.value.code


def test_the_safe_integer_bounds_are_inclusive():
    assert loads(b"[9007199254740992, -9007199254740992]") == [2**53, -(2**53)]
    assert _code(b"-9007199254740993") == "json-integer-too-large"


def test_tiny_and_huge_finite_doubles_pass_but_overflow_does_not():
    assert loads(b"[1e-400, 1.7976931348623157e308]") == [0.0, 1.7976931348623157e308]
    assert _code(b"-1e400") == "json-number-out-of-range"


def test_nesting_exactly_at_the_limit_passes():
    at_limit = b"[" * MAX_DEPTH + b"]" * MAX_DEPTH
    assert loads(at_limit) is not None
    assert _code(b"[" + at_limit + b"]") == "json-too-deep"


def test_objects_count_toward_depth_like_arrays():
    nested = b'{"a":' * (MAX_DEPTH + 1) + b"1" + b"}" * (MAX_DEPTH + 1)
    assert _code(nested) == "json-too-deep"


def test_paired_surrogate_escapes_are_one_character():
    assert loads(b'"\\ud83d\\ude00"') == "\U0001F600"


def test_an_escaped_backslash_before_u0000_text_is_not_a_nul():
    assert loads(b'"\\\\u0000"') == "\\u0000"


@pytest.mark.parametrize("text", [b'{"\\u0000":1}', b'{"\\udc00":1}'])
def test_member_names_follow_the_string_rules(text):
    assert _code(text) in {"json-nul-character", "json-lone-surrogate"}


def test_utf8_encoded_surrogates_are_invalid_utf8():
    assert _code(b'"\xed\xa0\x80"') == "json-invalid-utf8"


def test_raw_control_characters_are_syntax_errors():
    assert _code(b'"a\nb"') == "json-syntax"


def test_duplicate_names_in_nested_objects_are_found():
    assert _code(b'{"a":[{"b":1,"b":1}]}') == "json-duplicate-key"


@pytest.mark.parametrize("text", [
    b'{"a":1,"a" :2}',                  # whitespace before the colon hides one separator from a naive count
    b'{"a":1,"b":"x\\":","a":2}',         # a '":' inside a string must not mask the repeat
    b'{"a" :1, "a"\n:2}',
    b'[{"k":1},{"k":1,"k":1}]',
    b'{"a":{"b":1},"a":{"b":1}}',
])
def test_duplicates_are_found_whatever_the_spacing_or_string_content(text):
    assert _code(text) == "json-duplicate-key"


@pytest.mark.parametrize("text", [b'{"a":"\\":","b":1}', b'{"a" : 1 , "b" :\t2}', b'{"x":"\\" :"}'])
def test_colon_quotes_inside_strings_are_not_duplicates(text):
    assert isinstance(loads(text), dict)


# --- the fast path (orjson) against the reference (the standard library with refusing hooks) ---------------------------

def _outcome(parse, data: bytes) -> tuple[str, str]:
    """What a parser makes of `data`: its value with every type visible (repr tells 1 from 1.0 and -0.0 from 0.0,
    and keeps the members' order), or the refusal's code."""
    try:
        return "value", repr(parse(data))
    except ProtocolError as refusal:
        return "refused", refusal.code


def _reference(data: bytes):
    return strict_json._loads_exactly(data, "payload")


# What orjson reads otherwise than the reference, or refuses with another reason: each must come out as the reference's.
EDGES = [
    b"12345678901234567890123", b"[18446744073709551615]", b"[18446744073709551616]", b"[-9223372036854775809]",
    b"[9007199254740993]", b"[-9007199254740992]", b"9007199254740992", b"[1e400]", b"-1e400", b"[2e308]",
    b"[1.7976931348623157e308]", b"[1e19]", b"[-1e300]", b"[1e-400]", b"[-0]", b"[-0.0]", b"[1E2]", b"0.1e-999999",
    b'"\\ud800"', b'"\\udc00x"', b'"\\u0000"', b'{"a\\u0000":1}', b'"\\ud83d\\ude00"', b"[NaN]", b"[Infinity]",
    b"-Infinity", b"\xef\xbb\xbf[1]", b'"\xed\xa0\x80"', b'"\xff"', b'"a\nb"', b"[01]", b"[1,]", b" [1] ", b"[1] x",
    b"", b" ", b"nul", b"[" * 33 + b"]" * 33, b"[" * 1100 + b"]" * 1100, b'{"a":1,"a":2}', b'{"a":1,"a" :1}',
    b'{"a":"\x7f"}', b'"\\/"', b"[true,false,null]", b"\t\n\r{}", b"\x0c{}", b'{"a":1}\x00', b"[1.0e+2, 5e-324]",
]


@pytest.mark.parametrize("text", EDGES)
def test_the_fast_path_reads_every_edge_as_the_reference_does(text):
    assert _outcome(loads, text) == _outcome(_reference, text)


_names = st.sampled_from(["a", "b", "id", "\u00e9", "\\", '"', '":', "\\u0000"]) | st.text(max_size=4)
_numbers = (st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.sampled_from([2**53, 2**53 + 1, -(2**53) - 1, 2**63, 2**64]))
_values = st.recursive(
    st.none() | st.booleans() | _numbers | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.lists(st.tuples(_names, inner), max_size=4),
    max_leaves=30,
)


def _write(value, space: str, escaped: bool) -> str:
    """JSON text of `value`, where a list of pairs is an object (so names may repeat) and floats may be out of range;
    `escaped` writes every non-ASCII character and control character as a \\u escape (U+0000 included)."""
    if isinstance(value, list) and value and all(isinstance(item, tuple) for item in value):
        members = (f"{json.dumps(name, ensure_ascii=escaped)}{space}:{_write(member, space, escaped)}" for name, member in value)
        return "{" + ",".join(members) + "}"
    if isinstance(value, list):
        return "[" + f",{space}".join(_write(item, space, escaped) for item in value) + "]"
    if isinstance(value, float) and math.isinf(value):
        return "1e999" if value > 0 else "-1e999"
    return json.dumps(value, ensure_ascii=escaped)


@settings(max_examples=400, deadline=None)
@given(_values, st.sampled_from(["", " ", "\n"]), st.booleans())
def test_the_fast_path_agrees_with_the_reference_on_generated_texts(value, space, escaped):
    data = _write(value, space, escaped).encode("utf-8", "surrogatepass")
    assert _outcome(loads, data) == _outcome(_reference, data)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=60) | st.text(alphabet='{}[],:"\\u0123456789.eE+-tfnrlsa \n', max_size=40).map(str.encode))
def test_the_fast_path_agrees_with_the_reference_on_arbitrary_bytes(data):
    assert _outcome(loads, data) == _outcome(_reference, data)


# --- dumps: orjson's text where it reads back as the value, json's otherwise -----------------------------------------

def _json_reference(value):
    """What `strict_json.dumps` wrote before orjson: the standard library's text, or its refusal."""
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")
    except Exception as error:  # noqa: BLE001 - the refusal is part of what must agree
        return type(error)


def _ours(value):
    try:
        return strict_json.dumps(value)
    except Exception as error:  # noqa: BLE001
        return type(error)


_TEXT = st.text(st.characters(codec="utf-8"), max_size=12)
_WITHOUT_FLOATS = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | _TEXT | st.text(max_size=4),  # lone surrogates too
    lambda inner: st.lists(inner, max_size=3) | st.tuples(inner, inner)
    | st.dictionaries(_TEXT | st.integers(-5, 5) | st.booleans() | st.none(), inner, max_size=3),
    max_leaves=15,
)


@settings(max_examples=300)
@given(_WITHOUT_FLOATS)
def test_dumps_writes_what_json_writes_or_refuses_what_it_refuses(value):
    assert _ours(value) == _json_reference(value)


@settings(max_examples=200)
@given(st.recursive(st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**53), 2**53) | _TEXT,
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3), max_leaves=10))
def test_with_floats_dumps_writes_the_same_value_as_json(value):
    ours = strict_json.dumps(value)
    assert json.loads(ours) == json.loads(_json_reference(value)) == value


@pytest.mark.parametrize("value, refusal", [
    ({"amount": math.nan}, ValueError),
    ([math.inf], ValueError),
    ({"id": __import__("uuid").UUID(int=1)}, TypeError),
    ({"at": __import__("datetime").date(2026, 11, 30)}, TypeError),
    ({"text": "\ud800"}, UnicodeEncodeError),
])
def test_dumps_refuses_what_json_refuses_where_orjson_would_write_something(value, refusal):
    with pytest.raises(refusal):
        strict_json.dumps(value)


def test_a_float_exponent_is_the_one_difference_and_reads_as_the_same_number():
    assert _json_reference({"x": 1e-7}) == b'{"x":1e-07}' and strict_json.dumps({"x": 1e-7}) == b'{"x":1e-7}'
    assert strict_json.loads(b'{"x":1e-07}') == strict_json.loads(strict_json.dumps({"x": 1e-7}))
    assert strict_json.dumps({"x": 0.1, "y": -0.0, "z": 1e16}) == _json_reference({"x": 0.1, "y": -0.0, "z": 1e16})


def test_a_signed_payload_is_written_as_json_writes_it():
    payload = {"v": 1, "type": "referral.submit", "id": "01a22dd7-03a7-7165-b20c-a91c0bd7fa1a", "from": "CN-GD", "to": "HK",
               "body": {"persons": [{"name": "陳大文", "identity_documents": [{"kind": "hkid", "number": "A123456(3)"}]}],
                        "notes": ["line\nbreak\t\"quoted\" \\ \x7f \u2028 \x00"], "count": 2**53, "flag": False, "none": None}}
    assert strict_json.dumps(payload) == _json_reference(payload)
