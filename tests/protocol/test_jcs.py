"""gateway.protocol.jcs writes what the rfc8785 package writes, for every value, fast path or not; the local view's
digest (§9.2 `local_view_digest`) is the SHA-256 of those bytes."""

from __future__ import annotations

import hashlib

import pytest
import rfc8785
from hypothesis import given
from hypothesis import strategies as st

from gateway.protocol import jcs
from gateway.protocol.statements import ConvertedText, LocalTime, LocalView, SchemeName

_any_names = st.text(max_size=6).filter(lambda name: not any(0xD800 <= ord(c) <= 0xDFFF for c in name))
_strings = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**60), 2**60) | st.floats(allow_nan=False, allow_infinity=False) | _strings,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_any_names, inner, max_size=3),
    max_leaves=15,
)


def _outcome(dumps, value):
    try:
        return dumps(value)
    except Exception as error:  # noqa: BLE001 - the package's refusal is part of what must agree
        return type(error)


@given(_values)
def test_dumps_equals_the_rfc8785_package_for_any_value(value):
    assert _outcome(jcs.dumps, value) == _outcome(rfc8785.dumps, value), "the same bytes, or the same refusal"


@pytest.mark.parametrize("value, simple", [
    ({"a": ["x", 1, True, None]}, True),
    ({"a": 2**53 - 1, "b": -(2**53) + 1}, True),
    ({"a": 2**53}, False),
    ({"a": 1.5}, False),
    ({"é": "a non-ASCII name sorts by UTF-16 code unit in JCS"}, False),
    ({"a": b"bytes"}, False),
])
def test_only_values_json_dumps_writes_exactly_take_the_fast_path(value, simple):
    assert jcs.is_simple(value) is simple


def test_a_lone_surrogate_is_refused_as_the_package_refuses_it():
    with pytest.raises(Exception) as ours:
        jcs.dumps({"text": "\ud800"})
    with pytest.raises(Exception) as package:
        rfc8785.dumps({"text": "\ud800"})
    assert type(ours.value) is type(package.value)


def test_the_local_view_digest_is_the_sha256_of_the_jcs_bytes():
    view = LocalView(
        texts=(ConvertedText("/body/notes/0", "申請人稱\"收入\"減少\n\t（见附件）😀\u2028\x7f", "zh-Hant-HK"),),
        schemes=(SchemeName("/body/needs/0", "CSSA", "綜合社會保障援助", "zh-Hant-HK"),),
        times=(LocalTime("/created", "2026-11-29T20:00:00+08:00", "Asia/Hong_Kong"),),
    )
    assert view.digest == hashlib.sha256(rfc8785.dumps(view.to_document())).hexdigest()
    assert LocalView().digest == hashlib.sha256(b'{"schemes":[],"texts":[],"times":[]}').hexdigest()


_ascii_names = st.text(st.characters(max_codepoint=127), max_size=6)
_simple_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | _strings,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_ascii_names, inner, max_size=4),
    max_leaves=20,
)


@given(_simple_values)
def test_simple_dumps_writes_the_rfc8785_bytes_of_every_simple_value(value):
    """What ledger entries and local views go through: orjson's bytes must be the JCS bytes, sorted names included."""
    assert jcs.is_simple(value)
    assert jcs.simple_dumps(value) == rfc8785.dumps(value)


def test_simple_dumps_refuses_a_lone_surrogate_as_json_does():
    with pytest.raises(UnicodeEncodeError):
        jcs.simple_dumps({"text": "\udc00"})
