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
