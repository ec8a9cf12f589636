"""Data-subject requests over the person blind index (docs/data-protection.md, "Data-subject requests").

A lawful access request gets everything the hub holds about a person: every case in
which a message named one of the person's identity numbers (through the keyed blind
index of gateway/console/persons.py), and every message of those cases — its metadata
and, unless purged, its payload. A lawful erasure request purges those payloads (with
gateway/hub/retention.py, reason `subject-request`) and the person's index rows. Both
are ledgered: the export as `subject-exported` (counts and the digest of the stated
request reference, never the number), each purge as `payload-purged`. Ids, digests,
receipts and the ledger stay, so the ledger still verifies and resends still get their
receipts. The number itself is never stored, logged or ledgered.

The index is brought up to date first (`index_new_messages`), so a message accepted a
moment ago is not missed.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from gateway.console import persons
from gateway.console.payloads import read_payload
from gateway.hub.retention import purge_messages
from gateway.ledger.append import LedgerAppender
from gateway.ledger.entries import LedgerEntry
from gateway.protocol.timestamps import format_timestamp

EXPORT_FORMAT = "gba-subject-export/v1"


class SubjectRequestError(ValueError):
    """The request cannot be carried out as asked (no valid number, no index key, no reason)."""


@dataclass(frozen=True)
class Found:
    """What the hub holds about one person: the cases and, in ledger order, all their messages' ids."""

    cases: tuple[str, ...]
    message_ids: tuple[str, ...]


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _check_reason(reason: str) -> str:
    reason = reason.strip()
    if not 10 <= len(reason) <= 500:
        raise SubjectRequestError("state the request's reference and legal basis in 10 to 500 characters (--reason)")
    return reason


async def find(pool: asyncpg.Pool, number: str, key: bytes, payload_keys: Any) -> Found:
    """Every case that names the person's `number`, and every message of those cases."""
    normalised = persons.normalise(number)
    if normalised is None:
        raise SubjectRequestError("not an identity number: 4 to 40 letters and digits once spaces, hyphens and brackets are removed")
    while await persons.index_new_messages(pool, key, payload_keys):
        pass
    named = await persons.messages_of(pool, persons.blind(key, normalised))
    rows = await pool.fetch(
        "SELECT m.id, m.case_id FROM messages m WHERE m.case_id IN"
        " (SELECT case_id FROM messages WHERE id = ANY($1::uuid[])) ORDER BY m.ledger_index",
        [uuid.UUID(message_id) for message_id in named],
    )
    cases = tuple(dict.fromkeys(str(row["case_id"]) for row in rows))
    return Found(cases, tuple(str(row["id"]) for row in rows))


async def export(pool: asyncpg.Pool, found: Found, reason: str, payload_keys: Any, now: datetime) -> dict[str, Any]:
    """The export document for `found`, after recording the `subject-exported` entry (in its own transaction)."""
    reason = _check_reason(reason)
    messages = []
    for message_id in found.message_ids:
        row = await pool.fetchrow(
            "SELECT id, type, sender, receiver, case_id, ledger_index, accepted_at, status, purged_at FROM messages WHERE id = $1",
            uuid.UUID(message_id),
        )
        messages.append({
            "message_id": message_id, "type": row["type"], "from": row["sender"], "to": row["receiver"],
            "case": str(row["case_id"]), "ledger_index": row["ledger_index"], "accepted_at": format_timestamp(row["accepted_at"]),
            "status": row["status"], "purged_at": format_timestamp(row["purged_at"]) if row["purged_at"] else None,
            "payload": await read_payload(pool, message_id, payload_keys),
        })
    async with pool.acquire() as connection, connection.transaction():
        appender = LedgerAppender(connection)
        await appender.reserve()
        index = await appender.add(LedgerEntry("subject-exported", format_timestamp(now), {
            "request_digest": _digest(reason), "cases": len(found.cases), "messages": len(found.message_ids),
        }))
        await appender.finish()
    return {"format": EXPORT_FORMAT, "generated_at": format_timestamp(now), "ledger_index": index,
            "cases": list(found.cases), "messages": messages}


async def purge(pool: asyncpg.Pool, found: Found, reason: str, key: bytes, number: str, now: datetime) -> int:
    """Purge every payload of `found`, ledgered, and the index rows of its cases (the person's, and those of everyone
    else the payloads named); how many payloads were deleted."""
    _check_reason(reason)
    normalised = persons.normalise(number)
    assert normalised is not None, "find() checked it"
    async with pool.acquire() as connection, connection.transaction():
        appender = LedgerAppender(connection)
        await appender.reserve()
        purged = await purge_messages(connection, appender, list(found.message_ids), "subject-request", now)
        await appender.finish()
    # Under the indexer's lock, after the purge: the cases purge_messages queued, and every row of the person's (none
    # should be left outside those cases; one written meanwhile would be). Not inside the purge's transaction, which
    # holds the ledger's lock and would wait there for rows an indexer is writing.
    async with pool.acquire() as connection, connection.transaction():
        await persons.forget_purged(connection)
        await connection.execute("DELETE FROM console_person_index WHERE blind = $1", persons.blind(key, normalised))
    return purged
