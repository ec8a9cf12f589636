"""Signed request proofs (docs/protocol.md §9.5): every check but the replay set's."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.protocol import base64url
from gateway.protocol.errors import ProtocolError
from gateway.protocol.keys import generate
from gateway.protocol.message import sign_message
from gateway.protocol.request_proof import RequestProof, check_request_proof, make_request_proof
from tests.conftest import NOW
from tests.jws_forge import forge

BASE = "https://hub.gba-case-gateway.example"
INBOX = BASE + "/v1/inbox"
BODY = b'{"message_id":"01a2217d-75c0-7754-90bd-7b93e6fa7d18"}'
IAT = int(NOW.timestamp())
JTI = "01a2217e-0c3b-7d2e-8f41-5a6b7c8d9e0f"


@pytest.fixture(scope="module")
def hk_key(test_key):
    return test_key("test-hk-message-1")


def _check(compact, trust, **received):
    """Check `compact` as the proof of a `GET /v1/inbox` with no body, unless `received` says otherwise."""
    received = {"method": "GET", "url": "/v1/inbox", "body": None, "public_base_url": BASE, "now": NOW} | received
    return check_request_proof(compact, trust, **received)


def _refused(compact, trust, **received) -> ProtocolError:
    with pytest.raises(ProtocolError) as refused:
        _check(compact, trust, **received)
    return refused.value


_ABSENT = object()


def _forged(key, typ="gba-request+jws", **members) -> bytes:
    payload = {"htm": "GET", "htu": INBOX, "iat": IAT, "jti": JTI, "body_sha256": None} | members
    payload = {name: value for name, value in payload.items() if value is not _ABSENT}
    return forge({"alg": key.alg, "kid": key.kid, "typ": typ}, payload, key)


# --- what passes ------------------------------------------------------------------------


@pytest.mark.parametrize("kid, owner", [("test-hk-message-1", "HK"), ("test-mo-message-1", "MO"), ("test-cn-gd-message-1", "CN-GD")])
def test_a_proof_names_its_caller_and_the_jti_the_hub_records(kid, owner, trust, test_key):
    proof = make_request_proof(test_key(kid), "POST", BASE + "/v1/receipts", BODY, NOW)
    verified = _check(proof, trust, method="POST", url="/v1/receipts", body=BODY)
    assert (verified.kid, verified.owner, verified.iat) == (kid, owner, IAT)
    assert verified.jti == _payload(proof).jti


def test_each_proof_has_a_fresh_jti(trust, hk_key):
    first, second = (make_request_proof(hk_key, "GET", INBOX, None, NOW) for _ in range(2))
    assert _check(first, trust).jti != _check(second, trust).jti


def test_the_query_is_not_part_of_htu_on_either_side(trust, hk_key):
    proof = make_request_proof(hk_key, "GET", INBOX + "?cursor=41&wait=30#top", None, NOW)
    assert _payload(proof).htu == INBOX
    assert _check(proof, trust, url="/v1/inbox?cursor=42").owner == "HK"


def test_scheme_and_host_compare_without_case(trust, hk_key):
    proof = _forged(hk_key, htu="HTTPS://Hub.GBA-Case-Gateway.example/v1/inbox")
    assert _check(proof, trust, public_base_url="https://HUB.gba-case-gateway.example/").owner == "HK"


def test_the_host_the_request_arrived_on_is_never_compared(trust, hk_key):
    proof = make_request_proof(hk_key, "GET", INBOX, None, NOW)
    assert _check(proof, trust, url="http://10.0.0.7:8080/v1/inbox?cursor=1").owner == "HK"


def test_a_public_base_url_with_a_path_prefixes_the_request_path(trust, hk_key):
    proof = make_request_proof(hk_key, "GET", "https://gateway.example/gba/v1/inbox", None, NOW)
    assert _check(proof, trust, public_base_url="https://gateway.example/gba/").owner == "HK"


@pytest.mark.parametrize("age", [-300, 0, 300])
def test_a_proof_up_to_300_seconds_either_side_of_the_hubs_clock_is_fresh(age, trust, hk_key):
    proof = make_request_proof(hk_key, "GET", INBOX, None, NOW - timedelta(seconds=age))
    assert _check(proof, trust).iat == IAT - age


@pytest.mark.parametrize("body", [None, b""])
def test_an_empty_body_has_a_null_digest(body, trust, hk_key):
    proof = make_request_proof(hk_key, "POST", BASE + "/v1/receipts", body, NOW)
    assert _payload(proof).body_sha256 is None
    assert _check(proof, trust, method="POST", url="/v1/receipts", body=None if body else b"").owner == "HK"


# --- PROTO-9.5-1 ------------------------------------------------------------------------


@pytest.mark.parametrize("compact", [None, b"", ""])
def test_a_request_without_a_proof_is_refused(compact, trust):
    assert _refused(compact, trust).code == "request-proof-missing"


# --- PROTO-9.5-3: htm, htu, body_sha256 ---------------------------------------------------


@pytest.mark.parametrize(
    "made_for, received, where",
    [
        pytest.param(("POST", INBOX, None), {}, "/htm", id="another method"),
        pytest.param(("GET", INBOX, None), {"method": "get"}, "/htm", id="a method in another case"),
        pytest.param(("GET", BASE + "/v1/messages", None), {}, "/htu", id="another path"),
        pytest.param(("GET", BASE + "/v1/Inbox", None), {}, "/htu", id="a path in another case"),
        pytest.param(("GET", INBOX + "/", None), {}, "/htu", id="a trailing slash"),
        pytest.param(("GET", "https://hub.evil.example/v1/inbox", None), {}, "/htu", id="another host"),
        pytest.param(("GET", "http://hub.gba-case-gateway.example/v1/inbox", None), {}, "/htu", id="another scheme"),
        pytest.param(("GET", "https://hub.gba-case-gateway.example:443/v1/inbox", None), {}, "/htu", id="an explicit port"),
        pytest.param(("GET", INBOX, None), {"public_base_url": BASE + "/gba"}, "/htu", id="not under the public base URL"),
        pytest.param(("POST", INBOX, BODY), {"method": "POST", "body": BODY + b" "}, "/body_sha256", id="another body"),
        pytest.param(("POST", INBOX, BODY), {"method": "POST", "body": None}, "/body_sha256", id="a digest for no body"),
        pytest.param(("POST", INBOX, None), {"method": "POST", "body": BODY}, "/body_sha256", id="no digest for a body"),
    ],
)
def test_a_proof_made_for_another_request_is_a_mismatch(made_for, received, where, trust, hk_key):
    refusal = _refused(make_request_proof(hk_key, *made_for, NOW), trust, **received)
    assert (refusal.code, refusal.where) == ("request-proof-mismatch", where)


@pytest.mark.parametrize(
    "htu",
    [INBOX + "?cursor=42", INBOX + "?", INBOX + "#top", "/v1/inbox", "hub.gba-case-gateway.example/v1/inbox"],
)
def test_an_htu_with_a_query_or_fragment_or_without_scheme_and_host_is_a_mismatch(htu, trust, hk_key):
    refusal = _refused(_forged(hk_key, htu=htu), trust, url="/v1/inbox?cursor=42")
    assert (refusal.code, refusal.where) == ("request-proof-mismatch", "/htu")


def test_a_digest_of_the_empty_body_is_not_null(trust, hk_key):
    empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    refusal = _refused(_forged(hk_key, body_sha256=empty), trust, body=b"")
    assert (refusal.code, refusal.where) == ("request-proof-mismatch", "/body_sha256")


# --- PROTO-9.5-4: iat -----------------------------------------------------------------------


@pytest.mark.parametrize("age", [301, -301, 86_400])
def test_a_proof_more_than_300_seconds_from_the_hubs_clock_is_stale(age, trust, hk_key):
    refusal = _refused(make_request_proof(hk_key, "GET", INBOX, None, NOW - timedelta(seconds=age)), trust)
    assert (refusal.code, refusal.where) == ("request-proof-stale", "/iat")


def test_the_window_is_the_callers_max_age(trust, hk_key):
    proof = make_request_proof(hk_key, "GET", INBOX, None, NOW - timedelta(seconds=61))
    assert _refused(proof, trust, max_age_seconds=60).code == "request-proof-stale"


def test_a_mismatch_is_reported_before_staleness(trust, hk_key):
    proof = make_request_proof(hk_key, "POST", INBOX, None, NOW - timedelta(hours=1))
    assert _refused(proof, trust).code == "request-proof-mismatch"


# --- PROTO-9.5-2: the payload ---------------------------------------------------------------


@pytest.mark.parametrize(
    "members, where",
    [
        pytest.param({"htm": _ABSENT}, "", id="no htm"),
        pytest.param({"htu": _ABSENT}, "", id="no htu"),
        pytest.param({"iat": _ABSENT}, "", id="no iat"),
        pytest.param({"jti": _ABSENT}, "", id="no jti"),
        pytest.param({"body_sha256": _ABSENT}, "", id="no body_sha256"),
        pytest.param({"ath": "x"}, "", id="an extra member"),
        pytest.param({"htm": "get"}, "/htm", id="a lowercase method"),
        pytest.param({"htm": ["GET"]}, "/htm", id="a method that is not a string"),
        pytest.param({"htu": ""}, "/htu", id="an empty htu"),
        pytest.param({"htu": None}, "/htu", id="a null htu"),
        pytest.param({"iat": str(IAT)}, "/iat", id="iat as a string"),
        pytest.param({"iat": IAT + 0.5}, "/iat", id="a fractional iat"),
        pytest.param({"iat": True}, "/iat", id="iat true"),
        pytest.param({"jti": JTI.upper()}, "/jti", id="an uppercase jti"),
        pytest.param({"jti": "3f1c0d9e-2b4a-4c6e-9d8f-0a1b2c3d4e5f"}, "/jti", id="a UUIDv4 jti"),
        pytest.param({"body_sha256": "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"}, "/body_sha256", id="an uppercase digest"),
        pytest.param({"body_sha256": ""}, "/body_sha256", id="an empty digest"),
    ],
)
def test_a_payload_not_as_9_5_defines_is_invalid(members, where, trust, hk_key):
    refusal = _refused(_forged(hk_key, **members), trust)
    assert (refusal.code, refusal.where) == ("request-proof-invalid", where)


@pytest.mark.parametrize("payload", [b"[]", b'"GET"', b"null"])
def test_a_payload_that_is_not_an_object_is_invalid(payload, trust, hk_key):
    proof = forge({"alg": hk_key.alg, "kid": hk_key.kid, "typ": "gba-request+jws"}, payload, hk_key)
    assert _refused(proof, trust).code == "request-proof-invalid"


def test_an_integral_iat_written_with_a_fraction_is_an_integer(trust, hk_key):
    assert _check(_forged(hk_key, iat=float(IAT)), trust).iat == IAT


def test_the_payload_is_read_as_strict_json(trust, hk_key):
    payload = f'{{"htm":"GET","htm":"GET","htu":"{INBOX}","iat":{IAT},"jti":"{JTI}","body_sha256":null}}'.encode()
    proof = forge({"alg": hk_key.alg, "kid": hk_key.kid, "typ": "gba-request+jws"}, payload, hk_key)
    refusal = _refused(proof, trust)
    assert (refusal.code, refusal.where) == ("json-duplicate-key", "payload")


# --- the JWS and its key (§3, PROTO-9.5-6) --------------------------------------------------


def test_a_message_is_not_a_request_proof(example, trust, hk_key):
    refusal = _refused(sign_message(example("referral.accept"), hk_key), trust)
    assert (refusal.code, refusal.where) == ("typ-unexpected", "typ")


@pytest.mark.parametrize("typ", ["gba-case+jws", "application/gba-request+jws", "GBA-REQUEST+JWS"])
def test_a_proof_with_another_typ_is_refused(typ, trust, hk_key):
    assert _refused(_forged(hk_key, typ=typ), trust).code == "typ-unexpected"


@pytest.mark.parametrize("kid", ["test-hub-receipt-1", "test-hub-checkpoint-1", "test-hk-witness-1"])
def test_a_key_that_is_not_a_message_key_cannot_sign_a_proof(kid, trust, test_key):
    refusal = _refused(_forged(test_key(kid)), trust)
    assert (refusal.code, refusal.where) == ("key-use-mismatch", "kid")


def test_a_proof_signed_by_an_unregistered_key_is_refused(trust):
    assert _refused(_forged(generate("Ed25519", "test-hk-message-9")), trust).code == "key-unknown"


@pytest.mark.parametrize(
    "kid, code",
    [
        ("test-hk-message-revoked", "key-revoked"),
        ("test-mo-message-expired", "key-expired"),
        ("test-cn-gd-message-future", "key-not-yet-valid"),
    ],
)
def test_the_key_must_be_valid_at_the_hubs_clock(kid, code, trust, test_key):
    proof = make_request_proof(test_key(kid), "GET", INBOX, None, NOW)
    assert _refused(proof, trust).code == code


def test_a_proof_signed_by_another_key_than_its_kid_names_is_refused(trust, test_key):
    payload = {"htm": "GET", "htu": INBOX, "iat": IAT, "jti": JTI, "body_sha256": None}
    header = {"alg": "Ed25519", "kid": "test-hk-message-1", "typ": "gba-request+jws"}
    claims_to_be_hong_kong = forge(header, payload, test_key("test-cn-gd-message-1"))
    assert _refused(claims_to_be_hong_kong, trust).code == "signature-invalid"


# --- making proofs ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "method, now",
    [("get", NOW), ("GET", NOW.replace(tzinfo=None))],
    ids=["a lowercase method", "a naive clock"],
)
def test_a_caller_never_signs_a_proof_the_hub_would_refuse(method, now, hk_key):
    with pytest.raises(ValueError):
        make_request_proof(hk_key, method, INBOX, None, now)


def _payload(compact: bytes) -> RequestProof:
    return RequestProof(**json.loads(base64url.decode(compact.split(b".")[1])))


# --- no change survives ---------------------------------------------------------------------

@st.composite
def _byte_edits(draw):
    """One change at any position: a byte replaced by any other byte, a byte inserted, or one deleted."""
    return draw(st.sampled_from(["replace", "insert", "delete"])), draw(st.integers(min_value=0)), draw(st.integers(0, 255))


@pytest.mark.parametrize("kid", ["test-hk-message-1", "test-mo-message-1"])
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(edit=_byte_edits())
def test_any_change_to_any_byte_of_a_proof_is_refused(kid, edit, trust, test_key):
    proof = make_request_proof(test_key(kid), "POST", BASE + "/v1/receipts", BODY, NOW)
    kind, position, value = edit
    position %= len(proof)
    if kind == "replace":
        changed = proof[:position] + bytes([value]) + proof[position + 1:]
    elif kind == "insert":
        changed = proof[:position] + bytes([value]) + proof[position:]
    else:
        changed = proof[:position] + proof[position + 1:]
    if changed == proof:
        return
    with pytest.raises(ProtocolError):
        _check(changed, trust, method="POST", url="/v1/receipts", body=BODY)
