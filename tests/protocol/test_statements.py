"""Hub receipts, attestations and deliveries (docs/protocol.md §9.1-§9.3)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from gateway.protocol import base64url, strict_json
from gateway.protocol.errors import ProtocolError
from gateway.protocol.jws import digest
from gateway.protocol.keys import generate
from gateway.protocol.message import sign_message
from gateway.protocol.statements import (
    Attestation,
    ConvertedText,
    Delivery,
    HubReceipt,
    LocalView,
    delivery_from_document,
    parse_delivery,
    sign_attestation,
    sign_hub_receipt,
    verify_attestation,
    verify_delivery,
    verify_hub_receipt,
)
from gateway.protocol.trust import KeyRecord, TrustList
from tests.jws_forge import forge

ACCEPTED_AT = datetime(2026, 11, 28, 9, 30, 0, 412_000, tzinfo=timezone.utc)
DIGEST = "fbf1a474feffda38de3544ba5b3a14adb51d9a896dcdd402702b08d093788517"
RECEIPT = HubReceipt(
    message_id="01a2217d-75c0-7754-90bd-7b93e6fa7d18",
    message_digest=DIGEST,
    ledger_index=4711,
    accepted_at=ACCEPTED_AT,
)
ATTESTATION = Attestation(
    message_id="01a2217d-75c0-7754-90bd-7b93e6fa7d18",
    message_digest=DIGEST,
    ledger_index=4711,
    accepted_at=ACCEPTED_AT,
    type="referral.submit",
    sender="CN-GD",
    receiver="HK",
    case="01a2217d-2c82-7178-b13e-df91be156a03",
    local_view_digest="9444e807d775210fce0a3762dc2ec5c1af41fbcbe4056e36f17bbcebeb26d7de",
)
LOCAL_VIEW = LocalView((ConvertedText("/body/circumstances", "申請人為香港永久性居民。", "zh-Hant"),))

STATEMENTS = [
    pytest.param(RECEIPT, sign_hub_receipt, verify_hub_receipt, "gba-receipt+jws", id="hub receipt"),
    pytest.param(ATTESTATION, sign_attestation, verify_attestation, "gba-attestation+jws", id="attestation"),
]


@pytest.fixture(scope="module")
def hub_key(test_key):
    return test_key("test-hub-receipt-1")


def _refused(call, *arguments):
    with pytest.raises(ProtocolError) as refused:
        call(*arguments)
    return refused.value


_ABSENT = object()


def _forged(payload_changes: dict, statement=RECEIPT, typ="gba-receipt+jws", *, key) -> bytes:
    payload = statement.to_payload() | payload_changes
    payload = {name: value for name, value in payload.items() if value is not _ABSENT}
    return forge({"alg": key.alg, "kid": key.kid, "typ": typ}, payload, key)


# --- signing and verifying -------------------------------------------------------------


@pytest.mark.parametrize("statement, sign, verify, typ", STATEMENTS)
def test_a_signed_statement_verifies_to_the_same_statement(statement, sign, verify, typ, trust, hub_key):
    assert verify(sign(statement, hub_key), trust) == statement


def test_the_hub_receipt_payload_has_exactly_the_members_of_9_1(hub_key):
    compact = sign_hub_receipt(RECEIPT, hub_key)
    payload = base64url.decode(compact.split(b".")[1])
    assert payload == (
        b'{"v":1,"message_id":"01a2217d-75c0-7754-90bd-7b93e6fa7d18",'
        b'"message_digest":"fbf1a474feffda38de3544ba5b3a14adb51d9a896dcdd402702b08d093788517",'
        b'"ledger_index":4711,"accepted_at":"2026-11-28T09:30:00.412Z"}'
    )


def test_the_attestation_writes_sender_and_receiver_as_from_and_to():
    payload = ATTESTATION.to_payload()
    assert (payload["from"], payload["to"]) == ("CN-GD", "HK")
    assert sorted(payload) == sorted(
        ["v", "message_id", "message_digest", "ledger_index", "accepted_at", "type", "from", "to", "case", "local_view_digest"]
    )


@pytest.mark.parametrize("statement, sign, verify, typ", STATEMENTS)
@pytest.mark.parametrize("kid", ["test-hk-message-1", "test-mo-message-1"])
def test_a_statement_signed_by_a_jurisdiction_key_is_a_key_use_mismatch(statement, sign, verify, typ, kid, trust, test_key):
    refusal = _refused(verify, sign(statement, test_key(kid)), trust)
    assert (refusal.code, refusal.where) == ("key-use-mismatch", "kid")


@pytest.mark.parametrize("statement, sign, verify, typ", STATEMENTS)
def test_a_statement_signed_by_the_hubs_checkpoint_key_is_a_key_use_mismatch(statement, sign, verify, typ, trust, test_key):
    assert _refused(verify, sign(statement, test_key("test-hub-checkpoint-1")), trust).code == "key-use-mismatch"


@pytest.mark.parametrize("statement, sign, verify, typ", STATEMENTS)
def test_a_statement_signed_by_an_unregistered_key_is_a_key_unknown(statement, sign, verify, typ, trust):
    assert _refused(verify, sign(statement, generate("Ed25519", "test-hub-receipt-9")), trust).code == "key-unknown"


@pytest.mark.parametrize("statement, sign, verify, typ", STATEMENTS)
def test_a_tampered_statement_does_not_verify(statement, sign, verify, typ, trust, hub_key):
    header, _, signature = sign(statement, hub_key).split(b".")
    other = sign(replace(statement, ledger_index=4712), hub_key).split(b".")[1]
    assert _refused(verify, b".".join([header, other, signature]), trust).code == "signature-invalid"


def test_a_hub_receipt_is_not_an_attestation_nor_the_other_way_round(trust, hub_key):
    assert _refused(verify_attestation, sign_hub_receipt(RECEIPT, hub_key), trust).code == "typ-unexpected"
    assert _refused(verify_hub_receipt, sign_attestation(ATTESTATION, hub_key), trust).code == "typ-unexpected"


# --- the reference time is accepted_at (§10.4) ------------------------------------------

HUB_KEY = generate("ES256", "hub-receipt-2")
NOT_BEFORE = datetime(2026, 1, 1, tzinfo=timezone.utc)
NOT_AFTER = datetime(2027, 1, 1, tzinfo=timezone.utc)
REVOKED_AT = datetime(2026, 6, 1, tzinfo=timezone.utc)


def _trust_with_hub_key(revoked_at: datetime | None) -> TrustList:
    record = KeyRecord(HUB_KEY.kid, "hub", "receipt", HUB_KEY.public(), NOT_BEFORE, NOT_AFTER, revoked_at, False)
    return TrustList.from_document({
        "v": 1, "issued": "2026-01-01T00:00:00Z", "sequence": 1, "mode": "production",
        "jurisdictions": {"HK": {"name": {"en": "HK"}}, "MO": {"name": {"en": "MO"}}},
        "keys": [record.to_document()],
    })


@pytest.mark.parametrize("statement, sign, verify, typ", STATEMENTS)
@pytest.mark.parametrize(
    "accepted_at, revoked_at, code",
    [
        (REVOKED_AT - timedelta(microseconds=1), REVOKED_AT, None),
        (REVOKED_AT, REVOKED_AT, "key-revoked"),
        (NOT_BEFORE, None, None),
        (NOT_BEFORE - timedelta(seconds=1), None, "key-not-yet-valid"),
        (NOT_AFTER - timedelta(microseconds=1), None, None),
        (NOT_AFTER, None, "key-expired"),
    ],
)
def test_the_hub_key_is_judged_at_the_statements_accepted_at(statement, sign, verify, typ, accepted_at, revoked_at, code):
    compact = sign(replace(statement, accepted_at=accepted_at), HUB_KEY)
    trust = _trust_with_hub_key(revoked_at)
    if code is None:
        assert verify(compact, trust).accepted_at == accepted_at
    else:
        assert _refused(verify, compact, trust).code == code


# --- the payload (PROTO-9.1-3) ----------------------------------------------------------

RECEIPT_PAYLOAD_FAULTS = [
    pytest.param({"kid": "test-hub-receipt-1"}, "schema-violation", "", id="an extra member"),
    pytest.param({"ledger_index": _ABSENT}, "schema-violation", "", id="a missing member"),
    pytest.param({"v": _ABSENT}, "schema-violation", "", id="no v"),
    pytest.param({"v": 2}, "version-unsupported", "/v", id="v 2"),
    pytest.param({"v": "1"}, "version-unsupported", "/v", id="v a string"),
    pytest.param({"v": True}, "version-unsupported", "/v", id="v true"),
    pytest.param({"message_id": "01A2217D-75C0-7754-90BD-7B93E6FA7D18"}, "schema-violation", "/message_id", id="an uppercase id"),
    pytest.param({"message_id": "3f1c0d9e-2b4a-4c6e-9d8f-0a1b2c3d4e5f"}, "schema-violation", "/message_id", id="a UUIDv4"),
    pytest.param({"message_digest": DIGEST.upper()}, "schema-violation", "/message_digest", id="an uppercase digest"),
    pytest.param({"message_digest": DIGEST[:-1]}, "schema-violation", "/message_digest", id="a short digest"),
    pytest.param({"ledger_index": -1}, "schema-violation", "/ledger_index", id="a negative index"),
    pytest.param({"ledger_index": 1.5}, "schema-violation", "/ledger_index", id="a fractional index"),
    pytest.param({"ledger_index": "4711"}, "schema-violation", "/ledger_index", id="an index as a string"),
    pytest.param({"ledger_index": True}, "schema-violation", "/ledger_index", id="an index true"),
    pytest.param({"accepted_at": "2026-11-28T17:30:00+08:00"}, "schema-violation", "/accepted_at", id="an offset"),
    pytest.param({"accepted_at": "2026-02-30T00:00:00Z"}, "schema-violation", "/accepted_at", id="no such day"),
    pytest.param({"accepted_at": "1899-12-31T23:59:59Z"}, "schema-violation", "/accepted_at", id="a year before 1900"),
    pytest.param({"accepted_at": 1795858205}, "schema-violation", "/accepted_at", id="seconds, not a timestamp"),
]


@pytest.mark.parametrize("changes, code, where", RECEIPT_PAYLOAD_FAULTS)
def test_a_hub_receipt_payload_not_as_9_1_defines_is_refused(changes, code, where, trust, hub_key):
    refusal = _refused(verify_hub_receipt, _forged(changes, key=hub_key), trust)
    assert (refusal.code, refusal.where) == (code, where)


@pytest.mark.parametrize(
    "changes, where",
    [
        pytest.param({"type": "referral.reopen"}, "/type", id="an unregistered type"),
        pytest.param({"from": "hk"}, "/from", id="a lowercase jurisdiction"),
        pytest.param({"to": None}, "/to", id="no receiver"),
        pytest.param({"case": "not-a-uuid"}, "/case", id="a case that is no UUIDv7"),
        pytest.param({"local_view_digest": DIGEST.upper()}, "/local_view_digest", id="an uppercase view digest"),
        pytest.param({"sender": "CN-GD"}, "", id="the Python name of from"),
    ],
)
def test_an_attestation_payload_not_as_9_2_defines_is_a_schema_violation(changes, where, trust, hub_key):
    forged = _forged(changes, ATTESTATION, "gba-attestation+jws", key=hub_key)
    refusal = _refused(verify_attestation, forged, trust)
    assert (refusal.code, refusal.where) == ("schema-violation", where)


def test_a_payload_that_is_not_an_object_is_a_schema_violation(trust, hub_key):
    forged = forge({"alg": "Ed25519", "kid": hub_key.kid, "typ": "gba-receipt+jws"}, b"[1]", hub_key)
    refusal = _refused(verify_hub_receipt, forged, trust)
    assert (refusal.code, refusal.where) == ("schema-violation", "")


def test_a_payload_is_read_as_strict_json(trust, hub_key):
    payload = b'{"v":1,"v":1,"message_id":"01a2217d-75c0-7754-90bd-7b93e6fa7d18"}'
    forged = forge({"alg": "Ed25519", "kid": hub_key.kid, "typ": "gba-receipt+jws"}, payload, hub_key)
    refusal = _refused(verify_hub_receipt, forged, trust)
    assert (refusal.code, refusal.where) == ("json-duplicate-key", "payload")


def test_numbers_compare_by_value_so_v_1_0_is_version_1(trust, hub_key):
    receipt = verify_hub_receipt(_forged({"v": 1.0, "ledger_index": 4711.0}, key=hub_key), trust)
    assert receipt == RECEIPT and type(receipt.ledger_index) is int


@pytest.mark.parametrize(
    "statement, sign",
    [
        (replace(RECEIPT, ledger_index=-1), sign_hub_receipt),
        (replace(RECEIPT, accepted_at=ACCEPTED_AT.replace(tzinfo=None)), sign_hub_receipt),
        (replace(ATTESTATION, type="referral.reopen"), sign_attestation),
        (replace(ATTESTATION, local_view_digest="00"), sign_attestation),
    ],
)
def test_the_hub_never_signs_a_statement_a_verifier_would_refuse(statement, sign, hub_key):
    with pytest.raises(ValueError):
        sign(statement, hub_key)


# --- deliveries (§9.3) ------------------------------------------------------------------


def test_a_delivery_reads_back_from_its_json():
    delivery = Delivery(b"aaa.bbb.ccc", b"ddd.eee.fff", LOCAL_VIEW)
    assert parse_delivery(delivery.to_json()) == delivery


def test_the_local_view_digest_is_the_sha256_of_its_rfc_8785_form():
    canonical = (
        '{"schemes":[],"texts":[{"at":"/body/circumstances","lang":"zh-Hant","machine_converted":true,'
        '"text":"申請人為香港永久性居民。"}],"times":[]}'
    ).encode()
    assert LOCAL_VIEW.digest == hashlib.sha256(canonical).hexdigest()
    assert LocalView().digest == hashlib.sha256(b'{"schemes":[],"texts":[],"times":[]}').hexdigest()


def _delivery_document(**changes) -> dict:
    text = {"at": "/body/circumstances", "text": "文字", "lang": "zh-Hant", "machine_converted": True}
    text.update(changes.pop("text", {}))
    document = {"message": "a.b.c", "attestation": "d.e.f", "local_view": {"texts": [text], "schemes": [], "times": []}}
    document.update(changes)
    return document


@pytest.mark.parametrize(
    "document, where",
    [
        pytest.param([], "", id="not an object"),
        pytest.param(_delivery_document(receipt="x"), "", id="an extra member"),
        pytest.param({"message": "a.b.c", "attestation": "d.e.f"}, "", id="no local view"),
        pytest.param(_delivery_document(message=None), "/message", id="a message that is not a string"),
        pytest.param(_delivery_document(attestation={"jws": "d.e.f"}), "/attestation", id="an attestation that is not a string"),
        pytest.param(_delivery_document(local_view={"texts": [], "schemes": [], "times": [], "names": []}), "/local_view", id="an extra local view member"),
        pytest.param(_delivery_document(local_view={"texts": {}, "schemes": [], "times": []}), "/local_view/texts", id="texts not an array"),
        pytest.param(_delivery_document(local_view={"texts": ["文字"], "schemes": [], "times": []}), "/local_view/texts/0", id="a text that is not an object"),
        pytest.param(_delivery_document(local_view={"texts": [], "schemes": [{"at": "/body/needs/0", "code": "hk cssa", "name": "x", "lang": "en"}], "times": []}),
                     "/local_view/schemes/0/code", id="a scheme code not of the code form"),
        pytest.param(_delivery_document(text={"script": "Hant"}), "/local_view/texts/0", id="an extra text member"),
        pytest.param(_delivery_document(text={"machine_converted": False}), "/local_view/texts/0/machine_converted", id="not machine-converted"),
        pytest.param(_delivery_document(text={"lang": "zh_Hant"}), "/local_view/texts/0/lang", id="not a language tag"),
        pytest.param(_delivery_document(text={"at": "body/circumstances"}), "/local_view/texts/0/at", id="not a JSON Pointer"),
        pytest.param(_delivery_document(text={"text": ""}), "/local_view/texts/0/text", id="an empty text"),
    ],
)
def test_a_delivery_without_exactly_the_members_of_9_3_is_a_schema_violation(document, where):
    refusal = _refused(parse_delivery, json.dumps(document, ensure_ascii=False).encode())
    assert (refusal.code, refusal.where) == ("schema-violation", where)
    refusal = _refused(delivery_from_document, document)
    assert (refusal.code, refusal.where) == ("schema-violation", where), "an inbox answer's item is refused alike"


def test_a_delivery_taken_from_a_document_read_whole_is_the_delivery_of_its_text():
    delivery = Delivery(b"aaa.bbb.ccc", b"ddd.eee.fff", LOCAL_VIEW)
    answer = strict_json.loads(strict_json.dumps({"deliveries": [delivery.to_document()], "cursor": 7}), part="inbox answer")
    assert delivery_from_document(answer["deliveries"][0]) == delivery == parse_delivery(delivery.to_json())


def test_a_delivery_is_read_as_strict_json():
    refusal = _refused(parse_delivery, b'{"message":"a.b.c","message":"a.b.c","attestation":"d.e.f","local_view":{"texts":[],"schemes":[],"times":[]}}')
    assert (refusal.code, refusal.where) == ("json-duplicate-key", "delivery")


# --- a receiver's check of a delivery (PROTO-9.2-2) -------------------------------------


@pytest.fixture(scope="module")
def submitted(example, test_key) -> bytes:
    return sign_message(example("referral.submit"), test_key("test-cn-gd-message-1"))


def _deliver(message: bytes, hub_key, local_view: LocalView = LOCAL_VIEW, **attested) -> Delivery:
    attestation = replace(
        ATTESTATION, message_digest=digest(message), local_view_digest=local_view.digest, **attested
    )
    return Delivery(message, sign_attestation(attestation, hub_key), local_view)


def test_a_delivery_whose_attestation_names_its_message_and_view_verifies(submitted, trust, schemas, hub_key):
    verified = verify_delivery(parse_delivery(_deliver(submitted, hub_key).to_json()), trust, schemas)
    assert verified.message.compact == submitted
    assert verified.attestation.ledger_index == 4711 and verified.local_view == LOCAL_VIEW


@pytest.mark.parametrize(
    "attested, where",
    [
        ({"message_id": "01a2217d-75c0-7754-90bd-7b93e6fa7d19"}, "/message_id"),
        ({"type": "referral.update"}, "/type"),
        ({"sender": "MO"}, "/from"),
        ({"receiver": "MO"}, "/to"),
        ({"case": "01a2217d-2c82-7178-b13e-df91be156a04"}, "/case"),
    ],
)
def test_an_attestation_that_names_another_envelope_is_a_mismatch(attested, where, submitted, trust, schemas, hub_key):
    refusal = _refused(verify_delivery, _deliver(submitted, hub_key, **attested), trust, schemas)
    assert (refusal.code, refusal.where) == ("attestation-mismatch", where)


def test_an_attestation_of_other_message_bytes_is_a_mismatch(submitted, example, trust, schemas, hub_key, test_key):
    other = sign_message(example("referral.submit") | {"created": "2026-11-28T09:31:00Z"}, test_key("test-cn-gd-message-1"))
    delivery = replace(_deliver(submitted, hub_key), message=other)
    refusal = _refused(verify_delivery, delivery, trust, schemas)
    assert (refusal.code, refusal.where) == ("attestation-mismatch", "/message_digest")


def test_an_attestation_of_another_local_view_is_a_mismatch(submitted, trust, schemas, hub_key):
    delivery = replace(_deliver(submitted, hub_key), local_view=LocalView())
    refusal = _refused(verify_delivery, delivery, trust, schemas)
    assert (refusal.code, refusal.where) == ("attestation-mismatch", "/local_view_digest")


def test_the_delivered_message_is_verified_end_to_end(example, trust, schemas, hub_key, test_key):
    signed_by_another_jurisdiction = sign_message(example("referral.submit"), test_key("test-hk-message-1"))
    refusal = _refused(verify_delivery, _deliver(signed_by_another_jurisdiction, hub_key), trust, schemas)
    assert refusal.code == "sender-mismatch"


@pytest.mark.parametrize("accepted_at, code", [(datetime(2025, 12, 1, tzinfo=timezone.utc), None), (datetime(2026, 1, 1, tzinfo=timezone.utc), "key-revoked")])
def test_a_message_is_judged_at_its_acceptance_so_a_later_revocation_does_not_undo_it(
    accepted_at, code, example, trust, schemas, hub_key, test_key
):
    # test-hk-message-revoked was revoked at 2026-01-01T00:00:00Z.
    accepted = sign_message(example("referral.accept"), test_key("test-hk-message-revoked"))
    delivery = _deliver(
        accepted, hub_key, accepted_at=accepted_at, type="referral.accept", sender="HK", receiver="CN-GD",
        message_id=example("referral.accept")["id"], case=example("referral.accept")["case"],
    )
    if code is None:
        assert verify_delivery(delivery, trust, schemas).message.sender == "HK"
    else:
        assert _refused(verify_delivery, delivery, trust, schemas).code == code
