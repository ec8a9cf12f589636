"""The outbox's SQL: leases, acknowledgements, retries, dead letters (docs/protocol.md §12.4 to §12.7).

One row per message not yet acknowledged. A process *claims* rows by committing a lease
(`claimed_by`, `lease_until`) in one statement and talks to the receiver afterwards,
holding no lock; a lease that expires lets any process take the row over. Deliveries to
one receiver in one case go one at a time, in ledger order (PROTO-12.4-2): a row is
ready only when no earlier row of its (receiver, case) is still queued.

Every function takes the hub's clock value `now` rather than the database's, so the
time a test moves is the time the outbox sees. Functions that write ledger entries take
the caller's connection inside a group-committed batch and return what the entry needs.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import asyncpg
import structlog

from gateway.store.payloads import PayloadKeyError, PayloadKeys

_log = structlog.get_logger(__name__)

Executor = asyncpg.Connection | asyncpg.Pool

State = Literal["queued", "dead"]


@dataclass(frozen=True, slots=True)
class ClaimedDelivery:
    """An outbox row leased to this process, with what a delivery of it needs (§9.2, §9.3)."""

    message_id: str
    receiver: str
    attempts: int
    queued_at: datetime
    compact: bytes
    digest: str
    type: str
    sender: str
    case: str
    ledger_index: int
    accepted_at: datetime

    @property
    def is_receipt(self) -> bool:
        return self.type == "receipt"


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """An outbox row as operators see it (`gateway outbox list|show`)."""

    message_id: str
    receiver: str
    sender: str
    type: str
    case: str
    ledger_index: int
    state: str
    attempts: int
    queued_at: datetime
    due_at: datetime
    claimed_by: str | None
    lease_process: str | None
    """For a pull lease, the gateway process that took it (`claimed_by` is then `inbox:RECEIVER`)."""
    lease_until: datetime | None
    last_error: str | None


_NOT_HELD_BACK = (
    "(SELECT true FROM outbox e WHERE e.receiver = c.receiver AND e.case_id = c.case_id"
    " AND e.state = 'queued' AND e.ledger_index < c.ledger_index LIMIT 1) IS NULL"
)
"""PROTO-12.4-2: no earlier message of the same case for the same receiver is still queued.

A scalar subquery, not `NOT EXISTS`: the planner keeps it a probe of `outbox_case_order` for each candidate row.
Written as `NOT EXISTS` it became an anti join, and while the statistics said the outbox was tiny (a new database)
the plan read every queued row of the receiver for each candidate: quadratic in the queue's depth
(docs/performance.md, "Fifteenth pass")."""

_IN_WINDOW = "c.queued_at > $1::timestamptz - make_interval(secs => $7::double precision)"
"""The row is still inside its retry window ($7 its seconds). One past it is never offered again: the sweeper moves it to
the dead letters once it is not leased (PROTO-12.4-4), which a receiver that keeps pulling would otherwise prevent by
leasing it again each time its lease ran out."""

_READY = "c.state = 'queued' AND (c.lease_until IS NULL OR c.lease_until <= $1) AND " + _IN_WINDOW + " AND " + _NOT_HELD_BACK

_CLAIMED = (
    " RETURNING o.message_id, o.receiver, o.attempts, o.queued_at, m.compact, m.payload_key, m.digest, m.type, m.sender,"
    " m.case_id, m.ledger_index, m.accepted_at"
)


def _claimed(row: asyncpg.Record, keys: PayloadKeys) -> ClaimedDelivery:
    message_id = str(row["message_id"])
    compact = row["compact"] if row["payload_key"] is None else keys.open(message_id, row["payload_key"], row["compact"])
    return ClaimedDelivery(
        message_id=message_id,
        receiver=row["receiver"],
        attempts=row["attempts"],
        queued_at=row["queued_at"],
        compact=compact,
        digest=row["digest"].hex(),
        type=row["type"],
        sender=row["sender"],
        case=str(row["case_id"]),
        ledger_index=row["ledger_index"],
        accepted_at=row["accepted_at"],
    )


CLAIM_FOR_PUSH_SQL = (
    "WITH pick AS (SELECT c.message_id FROM outbox c WHERE c.receiver = ANY($2::text[]) AND c.due_at <= $1 AND "
    + _READY
    + " AND EXISTS (SELECT 1 FROM messages k WHERE k.id = c.message_id AND (k.payload_key IS NULL OR k.payload_key = ANY($6::text[])))"
    " ORDER BY c.due_at, c.ledger_index LIMIT $5 FOR UPDATE OF c SKIP LOCKED)"
    " UPDATE outbox o SET claimed_by = $3, lease_process = NULL,"
    " lease_until = $1::timestamptz + make_interval(secs => $4::double precision), attempts = o.attempts + 1"
    " FROM pick, messages m WHERE o.message_id = pick.message_id AND m.id = o.message_id"
    + _CLAIMED
)
"""`claim_for_push`'s statement: $1 now, $2 the receivers, $3 the process, $4 the lease's seconds, $5 the limit, $6 the
payload keys this process holds, $7 the retry window's seconds."""


