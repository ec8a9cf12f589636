"""JSON text nobody signs (gateway/jsontext.py): orjson's, with the standard library's json for what orjson refuses."""

from __future__ import annotations

import json
import uuid

from hypothesis import given
from hypothesis import strategies as st

from gateway.jsontext import dumps_bytes, dumps_text

documents = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@given(documents)
def test_what_is_written_reads_back_as_the_value(document):
    assert json.loads(dumps_bytes(document)) == document
    assert json.loads(dumps_text(document)) == document


def test_non_ascii_text_is_utf8_and_the_text_is_compact():
    assert dumps_bytes({"text": "陳大文", "n": [1, 2]}) == '{"text":"陳大文","n":[1,2]}'.encode("utf-8")


def test_what_orjson_refuses_is_written_by_json_with_the_callers_options():
    for value in ({1: "a"}, {"big": 2**70}):
        assert dumps_bytes(value, sort_keys=True) == json.dumps(value, sort_keys=True).encode("utf-8")
        assert dumps_text(value) == json.dumps(value)


def test_default_is_passed_to_both_writers():
    marker = object()
    assert json.loads(dumps_text({"x": marker}, default=lambda _: "seen")) == {"x": "seen"}
    assert json.loads(dumps_text({1: marker}, default=lambda _: "seen")) == {"1": "seen"}


def test_uuids_are_written_as_their_value():
    value = uuid.UUID("01a22e7a-506a-7747-a2db-b9e7ab8077a2")
    assert json.loads(dumps_bytes({"id": value})) == {"id": str(value)}


def test_a_nan_is_written_as_null_so_the_text_stays_json():
    assert dumps_bytes({"x": float("nan"), "y": float("inf")}) == b'{"x":null,"y":null}'
