"""The I-JSON profile (docs/protocol.md §4): what passes and where the edges are."""

from __future__ import annotations

import pytest

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
