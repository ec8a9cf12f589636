"""Retention: the one owner of deleting payloads when their route's retention ends (docs/data-protection.md).

A message's payload (its sealed compact JWS) is deleted `retention_days` after its case
ended (the route's setting at acceptance; rows from before it was recorded get
DEFAULT_RETENTION_DAYS). What stays for good:
the id, the digest, the hub receipt and the receiver's receipt, so that an identical
resend still gets its stored receipt (§8.2) and the ledger still verifies — its entries
hold no personal data and are never touched. Each purge is one ledger entry,
`payload-purged`, in the transaction that deletes the payload. A delivery still queued
or dead-lettered when its retention ends is dropped with it and the entry says
`undelivered: true`: the law that ends the retention does not make an exception for a
receiver that never fetched its mail, and the sender sees the purge in the ledger.

The gateway runs `purge_due` every `interval_seconds`; `gateway retention run` runs it
once by hand. Several processes may run it at once (rows are taken SKIP LOCKED).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import datetime

import asyncpg
import structlog

from gateway.console.persons import forget_purged
from gateway.hub.committer import GroupCommitter
from gateway.ledger.append import LedgerAppender
from gateway.ledger.entries import LedgerEntry
from gateway.protocol.cases import TERMINAL_STATES
from gateway.protocol.timestamps import format_timestamp

DEFAULT_RETENTION_DAYS = 2555
"""Seven years: the route default (gateway/config.py), for rows accepted before routes' retention was recorded."""
_ENDED = sorted({state for states in TERMINAL_STATES.values() for state in states})
_BATCH = 500
FIRST_RUN_SECONDS = 300.0

_log = structlog.get_logger(__name__)


def purged_entry(message_id: str, digest: str, reason: str, undelivered: bool, at: datetime) -> LedgerEntry:
    """The ledger's record of a payload deleted for `reason` (`retention` or `subject-request`)."""
    fields = {"message_id": message_id, "message_digest": digest, "reason": reason, "undelivered": undelivered}
    return LedgerEntry("payload-purged", format_timestamp(at), fields)


async def purge_due(connection: asyncpg.Connection, appender: LedgerAppender, now: datetime, limit: int = _BATCH) -> int:
    """Delete up to `limit` payloads whose retention ended by `now`, each with its `payload-purged` entry; how many.

    Runs inside the caller's transaction, with `appender` reserved in it.
    """
    due = await connection.fetch(
        "SELECT m.id FROM messages m JOIN cases c ON c.id = m.case_id"
        " WHERE m.compact IS NOT NULL AND c.state = ANY($2::text[])"
        " AND c.updated_at + make_interval(days => coalesce(m.retention_days, $3)) <= $1"
        " ORDER BY m.ledger_index LIMIT $4 FOR UPDATE OF m SKIP LOCKED",
        now, _ENDED, DEFAULT_RETENTION_DAYS, limit,
    )
    return await purge_messages(connection, appender, [str(row["id"]) for row in due], "retention", now)


async def purge_messages(
    connection: asyncpg.Connection, appender: LedgerAppender, message_ids: list[str], reason: str, now: datetime
) -> int:
    """Delete the payloads of `message_ids` (those not yet purged) for `reason`, dropping what is still queued for
    delivery, each with its `payload-purged` entry, and queue their cases for the person index to forget
    (`gateway.console.persons.forget_purged`); how many. Inside the caller's transaction, `appender` reserved."""
    rows = await connection.fetch(
        "WITH chosen AS (SELECT id FROM messages WHERE id = ANY($1::uuid[]) AND compact IS NOT NULL FOR UPDATE),"
        " dropped AS (DELETE FROM outbox o USING chosen WHERE o.message_id = chosen.id RETURNING o.message_id)"
        " UPDATE messages m SET compact = NULL, payload_key = NULL, purged_at = $2 FROM chosen WHERE m.id = chosen.id"
        " RETURNING m.id, m.digest, m.ledger_index, m.case_id, EXISTS (SELECT 1 FROM dropped WHERE dropped.message_id = m.id) AS undelivered",
        [uuid.UUID(message_id) for message_id in message_ids], now,
    )
    for row in sorted(rows, key=lambda row: row["ledger_index"]):
        await appender.add(purged_entry(str(row["id"]), row["digest"].hex(), reason, row["undelivered"], now))
    if rows:
        await connection.execute(
            "INSERT INTO console_person_forget (case_id) SELECT DISTINCT unnest($1::uuid[])",
            [row["case_id"] for row in rows],
        )
    return len(rows)


async def purge_all_due(committer: GroupCommitter, clock: Callable[[], datetime], pool: asyncpg.Pool) -> int:
    """Run `purge_due` in batches until nothing more is due, then let the person index forget the cases; how many
    payloads were deleted."""
    total = 0
    while True:
        purged = await committer.run(lambda connection, appender: purge_due(connection, appender, clock()))
        total += purged
        if purged < _BATCH:
            break
    async with pool.acquire() as connection:
        await forget_purged(connection)  # also what an earlier run queued and could not forget (one small statement)
    return total


async def purge_continuously(committer: GroupCommitter, pool: asyncpg.Pool, clock: Callable[[], datetime], interval_seconds: float) -> None:
    """Purge what is due every `interval_seconds` for the life of the gateway; the first run after
    FIRST_RUN_SECONDS at most, so that a gateway restarted often still purges."""
    await asyncio.sleep(min(interval_seconds, FIRST_RUN_SECONDS))  # a period, not synchronisation
    while True:
        try:
            purged = await purge_all_due(committer, clock, pool)
            if purged:
                _log.info("payloads_purged", count=purged, reason="retention")
        except Exception as error:  # noqa: BLE001 - the next period tries again
            _log.warning("retention_purge_failed", error=type(error).__name__)
        await asyncio.sleep(interval_seconds)  # a period, not synchronisation