async def claim_for_push(
    executor: Executor, receivers: list[str], process_id: str, now: datetime, lease_seconds: float, limit: int, keys: PayloadKeys,
    window_seconds: float,
) -> list[ClaimedDelivery]:
    """Lease up to `limit` ready rows for the push `receivers` whose retry time has come (PROTO-12.4-3) and whose retry
    window has not passed (PROTO-12.4-4); their messages opened with `keys`.

    Only rows sealed under a key in `keys` are leased: a process that lacks a key (not yet copied to its host)
    leaves those rows to the processes that have it (`sealed_under_missing_keys` finds them). A row whose bytes
    do not open under its key (altered) is logged and left leased: it is tried again when the lease runs out,
    and the other rows go on."""
    rows = await executor.fetch(
        CLAIM_FOR_PUSH_SQL,
        now, receivers, process_id, float(lease_seconds), limit, list(keys.keys), float(window_seconds),
    )
    claimed = []
    for row in rows:
        try:
            claimed.append(_claimed(row, keys))
        except PayloadKeyError as error:
            _log.error("payload_unopenable", message_id=str(row["message_id"]), error=str(error))
    return claimed


async def sealed_under_missing_keys(executor: Executor, receivers: list[str], keys: PayloadKeys) -> dict[str, int]:
    """Key id -> queued deliveries to `receivers` sealed under that key, for every key missing from `keys`."""
    rows = await executor.fetch(
        "SELECT m.payload_key, count(*) AS n FROM outbox o JOIN messages m ON m.id = o.message_id"
        " WHERE o.receiver = ANY($1::text[]) AND o.state = 'queued' AND m.payload_key IS NOT NULL"
        " AND m.payload_key <> ALL($2::text[]) GROUP BY m.payload_key ORDER BY m.payload_key",
        receivers, list(keys.keys),
    )
    return {row["payload_key"]: row["n"] for row in rows}


