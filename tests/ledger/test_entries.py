"""Ledger entries are RFC 8785 canonical JSON: our writer agrees with the rfc8785 package."""

from __future__ import annotations

import pytest
import rfc8785
from hypothesis import given
from hypothesis import strategies as st

from gateway.ledger.entries import LedgerEntry, canonical

_names = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=8)
_strings = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | _strings,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_names, inner, max_size=3),
    max_leaves=15,
)


@given(st.dictionaries(_names, _values, max_size=6))
def test_canonical_equals_the_rfc8785_reference(value):
    assert canonical(value) == rfc8785.dumps(value)


def test_an_entry_has_version_kind_and_time_and_sorted_members():
    entry = LedgerEntry("accepted", "2026-11-28T12:00:00Z", {"to": "HK", "from": "CN-GD", "message_id": "01a2"})
    assert entry.canonical() == b'{"from":"CN-GD","kind":"accepted","message_id":"01a2","time":"2026-11-28T12:00:00Z","to":"HK","v":1}'


@pytest.mark.parametrize("value", [{"amount": 1.5}, {"é": "non-ASCII member name"}, {"x": b"bytes"}])
def test_values_outside_the_entry_vocabulary_are_refused(value):
    with pytest.raises(ValueError):
        canonical(value)
