"""GET /v1/messages/{id} with signed request proofs (docs/protocol.md §9.5, §12)."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import asyncpg

import pytest

from gateway.hub import store
from gateway.protocol.ids import new_uuid7
from gateway.protocol.jws import digest, sign_compact
from gateway.protocol.message import sign_message
from gateway.protocol.request_proof import make_request_proof
from gateway.protocol.timestamps import format_timestamp, utc_now
from gateway.store.migrate import migrate
from tests.cli_runner import assert_refused
from tests.hub.harness import running_hub

GD, HK = "test-cn-gd-message-1", "test-hk-message-1"


@pytest.fixture
def accepted(database_url, example, test_key):
    """A hub with one accepted referral from CN-GD; yields (hub, message id, compact)."""
    payload = dict(example("referral.submit"), id=new_uuid7(), case=new_uuid7(), created=format_timestamp(utc_now().replace(microsecond=0)))
    compact = sign_message(payload, test_key(GD))
    with running_hub(database_url) as hub:
        assert hub.post_message(compact).status == 202
        yield hub, payload["id"], compact


def get(hub, path: str, proof: bytes | None):
    headers = {"GBA-Request-Proof": proof.decode()} if proof is not None else {}
    return hub.request("GET", path, headers=headers)


def proof_for(hub, key, path: str, method: str = "GET", now=None, body: bytes | None = None) -> bytes:
    return make_request_proof(key, method, hub.settings.public_base_url + path, body, now or utc_now())


def test_the_sender_sees_its_message_with_the_stored_hub_receipt(accepted, test_key):
    hub, message_id, compact = accepted
    path = f"/v1/messages/{message_id}"
    answer = get(hub, path, proof_for(hub, test_key(GD), path))
    assert answer.status == 200, answer.body
    view = answer.json()
    assert view["message_id"] == message_id and view["status"] == "accepted" and view["message_digest"] == digest(compact)
    assert view["to"] == "HK" and view["receiver_receipt"] is None


def test_another_jurisdiction_gets_not_found(accepted, test_key):
    hub, message_id, _ = accepted
    path = f"/v1/messages/{message_id}"
    assert_refused(get(hub, path, proof_for(hub, test_key(HK), path)), "not-found")


def test_an_unknown_id_is_not_found(accepted, test_key):
    hub, _, _ = accepted
    path = f"/v1/messages/{new_uuid7()}"
    assert_refused(get(hub, path, proof_for(hub, test_key(GD), path)), "not-found")


def test_a_request_without_a_proof_is_refused(accepted):
    hub, message_id, _ = accepted
    assert_refused(get(hub, f"/v1/messages/{message_id}", None), "request-proof-missing")


def test_a_replayed_proof_is_refused(accepted, test_key):
    hub, message_id, _ = accepted
    path = f"/v1/messages/{message_id}"
    proof = proof_for(hub, test_key(GD), path)
    assert get(hub, path, proof).status == 200
    assert_refused(get(hub, path, proof), "request-proof-replayed")


def test_a_proof_for_another_url_is_refused(accepted, test_key):
    hub, message_id, _ = accepted
    other = f"/v1/messages/{new_uuid7()}"
    assert_refused(get(hub, f"/v1/messages/{message_id}", proof_for(hub, test_key(GD), other)), "request-proof-mismatch")


def test_a_proof_for_another_method_is_refused(accepted, test_key):
    hub, message_id, _ = accepted
    path = f"/v1/messages/{message_id}"
    assert_refused(get(hub, path, proof_for(hub, test_key(GD), path, method="POST")), "request-proof-mismatch")


def test_an_old_proof_is_refused(accepted, test_key):
    hub, message_id, _ = accepted
    path = f"/v1/messages/{message_id}"
    assert_refused(get(hub, path, proof_for(hub, test_key(GD), path, now=utc_now() - timedelta(seconds=400))), "request-proof-stale")


def test_a_proof_whose_payload_is_not_a_proof_is_refused(accepted, test_key):
    hub, message_id, _ = accepted
    forged = sign_compact(json.dumps({"htm": "GET"}).encode(), test_key(GD), "gba-request+jws")
    assert_refused(get(hub, f"/v1/messages/{message_id}", forged), "request-proof-invalid")


def test_a_method_the_resource_does_not_have_is_refused(accepted):
    hub, message_id, _ = accepted
    assert_refused(hub.request("DELETE", f"/v1/messages/{message_id}"), "method-not-allowed")


def test_an_unknown_path_is_a_not_found_problem(accepted):
    hub, _, _ = accepted
    assert_refused(hub.request("GET", "/v1/nothing-here"), "not-found")


def test_used_request_proof_ids_are_forgotten_after_their_window(database_url):
    async def scenario():
        connection = await asyncpg.connect(database_url)
        try:
            await migrate(connection)
            now = utc_now()
            assert await store.remember_request_proof(connection, new_uuid7(), "k", now - timedelta(seconds=1))
            assert await store.remember_request_proof(connection, new_uuid7(), "k", now + timedelta(seconds=600))
            removed = await store.forget_expired_request_proofs(connection, now)
            return removed, await connection.fetchval("SELECT count(*) FROM request_proof_ids")
        finally:
            await connection.close()

    assert asyncio.run(scenario()) == (1, 1)