CLAIM_FOR_INBOX_SQL = (
    "WITH gone AS (SELECT p.process_id FROM gateway_processes p"
    " WHERE p.process_id NOT IN (SELECT a.application_name FROM pg_stat_activity a WHERE a.application_name IS NOT NULL)),"
    " ready AS ("
    "(SELECT c.message_id, c.ledger_index FROM outbox c WHERE c.receiver = $2 AND c.state = 'queued' AND c.lease_until IS NULL"
    " AND " + _IN_WINDOW + " AND " + _NOT_HELD_BACK + " ORDER BY c.ledger_index LIMIT $5)"
    " UNION ALL "
    "(SELECT c.message_id, c.ledger_index FROM outbox c WHERE c.receiver = $2 AND c.state = 'queued' AND c.lease_until <= $1"
    " AND " + _IN_WINDOW + " AND " + _NOT_HELD_BACK + " ORDER BY c.ledger_index LIMIT $5)"
    " UNION ALL "
    "(SELECT c.message_id, c.ledger_index FROM gone g CROSS JOIN LATERAL"
    " (SELECT c.message_id, c.ledger_index FROM outbox c WHERE c.lease_process = g.process_id AND c.receiver = $2"
    " AND c.state = 'queued' AND c.lease_until > $1 AND " + _IN_WINDOW + " AND " + _NOT_HELD_BACK
    + " ORDER BY c.ledger_index LIMIT $5) c"
    " ORDER BY c.ledger_index LIMIT $5)),"
    " pick AS (SELECT c.message_id FROM outbox c JOIN ready r ON r.message_id = c.message_id"
    " WHERE c.state = 'queued' AND (c.lease_until IS NULL OR c.lease_until <= $1 OR c.lease_process IN (SELECT process_id FROM gone))"
    " ORDER BY r.ledger_index LIMIT $5 FOR UPDATE OF c SKIP LOCKED),"
    " leased AS (UPDATE outbox o SET claimed_by = $3, lease_process = $6,"
    " lease_until = $1::timestamptz + make_interval(secs => $4::double precision),"
    " attempts = o.attempts + 1 FROM pick WHERE o.message_id = pick.message_id"
    " RETURNING o.message_id, o.receiver, o.attempts, o.queued_at),"
    " seen AS (UPDATE messages m SET status = 'delivered' FROM leased"
    " WHERE m.id = leased.message_id AND m.status = 'accepted' AND m.type <> 'receipt')"
    " SELECT o.message_id, o.receiver, o.attempts, o.queued_at, m.compact, m.payload_key, m.digest, m.type, m.sender,"
    " m.case_id, m.ledger_index, m.accepted_at FROM leased o JOIN messages m ON m.id = o.message_id"
    " ORDER BY m.ledger_index"
)
"""`claim_for_inbox`'s statement: $1 now, $2 the receiver, $3 the caller, $4 the lease's seconds, $5 the limit, $6 the process,
$7 the retry window's seconds."""


async def claim_for_inbox(
    executor: Executor,
    receiver: str,
    caller_id: str,
    process_id: str,
    now: datetime,
    lease_seconds: float,
    limit: int,
    keys: PayloadKeys,
    window_seconds: float,
) -> list[ClaimedDelivery]:
    """Lease up to `limit` ready rows for a pulling receiver, in ledger order (PROTO-12.6-1), on behalf of `process_id`;
    none whose retry window has passed (PROTO-12.4-4).

    Ready includes what a gateway process that is gone had leased: the process died between committing a pull's lease
    and writing its answer, so the deliveries never left. Offered again at once, they are in this answer and below its
    cursor, instead of waiting out their lease while this answer's cursor passes them: a later request with that cursor
    would acknowledge a receipt the receiver never saw (PROTO-12.6-2; docs/operations.md, "Pull leases").

    A message other than a receipt that is fetched for the first time becomes `delivered`. If a row does not open
    with `keys` (a key missing on this host, or altered bytes), the claim is undone and PayloadKeyError raised.
    """
    # The unleased rows and the expired leases are read from their own indexes (migration 0007), each in ledger
    # order, so that the deliveries in flight (leased) cost nothing; so are the leases of each process that is gone
    # (migration 0010), found from the processes: one that is registered and has no connection to the database.
    rows = await executor.fetch(
        CLAIM_FOR_INBOX_SQL,
        now, receiver, caller_id, float(lease_seconds), limit, process_id, float(window_seconds),
    )
    try:
        return [_claimed(row, keys) for row in rows]
    except PayloadKeyError:
        # Pulls go in ledger order, so no row may be skipped: give them all back, and let the caller refuse the pull.
        await release_inbox_claim(executor, [str(row["message_id"]) for row in rows], caller_id)
        raise


async def release_inbox_claim(executor: Executor, message_ids: list[str], caller_id: str) -> None:
    """Undo `claim_for_inbox` of rows whose answer never reached the caller: not leased, one attempt fewer (a receipt
    with none is not yet returned), and a message fetched for the first time `accepted` again."""
    await executor.execute(
        "WITH back AS (UPDATE outbox SET claimed_by = NULL, lease_process = NULL, lease_until = NULL, attempts = attempts - 1"
        " WHERE message_id = ANY($1::uuid[]) AND claimed_by = $2 AND attempts > 0 RETURNING message_id, attempts)"
        " UPDATE messages m SET status = 'accepted' FROM back"
        " WHERE m.id = back.message_id AND back.attempts = 0 AND m.status = 'delivered' AND m.type <> 'receipt'",
        [uuid.UUID(i) for i in message_ids], caller_id,
    )


