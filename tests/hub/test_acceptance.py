"""POST /v1/messages over a real socket, on a real PostgreSQL: the pipeline of DESIGN.md in its order."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from gateway.protocol.ids import new_uuid7
from gateway.protocol.jws import digest
from gateway.protocol.message import sign_message
from gateway.protocol.statements import verify_hub_receipt
from gateway.protocol.timestamps import format_timestamp, utc_now
from tests.cli_runner import assert_refused
from tests.hub.harness import TEST_PAYLOAD_KEYS, Clock, query, running_hub
from tests.privacy import leaks_in
from tests.jws_forge import forge, message_header

GD = "test-cn-gd-message-1"
HK = "test-hk-message-1"


def fresh(payload: dict, **changes) -> dict:
    """`payload` with a new id and case, created now (UTC)."""
    return dict(payload, id=new_uuid7(), case=new_uuid7(), created=format_timestamp(utc_now().replace(microsecond=0)), **changes)


def ledger_kinds(database_url: str) -> list[dict]:
    return [json.loads(row["entry"]) for row in query(database_url, "SELECT entry FROM ledger_entries ORDER BY idx")]


@pytest.fixture
def referral(example):
    return fresh(example("referral.submit"))


def test_an_accepted_message_gets_a_verifiable_hub_receipt_and_is_stored(database_url, referral, test_key, trust):
    compact = sign_message(referral, test_key(GD))
    with running_hub(database_url) as hub:
        answer = hub.post_message(compact)
    assert answer.status == 202, answer.body
    receipt = verify_hub_receipt(answer.json()["hub_receipt"].encode(), trust)
    assert receipt.message_id == referral["id"]
    assert receipt.message_digest == digest(compact)
    (row,) = query(database_url, "SELECT compact, payload_key, ledger_index, status FROM messages")
    assert TEST_PAYLOAD_KEYS.open(referral["id"], row["payload_key"], row["compact"]) == compact, "stored sealed, as received"
    assert row["ledger_index"] == receipt.ledger_index
    entry = ledger_kinds(database_url)[receipt.ledger_index]
    assert entry["kind"] == "accepted" and entry["message_id"] == referral["id"]
    (outbox,) = query(database_url, "SELECT receiver FROM outbox")
    assert outbox["receiver"] == "HK"


def test_identical_bytes_get_the_stored_receipt_even_after_the_freshness_window(database_url, referral, test_key):
    compact = sign_message(referral, test_key(GD))
    clock = Clock()
    with running_hub(database_url, clock=clock) as hub:
        first = hub.post_message(compact)
        clock.offset = timedelta(hours=6)
        again = hub.post_message(compact)
    assert first.status == again.status == 202
    assert again.json()["hub_receipt"] == first.json()["hub_receipt"]
    assert again.json()["replayed"] is True
    assert len(query(database_url, "SELECT 1 FROM messages")) == 1
    assert [e["kind"] for e in ledger_kinds(database_url)].count("accepted") == 1


def test_the_same_id_with_other_bytes_is_a_conflict_and_is_ledgered(database_url, referral, test_key):
    with running_hub(database_url) as hub:
        assert hub.post_message(sign_message(referral, test_key(GD))).status == 202
        later = format_timestamp(utc_now().replace(microsecond=0) + timedelta(seconds=1))
        other = dict(referral, created=later)
        answer = hub.post_message(sign_message(other, test_key(GD)))
    assert_refused(answer, "id-conflict")
    refused = [e for e in ledger_kinds(database_url) if e["kind"] == "refused"]
    assert refused and refused[-1]["code"] == "id-conflict" and refused[-1]["from"] == "CN-GD"


def test_a_duplicated_id_member_is_refused_before_any_lookup_by_id(database_url, referral, test_key):
    with running_hub(database_url) as hub:
        hub.post_message(sign_message(referral, test_key(GD)))
        text = json.dumps(referral)
        duplicated = text.replace('"id": ', f'"id": "{new_uuid7()}", "id": ', 1).encode()
        answer = hub.post_message(forge(message_header(test_key(GD)), duplicated, test_key(GD)))
    assert_refused(answer, "json-duplicate-key")


@pytest.mark.parametrize(("shift", "code"), [(-310, "message-stale"), (310, "message-from-future")])
def test_a_message_outside_the_freshness_window_is_refused(database_url, referral, test_key, shift, code):
    created = format_timestamp(utc_now().replace(microsecond=0) + timedelta(seconds=shift))
    with running_hub(database_url) as hub:
        answer = hub.post_message(sign_message(dict(referral, created=created), test_key(GD)))
    assert_refused(answer, code)
    assert answer.json()["where"] == "/created"


def test_a_route_the_policy_does_not_list_is_refused(database_url, referral, test_key):
    with running_hub(database_url, routes=()) as hub:
        answer = hub.post_message(sign_message(referral, test_key(GD)))
    assert_refused(answer, "route-refused")


def test_unauthenticated_garbage_is_refused_and_not_ledgered(database_url, referral, test_key):
    with running_hub(database_url) as hub:
        before = len(ledger_kinds(database_url))
        header, payload, signature = sign_message(referral, test_key(GD)).split(b".")
        answer = hub.post_message(header + b"." + payload + b"." + signature[::-1])
        assert answer.code in ("signature-invalid", "jws-base64url-invalid")
        assert len(ledger_kinds(database_url)) == before


def test_a_body_that_is_not_a_compact_jws_media_type_is_refused(database_url, referral, test_key):
    with running_hub(database_url) as hub:
        answer = hub.post_message(sign_message(referral, test_key(GD)), content_type="application/json")
    assert_refused(answer, "media-type-unsupported")


def test_about_reports_version_and_mode(database_url):
    with running_hub(database_url) as hub:
        about = hub.request("GET", "/v1/about").json()
    assert about["mode"] == "test" and about["protocol"] == 1 and about["version"]


def test_ledger_entries_hold_no_personal_data(database_url, example, test_key):
    with running_hub(database_url) as hub:
        for message_type, kid in (("referral.submit", GD), ("verification.request", GD)):
            payload = fresh(example(message_type), to="HK", **{"from": "CN-GD"})
            if message_type == "verification.request":
                payload["body"]["respond_by"] = format_timestamp(utc_now().replace(microsecond=0) + timedelta(days=7))
            assert hub.post_message(sign_message(payload, test_key(kid))).status == 202
        hub.post_message(sign_message(fresh(example("referral.submit"), to="TW"), test_key(GD)))  # a ledgered refusal
    text = "\n".join(row["entry"].decode() for row in query(database_url, "SELECT entry FROM ledger_entries"))
    assert '"kind":"refused"' in text and '"kind":"accepted"' in text
    assert leaks_in(text) == []
