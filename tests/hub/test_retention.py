"""Retention (gateway/hub/retention.py): payloads go when their route's retention ends; the rest stays.

The hub's clock is set three days back, so that a case ended then, on routes that keep
payloads one day, is due for purge by the real clock that `gateway retention run` uses.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import secrets
from datetime import UTC, datetime, timedelta

import asyncpg

from gateway.config import default_config
from gateway.console.persons import _CURSOR_LOCK, forget_purged, index_new_messages
from gateway.hub.retention import purge_due, purge_messages
from gateway.ledger.append import LedgerAppender
from gateway.protocol import base64url
from gateway.protocol.ids import new_uuid7
from gateway.protocol.message import sign_message
from gateway.store.migrate import migrate
from gateway.protocol.timestamps import format_timestamp
from tests.cli_runner import run_cli
from tests.hub.harness import TEST_PAYLOAD_KEYS, Clock, query, running_hub, wait_for_row
from tests.hub.test_delivery_pull import GD, HK, Party

ONE_DAY_ROUTES = tuple(dataclasses.replace(route, retention_days=1) for route in default_config(".").routes)


def _declined_referral(example, test_key, clock) -> tuple[bytes, bytes]:
    submit = dict(example("referral.submit"), id=new_uuid7(), case=new_uuid7(), created=format_timestamp(clock()))
    submit.update({"from": "CN-GD", "to": "HK"})
    decline = dict(example("referral.decline"), id=new_uuid7(), case=submit["case"], reply_to=submit["id"],
                   created=format_timestamp(clock()))
    decline.update({"from": "HK", "to": "CN-GD"})
    return sign_message(submit, test_key(GD)), sign_message(decline, test_key(HK))


def test_after_retention_the_payload_is_gone_the_purge_is_ledgered_and_the_ledger_verifies(database_url, example, test_key):
    three_days_ago = Clock()
    three_days_ago.offset = -timedelta(days=3)
    submit, decline = _declined_referral(example, test_key, three_days_ago)
    with running_hub(database_url, clock=three_days_ago, routes=ONE_DAY_ROUTES) as hub:
        first = hub.post_message(submit)
        assert first.status == 202 and hub.post_message(decline).status == 202, first.body
        Party(hub, test_key(HK), three_days_ago).deliveries()  # HK fetched the referral; CN-GD never fetches the decline

    purged = run_cli("retention", "run", "--database-url", database_url)
    assert purged.status == 0 and "deleted 2 payloads" in purged.stdout, purged.stdout + purged.stderr
    rows = query(database_url, "SELECT compact, payload_key, purged_at, hub_receipt FROM messages")
    assert len(rows) == 2 and all(row["compact"] is None and row["payload_key"] is None and row["purged_at"] for row in rows)
    assert not query(database_url, "SELECT 1 FROM outbox"), "nothing is left to deliver"

    entries = [json.loads(row["entry"]) for row in query(database_url, "SELECT entry FROM ledger_entries ORDER BY idx")]
    purges = [entry for entry in entries if entry["kind"] == "payload-purged"]
    assert len(purges) == 2 and {entry["reason"] for entry in purges} == {"retention"}
    assert {entry["undelivered"] for entry in purges} == {True}, "both deliveries were still unacknowledged"
    verified = run_cli("ledger", "verify", "--database-url", database_url)
    assert verified.status == 0, verified.stdout + verified.stderr

    with running_hub(database_url, routes=ONE_DAY_ROUTES) as hub:
        again = hub.post_message(submit)
        assert again.status == 202 and again.json()["replayed"] is True
        assert again.json()["hub_receipt"] == first.json()["hub_receipt"], "an identical resend after the purge gets its stored receipt"
    assert run_cli("retention", "run", "--database-url", database_url).stdout.startswith("no payload's retention has ended")


def test_a_case_still_open_keeps_its_payloads(database_url, example, test_key):
    three_days_ago = Clock()
    three_days_ago.offset = -timedelta(days=3)
    submit, _ = _declined_referral(example, test_key, three_days_ago)
    with running_hub(database_url, clock=three_days_ago, routes=ONE_DAY_ROUTES) as hub:
        assert hub.post_message(submit).status == 202
    assert run_cli("retention", "run", "--database-url", database_url).status == 0
    (row,) = query(database_url, "SELECT compact IS NOT NULL AS kept FROM messages")
    assert row["kept"], "retention counts from the end of the case"


def _index(database_url: str, key: bytes) -> None:
    """Run the person indexer (gateway/console/persons.py) until it has read every message."""

    async def run() -> None:
        pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
        try:
            while await index_new_messages(pool, key, TEST_PAYLOAD_KEYS):
                pass
        finally:
            await pool.close()

    asyncio.run(run())


def _index_rows(database_url: str, message_id: str) -> int:
    return query(database_url, "SELECT count(*) AS n FROM console_person_index WHERE message_id = $1::uuid", message_id)[0]["n"]


def _id(message: bytes) -> str:
    return json.loads(base64url.decode(message.split(b".")[1]))["id"]


def _ended_case(database_url: str, example, test_key, *, open_case: bool = False, index: bool = True) -> tuple[str, str, str | None]:
    """A referral declined three days ago (its case ended, past the one-day retention), and with `open_case` one whose
    case stays open, accepted and, with `index`, indexed: the ids of the submit, the decline and the open one."""
    three_days_ago = Clock()
    three_days_ago.offset = -timedelta(days=3)
    submit, decline = _declined_referral(example, test_key, three_days_ago)
    kept = _declined_referral(example, test_key, three_days_ago)[0] if open_case else None
    with running_hub(database_url, clock=three_days_ago, routes=ONE_DAY_ROUTES) as hub:
        for message in (submit, decline, kept):
            if message is not None:
                assert hub.post_message(message).status == 202
    if index:
        _index(database_url, secrets.token_bytes(32))
    return _id(submit), _id(decline), _id(kept) if kept is not None else None


async def _purge(connection: asyncpg.Connection, message_id: str) -> None:
    """Purge one message's payload, as retention does, in the caller's transaction."""
    appender = LedgerAppender(connection)
    await appender.reserve()
    await purge_messages(connection, appender, [message_id], "retention", datetime.now(UTC))
    await appender.finish()


def test_retention_forgets_every_person_a_purged_message_named_and_no_one_else(database_url, example, test_key):
    # The person index links an identity number's blind value to a message; once the message's payload is gone, so
    # must the link be, for every person the payload named (docs/data-protection.md, "Retention").
    purged_id, _, kept_id = _ended_case(database_url, example, test_key, open_case=True)
    named = _index_rows(database_url, purged_id)
    assert named >= 2 and _index_rows(database_url, kept_id) >= 2, "the example referral names several persons"

    purged = run_cli("retention", "run", "--database-url", database_url)
    assert purged.status == 0 and "deleted 2 payloads" in purged.stdout, purged.stdout + purged.stderr
    assert _index_rows(database_url, purged_id) == 0, "no one is found through a purged message any more"
    assert _index_rows(database_url, kept_id) >= 2, "the messages still kept are still found"


def test_a_case_keeps_its_index_rows_while_one_of_its_messages_keeps_its_payload(database_url, example, test_key):
    # Routes keep payloads for different times, and a reply names the person without repeating the number: while the
    # case holds one payload, the index must still lead a data subject's request to the case (docs/data-protection.md).
    submit_id, decline_id, _ = _ended_case(database_url, example, test_key)
    named = _index_rows(database_url, submit_id)

    async def purge(message_id: str) -> int:
        connection = await asyncpg.connect(database_url)
        try:
            async with connection.transaction():
                await _purge(connection, message_id)
            return await forget_purged(connection)
        finally:
            await connection.close()

    assert asyncio.run(purge(submit_id)) == 0 and _index_rows(database_url, submit_id) == named, "the decline keeps its payload"
    assert asyncio.run(purge(decline_id)) == named and _index_rows(database_url, submit_id) == 0, "the case's last payload went"
    assert not query(database_url, "SELECT 1 FROM console_person_forget"), "the queue is empty"


def test_a_case_whose_last_payload_a_purge_deletes_while_the_queue_is_emptied_is_forgotten_by_the_next_run(
        database_url, example, test_key):
    # One purge deleted the submit's payload and queued the case. A second purge deletes the decline's, the case's last,
    # and before it commits, the queue is emptied: that run still sees the decline's payload and must keep the rows,
    # and the second purge's own entry, invisible to it, must be left for the next run, which deletes them.
    submit_id, decline_id, _ = _ended_case(database_url, example, test_key)
    named = _index_rows(database_url, submit_id)

    async def race() -> tuple[int, int]:
        purger, forgetter = [await asyncpg.connect(database_url) for _ in range(2)]
        try:
            async with purger.transaction():
                await _purge(purger, submit_id)
            second = purger.transaction()
            await second.start()
            await _purge(purger, decline_id)
            during = await forget_purged(forgetter)
            await second.commit()
            return during, await forget_purged(forgetter)
        finally:
            for connection in (purger, forgetter):
                await connection.close()

    during, after = asyncio.run(race())
    assert during == 0, "the decline's payload was still there for that run"
    assert after == named and _index_rows(database_url, submit_id) == 0, "the next run forgot the case"


def test_rows_an_indexer_wrote_from_a_payload_read_before_its_purge_are_forgotten_too(database_url, example, test_key):
    # The indexer reads payloads and writes their rows in one transaction under its lock. A purge does not wait for it
    # (it holds the ledger's lock); it queues the case. Whoever forgets the queued cases takes the indexer's lock, so it
    # sees the rows of an indexer that read the payload before the purge, once that indexer has committed them.
    submit_id, _, _ = _ended_case(database_url, example, test_key, index=False)

    async def race() -> None:
        indexer, purger, watch = [await asyncpg.connect(database_url) for _ in range(3)]
        try:
            reading = indexer.transaction()
            await reading.start()
            await indexer.execute("SELECT pg_advisory_xact_lock($1)", _CURSOR_LOCK)  # as index_new_messages does
            await indexer.execute("INSERT INTO console_person_index (blind, message_id) VALUES ($1, $2::uuid)",
                                  secrets.token_bytes(32), submit_id)  # what it found in the payload it read
            async with purger.transaction():  # the purge commits while the indexer's transaction is open
                appender = LedgerAppender(purger)
                await appender.reserve()
                assert await purge_due(purger, appender, datetime.now(UTC)) == 2
                await appender.finish()
            forgetting = asyncio.create_task(forget_purged(purger))
            # Polled with a deadline, one query after another, until the forgetting waits on the indexer's lock.
            waiting = "SELECT count(*) FROM pg_locks WHERE pid = $1 AND locktype = 'advisory' AND NOT granted"
            async with asyncio.timeout(30):
                while not await watch.fetchval(waiting, purger.get_server_pid()):
                    pass
            await reading.commit()
            assert await forgetting == 1
        finally:
            for connection in (indexer, purger, watch):
                await connection.close()

    asyncio.run(race())
    assert _index_rows(database_url, submit_id) == 0, "the indexer's late rows are gone with the rest"


def test_migration_0013_deletes_the_index_rows_of_payloads_purged_before_it(database_url, example, test_key):
    # Before 0013 a purge left the person index's rows; a database from then is cleaned when the migration runs.
    purged_id, _, kept_id = _ended_case(database_url, example, test_key, open_case=True)
    # The database as 0012 left it, with the case's payloads purged as retention purged them then.
    query(database_url, "DROP INDEX console_person_index_message")
    query(database_url, "DROP TABLE console_person_forget")
    query(database_url, "DELETE FROM schema_migrations WHERE version = 13")
    query(database_url, "UPDATE messages SET compact = NULL, payload_key = NULL, purged_at = now()"
                        " WHERE case_id = (SELECT case_id FROM messages WHERE id = $1::uuid)", purged_id)
    assert _index_rows(database_url, purged_id) >= 2

    async def upgrade() -> list[str]:
        connection = await asyncpg.connect(database_url)
        try:
            return await migrate(connection)
        finally:
            await connection.close()

    assert asyncio.run(upgrade()) == ["0013_person_index_by_message.sql"]
    assert _index_rows(database_url, purged_id) == 0 and _index_rows(database_url, kept_id) >= 2
    assert query(database_url, "SELECT 1 FROM pg_indexes WHERE indexname = 'console_person_index_message'")


def test_the_gateway_purges_on_its_own_and_forgets_the_cases(database_url, example, test_key):
    # The loop every gateway process runs (`purge_continuously`), not `gateway retention run`: the payloads go, each
    # ledgered, and the index rows of the case with them (forgotten by the loop or by this hub's own person indexer,
    # whichever takes the queue first).
    clock = Clock()
    clock.offset = -timedelta(days=3)
    submit, decline = _declined_referral(example, test_key, clock)
    submit_id = _id(submit)
    with running_hub(database_url, clock=clock, routes=ONE_DAY_ROUTES, purge_interval_seconds=0.5) as hub:
        assert hub.post_message(submit).status == 202 and hub.post_message(decline).status == 202
        _index(database_url, secrets.token_bytes(32))
        assert _index_rows(database_url, submit_id) >= 2
        clock.offset = timedelta(0)  # three days on: the case ended two days past its route's one-day retention
        wait_for_row(database_url, "SELECT 1 FROM messages WHERE id = $1::uuid AND purged_at IS NOT NULL", submit_id)
        wait_for_row(database_url, "SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM console_person_index WHERE message_id = $1::uuid)", submit_id)
    assert not query(database_url, "SELECT 1 FROM console_person_forget")
    kinds = [json.loads(row["entry"])["kind"] for row in query(database_url, "SELECT entry FROM ledger_entries ORDER BY idx")]
    assert kinds.count("payload-purged") == 2