async def receipts_to_acknowledge(executor: Executor, receiver: str, cursor: int) -> bool:
    """Whether a request with `after` = cursor acknowledges any fetched receipt (PROTO-12.6-2): one that an inbox answer
    returned. A receipt pushed to the receiver (which may move from push to pull) is acknowledged by its `204` only."""
    return bool(
        await executor.fetchval(
            "SELECT EXISTS (SELECT 1 FROM outbox WHERE receiver = $1 AND is_receipt AND state = 'queued'"
            " AND attempts > 0 AND claimed_by = 'inbox:' || $1 AND ledger_index <= $2)",
            receiver, cursor,
        )
    )


async def acknowledge_fetched_receipts(connection: asyncpg.Connection, receiver: str, cursor: int) -> list[tuple[str, int]]:
    """Finish the fetched receipts at or below `cursor`: (receipt id, attempts) of each (PROTO-12.6-2)."""
    rows = await connection.fetch(
        "WITH done AS (DELETE FROM outbox WHERE receiver = $1 AND is_receipt AND state = 'queued' AND attempts > 0"
        " AND claimed_by = 'inbox:' || $1 AND ledger_index <= $2 RETURNING message_id, attempts, claimed_by)"
        " UPDATE messages m SET status = 'delivered', delivered_by = done.claimed_by FROM done"
        " WHERE m.id = done.message_id RETURNING m.id, done.attempts, m.ledger_index",
        receiver, cursor,
    )
    return [(str(row["id"]), row["attempts"]) for row in sorted(rows, key=lambda row: row["ledger_index"])]


async def acknowledge_pushed_receipt(connection: asyncpg.Connection, message_id: str) -> int | None:
    """Finish a receipt its receiver answered with 204: its attempts, or None if it was no longer queued."""
    return await connection.fetchval(
        "WITH done AS (DELETE FROM outbox WHERE message_id = $1 AND state = 'queued' RETURNING attempts, claimed_by)"
        " UPDATE messages m SET status = 'delivered', delivered_by = done.claimed_by FROM done"
        " WHERE m.id = $1 RETURNING done.attempts",
        uuid.UUID(message_id),
    )


async def complete_with_receipts(connection: asyncpg.Connection, receipts: list[tuple[str, bytes]]) -> dict[str, int]:
    """Record each receiver's receipt on the message it acknowledges and end that message's delivery, for (target id,
    receipt) pairs of distinct targets in one statement: target id -> the delivery attempts made (0 when nothing was
    queued any more, e.g. superseded)."""
    rows = await connection.fetch(
        "WITH input AS (SELECT * FROM unnest($1::uuid[], $2::bytea[]) AS t(target, receipt)),"
        " done AS (DELETE FROM outbox o USING input i WHERE o.message_id = i.target RETURNING o.message_id, o.attempts, o.claimed_by)"
        " UPDATE messages m SET status = 'receipted', receiver_receipt = i.receipt,"
        " delivered_by = coalesce(d.claimed_by, m.delivered_by)"
        " FROM input i LEFT JOIN done d ON d.message_id = i.target WHERE m.id = i.target"
        " RETURNING m.id, coalesce(d.attempts, 0) AS attempts",
        [uuid.UUID(target) for target, _ in receipts], [receipt for _, receipt in receipts],
    )
    return {str(row["id"]): row["attempts"] for row in rows}


async def retry_later(
    executor: Executor, message_id: str, process_id: str, due_at: datetime, last_error: str
) -> bool:
    """Give a failed attempt's lease back and schedule the next one; False if the lease was no longer ours."""
    result = await executor.execute(
        "UPDATE outbox SET claimed_by = NULL, lease_until = NULL, due_at = $3, last_error = $4"
        " WHERE message_id = $1 AND claimed_by = $2 AND state = 'queued'",
        uuid.UUID(message_id), process_id, due_at, last_error,
    )
    return result.endswith(" 1")


