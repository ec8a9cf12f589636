"""Properties that must hold for all inputs (hypothesis): round trips, and no change survives."""

from __future__ import annotations

import base64

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.protocol import base64url, jws, strict_json
from gateway.protocol.errors import ProtocolError
from gateway.protocol.keys import generate

KEYS = {"Ed25519": generate("Ed25519", "prop-ed"), "ES256": generate("ES256", "prop-es")}
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

# I-JSON values: safe integers, finite doubles, strings without U+0000 or surrogates.
_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=20)
_scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats(allow_nan=False, allow_infinity=False) | _text
i_json = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4), max_leaves=20)


@given(st.binary(max_size=300))
def test_base64url_round_trips(data):
    assert base64url.decode(base64url.encode(data)) == data


@given(st.text(alphabet=ALPHABET, max_size=60))
def test_base64url_has_exactly_one_encoding_per_byte_string(text):
    try:
        data = base64url.decode(text)
    except base64url.Base64urlError:
        return
    assert base64url.encode_str(data) == text


def _decode_with_the_standard_library(text: str) -> bytes | None:
    """The reference for base64url.decode: the canonical rules (§3.1) spelled out, then `base64.urlsafe_b64decode`."""
    if len(text) % 4 == 1 or any(character not in ALPHABET for character in text):
        return None
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    return data if base64.urlsafe_b64encode(data).rstrip(b"=").decode() == text else None


@settings(max_examples=300)
@given(st.text(alphabet=ALPHABET + "+/= .\t\n\x00\u00e9", max_size=60) | st.binary(max_size=40).map(lambda data: data.decode("latin-1")))
def test_base64url_decodes_what_the_standard_library_decodes_and_refuses_the_rest(text):
    for given_as in (text, text.encode("latin-1", "replace")):
        try:
            decoded = base64url.decode(given_as)
        except base64url.Base64urlError:
            decoded = None
        assert decoded == _decode_with_the_standard_library(text if isinstance(given_as, str) else given_as.decode("latin-1"))


@given(i_json)
def test_strict_json_reads_back_what_it_writes(value):
    assert strict_json.loads(strict_json.dumps(value)) == value


@pytest.mark.parametrize("alg", sorted(KEYS))
@given(payload=st.binary(min_size=1, max_size=200))
def test_jws_round_trips(alg, payload):
    key = KEYS[alg]
    parsed = jws.parse_compact(jws.sign_compact(payload, key, "gba-case+jws"), "gba-case+jws")
    assert jws.verify_signature(parsed, key.public()) == payload


@st.composite
def _edits(draw):
    """A position-independent description of one change to a compact JWS."""
    kind = draw(st.sampled_from(["replace", "insert", "delete"]))
    return kind, draw(st.integers(min_value=0)), draw(st.sampled_from(ALPHABET + "."))


@pytest.mark.parametrize("alg", sorted(KEYS))
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(payload=st.binary(min_size=1, max_size=100), edit=_edits())
def test_any_change_to_any_segment_is_refused(alg, payload, edit):
    key = KEYS[alg]
    compact = jws.sign_compact(payload, key, "gba-case+jws")
    kind, position, character = edit
    position %= len(compact)
    new = character.encode()
    if kind == "replace":
        changed = compact[:position] + new + compact[position + 1:]
    elif kind == "insert":
        changed = compact[:position] + new + compact[position:]
    else:
        changed = compact[:position] + compact[position + 1:]
    if changed == compact:
        return
    with pytest.raises(ProtocolError):
        jws.verify_signature(jws.parse_compact(changed, "gba-case+jws"), key.public())


@given(
    st.dictionaries(_text, i_json, min_size=1, max_size=5),
    st.sampled_from(["", " ", "\n", "\t "]),
    st.integers(min_value=0, max_value=3),
)
def test_a_repeated_member_name_is_always_refused(members, space, wrapping):
    name = sorted(members)[0]
    text = strict_json.dumps(members).decode()[:-1] + "," + strict_json.dumps(name).decode() + space + ":" + space + "0}"
    text = "[" * wrapping + text + "]" * wrapping
    with pytest.raises(ProtocolError) as refused:
        strict_json.loads(text.encode())
    assert refused.value.code == "json-duplicate-key"

