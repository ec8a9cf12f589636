"""The person indexer (gateway/console/persons.py) against a real database: batch by batch from its cursor, every
identity document of every indexed message once, sealed payloads opened, purged ones passed over."""

from __future__ import annotations

import asyncio
import secrets
from datetime import timedelta

import asyncpg

from gateway.console.persons import blind, blinder, index_new_messages, normalise
from gateway.protocol.message import sign_message
from gateway.protocol.timestamps import format_timestamp, utc_now
from tests.hub.harness import TEST_PAYLOAD_KEYS, query, running_hub
from tests.hub.test_bulk import GD, MO, fresh, post_bulk, results


def _numbers(value) -> list[str]:
    """The identity numbers of a payload's body, found here without the indexer's code."""
    if isinstance(value, list):
        return [number for item in value for number in _numbers(item)]
    if not isinstance(value, dict):
        return []
    found = [document["number"] for document in value.get("identity_documents", [])]
    return found + [number for name, item in value.items() if name != "identity_documents" for number in _numbers(item)]


async def _index_all(database_url: str, key: bytes, batch: int) -> list[int]:
    """Run the indexer until it finds nothing new; what each run looked at."""
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        counts = []
        while count := await index_new_messages(pool, key, TEST_PAYLOAD_KEYS, batch=batch):
            counts.append(count)
        return counts
    finally:
        await pool.close()


def test_the_indexer_reads_in_batches_from_its_cursor_and_indexes_each_document_of_each_message_once(database_url, example, test_key):
    referrals = [fresh(example("referral.submit")) for _ in range(4)]
    request = fresh(example("verification.request"))
    request["body"] = dict(request["body"], respond_by=format_timestamp(utc_now() + timedelta(hours=1)))
    lines = [sign_message(payload, test_key(GD)) for payload in referrals] + [sign_message(request, test_key(MO))]
    with running_hub(database_url) as hub:
        assert [line["status"] for line in results(post_bulk(hub, lines))] == [202] * 5
    # The hub has stopped, and its own indexer with it: start the index again from nothing, under a new key, with one
    # payload purged as retention purges it (gateway/hub/retention.py).
    query(database_url, "DELETE FROM console_person_index")
    query(database_url, "DELETE FROM console_person_cursor")
    purged = referrals[1]["id"]
    query(database_url, "UPDATE messages SET compact = NULL, payload_key = NULL, purged_at = now() WHERE id = $1::uuid", purged)
    assert query(database_url, "SELECT count(*) AS n FROM messages WHERE payload_key IS NOT NULL")[0]["n"] == 4, "stored sealed"
    key = secrets.token_bytes(32)

    assert asyncio.run(_index_all(database_url, key, batch=2)) == [2, 2, 1], "five messages, two at a time, none twice"

    indexed = {(bytes(row["blind"]), str(row["message_id"])) for row in query(database_url, "SELECT blind, message_id FROM console_person_index")}
    expected = {(blind(key, normalise(number)), payload["id"])
                for payload in [*referrals, request] if payload["id"] != purged for number in _numbers(payload["body"])}
    assert len({message_id for _, message_id in expected}) == 4 and len(expected) > 4, "several documents in each message"
    assert indexed == expected, "every document of every message with a payload, and nothing of the purged one"
    orphans = query(database_url, "SELECT count(*) AS n FROM console_person_index i"
                                  " WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.id = i.message_id)")[0]["n"]
    assert orphans == 0, "every row names a stored message (no foreign key says so since migration 0011)"
    last = query(database_url, "SELECT max(ledger_index) AS i FROM messages")[0]["i"]
    assert query(database_url, "SELECT ledger_index FROM console_person_cursor")[0]["ledger_index"] == last
    assert asyncio.run(_index_all(database_url, key, batch=2)) == [], "nothing new: the cursor holds"


def test_the_blind_index_is_hmac_sha256_of_the_normalised_number():
    """Indexes written before stay valid: the value is exactly HMAC-SHA256(key, number), however it is computed."""
    import hashlib
    import hmac

    key = secrets.token_bytes(32)
    assert blind(key, "A1234567") == hmac.new(key, b"A1234567", hashlib.sha256).digest()
    blinded = blinder(key)  # the indexer's: one keyed state, copied for each number
    for number in ("A1234567", "A1234567", "440102199001011234", "1234567(8)"):
        assert blinded(number) == hmac.new(key, number.encode(), hashlib.sha256).digest()


def test_identity_numbers_are_found_at_any_depth_and_odd_shapes_are_passed_over():
    from gateway.console.persons import identity_numbers

    body = {
        "identity_documents": [{"number": "a123456(7)"}, "not a document", {"type": "none"}, {"number": 44010219900101}],
        "household": {"members": [{"person": {"identity_documents": [{"number": "M/123456/7"}]}}, [[{"identity_documents": [
            {"number": "440102199001011234"}]}]]]},
        "note": "identity_documents", "identity_documents_extra": [{"number": "X9999999"}],
        "nested": {"identity_documents": {"number": "not in a list"}},
    }
    assert sorted(identity_numbers(body)) == sorted(["A1234567", "44010219900101", "M1234567", "440102199001011234"])
    assert identity_numbers(None) == [] and identity_numbers("text") == []