async def dead_letter(
    connection: asyncpg.Connection, message_id: str, process_id: str, last_error: str
) -> tuple[str, int] | None:
    """Move a failed delivery whose window has passed to the dead letters: (receiver, attempts), or None if not ours."""
    row = await connection.fetchrow(
        "WITH dead AS (UPDATE outbox SET state = 'dead', claimed_by = NULL, lease_process = NULL, lease_until = NULL, last_error = $3"
        " WHERE message_id = $1 AND claimed_by = $2 AND state = 'queued' RETURNING message_id, receiver, attempts)"
        " UPDATE messages m SET status = 'dead-lettered' FROM dead WHERE m.id = dead.message_id"
        " RETURNING dead.receiver, dead.attempts",
        uuid.UUID(message_id), process_id, last_error,
    )
    return (row["receiver"], row["attempts"]) if row else None


async def dead_letter_expired(
    connection: asyncpg.Connection, now: datetime, window_seconds: float, limit: int = 1000
) -> list[tuple[str, str, int, str]]:
    """Dead-letter unleased rows queued longer than the window ago (PROTO-12.4-4).

    Catches what no failed attempt did: receivers that never pull, and rows whose last
    process died. Returns (message id, receiver, attempts, last error) for the ledger.
    """
    rows = await connection.fetch(
        "WITH pick AS (SELECT message_id FROM outbox WHERE state = 'queued'"
        " AND queued_at < $1::timestamptz - make_interval(secs => $2::double precision) AND (lease_until IS NULL OR lease_until <= $1)"
        " ORDER BY queued_at LIMIT $3 FOR UPDATE SKIP LOCKED),"
        " dead AS (UPDATE outbox o SET state = 'dead', claimed_by = NULL, lease_process = NULL, lease_until = NULL,"
        " last_error = coalesce(o.last_error, 'never-acknowledged') FROM pick WHERE o.message_id = pick.message_id"
        " RETURNING o.message_id, o.receiver, o.attempts, o.last_error, o.ledger_index)"
        " UPDATE messages m SET status = 'dead-lettered' FROM dead WHERE m.id = dead.message_id"
        " RETURNING dead.message_id, dead.receiver, dead.attempts, dead.last_error, dead.ledger_index",
        now, float(window_seconds), limit,
    )
    rows = sorted(rows, key=lambda row: row["ledger_index"])
    return [(str(row["message_id"]), row["receiver"], row["attempts"], row["last_error"]) for row in rows]


async def supersede_case(connection: asyncpg.Connection, case_id: str) -> list[str]:
    """Remove every message of the case that is not a receipt from delivery; their ids, sorted (PROTO-12.7-1)."""
    rows = await connection.fetch(
        "WITH gone AS (DELETE FROM outbox WHERE case_id = $1 AND NOT is_receipt RETURNING message_id)"
        " UPDATE messages m SET status = 'superseded' FROM gone WHERE m.id = gone.message_id RETURNING m.id",
        uuid.UUID(case_id),
    )
    return sorted(str(row["id"]) for row in rows)


async def retry_dead(
    connection: asyncpg.Connection, message_ids: list[str] | None, receiver: str | None, now: datetime
) -> list[tuple[str, str]]:
    """Queue dead letters again with a new window (PROTO-12.4-4): the given ids, or all (of one receiver).

    Returns (message id, receiver) of each row retried; rows that are not dead are left alone.
    """
    rows = await connection.fetch(
        "WITH again AS (UPDATE outbox SET state = 'queued', attempts = 0, queued_at = $1, due_at = $1,"
        " claimed_by = NULL, lease_process = NULL, lease_until = NULL"
        " WHERE state = 'dead' AND ($2::uuid[] IS NULL OR message_id = ANY($2::uuid[]))"
        " AND ($3::text IS NULL OR receiver = $3) RETURNING message_id, receiver, ledger_index)"
        " UPDATE messages m SET status = 'accepted' FROM again WHERE m.id = again.message_id"
        " RETURNING again.message_id, again.receiver, again.ledger_index",
        now,
        [uuid.UUID(message_id) for message_id in message_ids] if message_ids is not None else None,
        receiver,
    )
    if rows:
        await connection.execute(
            "SELECT pg_notify('gateway_outbox', r) FROM unnest($1::text[]) AS r", sorted({row["receiver"] for row in rows})
        )
    return [(str(row["message_id"]), row["receiver"]) for row in sorted(rows, key=lambda row: row["ledger_index"])]


async def list_rows(executor: Executor, state: State | None, receiver: str | None, limit: int) -> list[OutboxRow]:
    """Outbox rows in ledger order, for operators."""
    rows = await executor.fetch(
        "SELECT o.message_id, o.receiver, m.sender, m.type, o.case_id, o.ledger_index, o.state, o.attempts,"
        " o.queued_at, o.due_at, o.claimed_by, o.lease_process, o.lease_until, o.last_error"
        " FROM outbox o JOIN messages m ON m.id = o.message_id"
        " WHERE ($1::text IS NULL OR o.state = $1) AND ($2::text IS NULL OR o.receiver = $2)"
        " ORDER BY o.ledger_index LIMIT $3",
        state, receiver, limit,
    )
    return [_row(row) for row in rows]


async def row_by_id(executor: Executor, message_id: str) -> OutboxRow | None:
    row = await executor.fetchrow(
        "SELECT o.message_id, o.receiver, m.sender, m.type, o.case_id, o.ledger_index, o.state, o.attempts,"
        " o.queued_at, o.due_at, o.claimed_by, o.lease_process, o.lease_until, o.last_error"
        " FROM outbox o JOIN messages m ON m.id = o.message_id WHERE o.message_id = $1",
        uuid.UUID(message_id),
    )
    return _row(row) if row else None


def _row(row: asyncpg.Record) -> OutboxRow:
    return OutboxRow(
        message_id=str(row["message_id"]),
        receiver=row["receiver"],
        sender=row["sender"],
        type=row["type"],
        case=str(row["case_id"]),
        ledger_index=row["ledger_index"],
        state=row["state"],
        attempts=row["attempts"],
        queued_at=row["queued_at"],
        due_at=row["due_at"],
        claimed_by=row["claimed_by"],
        lease_process=row["lease_process"],
        lease_until=row["lease_until"],
        last_error=row["last_error"],
    )


async def expire_case_if_due(connection: asyncpg.Connection, case_id: str, now: datetime) -> datetime | None:
    """Move a verification case whose deadline passed to `expired`; its `respond_by` if it moved (PROTO-7.5-3)."""
    return await connection.fetchval(
        "UPDATE cases SET state = 'expired', updated_at = $2 WHERE id = $1 AND kind = 'verification'"
        " AND state = 'requested' AND respond_by < $2 RETURNING respond_by",
        uuid.UUID(case_id), now,
    )


async def expire_due_cases(connection: asyncpg.Connection, now: datetime, limit: int = 1000) -> list[tuple[str, datetime]]:
    """Expire every verification case whose deadline passed: (case id, respond_by) of each (PROTO-7.5-3)."""
    rows = await connection.fetch(
        "WITH pick AS (SELECT id FROM cases WHERE state = 'requested' AND respond_by < $1 AND kind = 'verification'"
        " ORDER BY respond_by LIMIT $2 FOR UPDATE SKIP LOCKED)"
        " UPDATE cases c SET state = 'expired', updated_at = $1 FROM pick WHERE c.id = pick.id RETURNING c.id, c.respond_by",
        now, limit,
    )
    return [(str(row["id"]), row["respond_by"]) for row in sorted(rows, key=lambda row: (row["respond_by"], str(row["id"])))]


async def delivery_figures(executor: Executor, now: datetime) -> asyncpg.Record:
    """Outbox depth, age of the oldest undelivered message (seconds), dead letters: for metrics (from the database)."""
    return await executor.fetchrow(
        "SELECT count(*) FILTER (WHERE state = 'queued') AS depth,"
        " coalesce(extract(epoch FROM $1 - min(queued_at) FILTER (WHERE state = 'queued')), 0) AS oldest_seconds,"
        " count(*) FILTER (WHERE state = 'dead') AS dead"
        " FROM outbox",
        now,
    )


async def is_receipted(executor: Executor, message_id: str) -> bool:
    """Whether the receiver's receipt of this message has been accepted."""
    return bool(await executor.fetchval("SELECT receiver_receipt IS NOT NULL FROM messages WHERE id = $1", uuid.UUID(message_id)))
