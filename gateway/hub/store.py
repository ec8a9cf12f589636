"""The hub's SQL: messages, cases, outbox and request-proof ids. Plain SQL, one place.

Functions take a connection (or pool) and typed values; none of them opens a
transaction: the caller's transaction (the group commit's savepoint) is the unit.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import asyncpg

from gateway.protocol.errors import ProtocolError
from gateway.protocol.message import Message

if TYPE_CHECKING:
    from gateway.hub.cases import CaseWrite
from gateway.store.payloads import PayloadKeys

Executor = asyncpg.Connection | asyncpg.Pool


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """What the hub keeps about an accepted message, as its sender may see it."""

    id: str
    digest: str
    type: str
    sender: str
    receiver: str
    case: str
    ledger_index: int
    accepted_at: datetime
    hub_receipt: bytes
    status: str
    receiver_receipt: bytes | None = None


@dataclass(frozen=True, slots=True)
class CaseRow:
    kind: str
    opener: str
    responder: str
    state: str
    respond_by: datetime | None


async def receipt_by_digest(executor: Executor, digest: str) -> tuple[str, bytes, str] | None:
    """(message id, stored hub receipt, type) of the accepted message with this digest, if any (§8.2)."""
    row = await executor.fetchrow("SELECT id, hub_receipt, type FROM messages WHERE digest = $1", bytes.fromhex(digest))
    return (str(row["id"]), row["hub_receipt"], row["type"]) if row else None


@dataclass(frozen=True, slots=True)
class Found:
    stored: tuple[str, bytes, str] | None
    """(message id, stored hub receipt, type) of the accepted message with the digest (§8.2)."""
    known_digest: str | None
    """The digest of the accepted message with the id, if any (§8.3)."""


async def look_up(executor: Executor, digest: str, message_id: str | None) -> Found:
    """Before the queue, one round trip: the accepted message with these bytes (a resend), and the digest accepted
    under this id (a conflict); `message_id` None when the payload has no id in the protocol's form."""
    # Two index lookups, not `digest = $1 OR id = $2`: a cached generic plan of the OR is a sequential scan.
    rows = await executor.fetch(
        "SELECT id, digest, hub_receipt, type FROM messages WHERE digest = $1"
        " UNION ALL SELECT id, digest, hub_receipt, type FROM messages WHERE id = $2",
        bytes.fromhex(digest), uuid.UUID(message_id) if message_id else None,
    )
    stored = known = None
    for row in rows:
        if bytes(row["digest"]).hex() == digest:
            stored = (str(row["id"]), row["hub_receipt"], row["type"])
        if message_id is not None and str(row["id"]) == message_id:
            known = bytes(row["digest"]).hex()
    return Found(stored, known)


async def receipts_by_digests(executor: Executor, digests: set[str]) -> dict[str, tuple[str, bytes, str]]:
    """`receipt_by_digest` for many digests in one query: digest -> (message id, stored hub receipt, type)."""
    if not digests:
        return {}
    rows = await executor.fetch(
        "SELECT digest, id, hub_receipt, type FROM messages WHERE digest = ANY($1::bytea[])", [bytes.fromhex(d) for d in digests]
    )
    return {bytes(row["digest"]).hex(): (str(row["id"]), row["hub_receipt"], row["type"]) for row in rows}


async def digests_by_ids(executor: Executor, message_ids: set[str]) -> dict[str, str]:
    """The digests accepted under `message_ids`, in one query: message id -> digest (§8.3)."""
    rows = await executor.fetch("SELECT id, digest FROM messages WHERE id = ANY($1::uuid[])", [uuid.UUID(i) for i in message_ids])
    return {str(row["id"]): bytes(row["digest"]).hex() for row in rows}


async def message_by_id(executor: Executor, message_id: str) -> StoredMessage | None:
    row = await executor.fetchrow(
        "SELECT id, digest, type, sender, receiver, case_id, ledger_index, accepted_at, hub_receipt, status,"
        " receiver_receipt FROM messages WHERE id = $1",
        uuid.UUID(message_id),
    )
    if row is None:
        return None
    return StoredMessage(
        id=str(row["id"]),
        digest=row["digest"].hex(),
        type=row["type"],
        sender=row["sender"],
        receiver=row["receiver"],
        case=str(row["case_id"]),
        ledger_index=row["ledger_index"],
        accepted_at=row["accepted_at"],
        hub_receipt=row["hub_receipt"],
        status=row["status"],
        receiver_receipt=row["receiver_receipt"],
    )


@dataclass(frozen=True, slots=True)
class RepliedMessage:
    case: str
    type: str
    receiver: str
    receipted: bool
    digest: str


@dataclass(frozen=True, slots=True)
class BatchView:
    """What the accepting transaction reads about one message (`look_up_many`)."""

    known_digest: str | None
    """The digest already accepted under the message's id, if any (§8.3)."""
    case: CaseRow | None
    """The message's case, locked until the end of the batch's transaction; None for a new case."""
    replied: RepliedMessage | None
    """The message its `reply_to` names, if any (§5.2, §9.4)."""
    key_refusal: ProtocolError | None
    """The refusal the registry, as committed now, makes of the message's key (§10.4), if any."""


LOOK_UP_MANY_SQL = (
    "WITH input AS (SELECT * FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::uuid[]) WITH ORDINALITY"
    " AS t(id, kid, case_id, reply_to, n)),"
    " locked AS MATERIALIZED (SELECT c.* FROM (SELECT DISTINCT case_id FROM input ORDER BY case_id) w,"
    " LATERAL (SELECT id, kind, opener, responder, state, respond_by FROM cases WHERE id = w.case_id FOR UPDATE) c)"
    " SELECT i.n, m.digest, k.kid IS NOT NULL AS known, k.revoked_at, k.not_after,"
    " l.kind, l.opener, l.responder, l.state, l.respond_by,"
    " r.id AS r_id, r.case_id AS r_case, r.type AS r_type, r.receiver AS r_receiver,"
    " r.receipted AS r_receipted, r.digest AS r_digest"
    " FROM input i"
    " LEFT JOIN LATERAL (SELECT digest FROM messages WHERE id = i.id LIMIT 1) m ON true"
    " LEFT JOIN LATERAL (SELECT kid, revoked_at, not_after FROM keys WHERE kid = i.kid LIMIT 1) k ON true"
    " LEFT JOIN locked l ON l.id = i.case_id"
    " LEFT JOIN LATERAL (SELECT id, case_id, type, receiver, receiver_receipt IS NOT NULL AS receipted, digest"
    " FROM messages WHERE id = i.reply_to LIMIT 1) r ON true"
    " ORDER BY i.n"
)
"""`look_up_many`'s statement: $1 the messages' ids, $2 their key ids, $3 their case ids, $4 the ids their `reply_to`
names (NULL for none), in the batch's order."""


async def look_up_many(connection: asyncpg.Connection, messages: list[Message], at: datetime) -> list[BatchView]:
    """Under the batch's ledger lock, one round trip: for each message, the digest already accepted under its id, its
    case row locked FOR UPDATE (in id order), the message its `reply_to` names, and the refusal of its key if the
    registry, as committed now, says it is unknown, revoked or expired at `at`. Each view is what the database holds
    before the batch writes: what earlier messages of the same run decided is laid over it by the caller
    (gateway/hub/acceptance.py, `_Overlay`).

    Key changes take the same ledger lock, so the answer is the registry as of this batch's place in the ledger's
    order (§10.4). Locking the case rows makes racing messages of one case take turns, in any number of processes.

    Every row is found by its primary key, one probe a message (`LATERAL` subqueries with `LIMIT 1`, which the
    planner cannot pull up into a join of whole tables): written as plain joins, the plan followed the tables'
    statistics, and while those lagged behind a fast-growing `messages` (a new database: autovacuum analyses at most
    once a minute) it read the whole table twice a batch, a cost that grew with every message accepted
    (docs/performance.md, "Fifteenth pass").
    """
    rows = await connection.fetch(
        LOOK_UP_MANY_SQL,
        [uuid.UUID(m.id) for m in messages], [m.kid for m in messages], [uuid.UUID(m.case) for m in messages],
        [uuid.UUID(m.reply_to) if m.reply_to else None for m in messages],
    )
    return [_batch_view(row, at) for row in rows]


def _batch_view(row: asyncpg.Record, at: datetime) -> BatchView:
    key_refusal = None
    if not row["known"]:
        key_refusal = ProtocolError("key-unknown", where="kid")
    elif row["revoked_at"] is not None and row["revoked_at"] <= at:
        key_refusal = ProtocolError("key-revoked", where="kid")
    elif row["not_after"] <= at:
        key_refusal = ProtocolError("key-expired", where="kid")
    case = CaseRow(row["kind"], row["opener"], row["responder"], row["state"], row["respond_by"]) if row["kind"] is not None else None
    replied = None
    if row["r_id"] is not None:
        replied = RepliedMessage(str(row["r_case"]), row["r_type"], row["r_receiver"], row["r_receipted"], bytes(row["r_digest"]).hex())
    return BatchView(row["digest"].hex() if row["digest"] is not None else None, case, replied, key_refusal)


@dataclass(frozen=True, slots=True)
class NewMessage:
    """One accepted message for `insert_messages`: its bytes `sealed` as (payload key id, sealed bytes) by
    gateway/store/payloads.py, its route's retention and its case write (gateway/hub/cases.py)."""

    message: Message
    accepted_at: datetime
    ledger_index: int
    hub_receipt: bytes
    sealed: tuple[str, bytes]
    retention_days: int | None
    case_write: CaseWrite | None


async def insert_messages(connection: asyncpg.Connection, rows: list[NewMessage]) -> None:
    """Record accepted messages in one statement: their case writes (open or move; at most one a case), the messages,
    their outbox rows (queued for delivery), and a notification per receiver that wakes its long polls and the push
    workers at COMMIT."""
    columns: list[list[Any]] = [[] for _ in range(19)]
    for row in rows:
        m, write = row.message, row.case_write
        values = (
            uuid.UUID(m.id), bytes.fromhex(m.digest), row.sealed[1], m.type, m.sender, m.receiver, uuid.UUID(m.case),
            uuid.UUID(m.reply_to) if m.reply_to else None, m.kid, m.created, row.accepted_at, row.ledger_index, row.hub_receipt,
            row.sealed[0], row.retention_days, write.action if write else None, write.kind if write else None,
            write.state if write else None, write.respond_by if write else None,
        )
        for column, value in zip(columns, values):
            column.append(value)
    await connection.fetch(
        "WITH input AS (SELECT * FROM unnest($1::uuid[], $2::bytea[], $3::bytea[], $4::text[], $5::text[], $6::text[],"
        " $7::uuid[], $8::uuid[], $9::text[], $10::timestamptz[], $11::timestamptz[], $12::bigint[], $13::bytea[], $14::text[],"
        " $15::integer[], $16::text[], $17::text[], $18::text[], $19::timestamptz[])"
        " AS t(id, digest, compact, type, sender, receiver, case_id, reply_to, kid, created, accepted_at, ledger_index,"
        " hub_receipt, payload_key, retention_days, action, kind, state, respond_by)),"
        " opened AS (INSERT INTO cases (id, kind, opener, responder, state, respond_by, opened_by, updated_at)"
        " SELECT case_id, kind, sender, receiver, state, respond_by, id, accepted_at FROM input WHERE action = 'open'),"
        " moved AS (UPDATE cases c SET state = i.state, updated_at = i.accepted_at FROM input i"
        " WHERE c.id = i.case_id AND i.action = 'move'),"
        " stored AS (INSERT INTO messages (id, digest, compact, type, sender, receiver, case_id, reply_to, kid, created,"
        " accepted_at, ledger_index, hub_receipt, payload_key, retention_days)"
        " SELECT id, digest, compact, type, sender, receiver, case_id, reply_to, kid, created, accepted_at, ledger_index,"
        " hub_receipt, payload_key, retention_days FROM input ORDER BY ledger_index"
        " RETURNING id, receiver, case_id, accepted_at, ledger_index, type),"
        " queued AS (INSERT INTO outbox (message_id, receiver, case_id, due_at, queued_at, ledger_index, is_receipt)"
        " SELECT id, receiver, case_id, accepted_at, accepted_at, ledger_index, type = 'receipt' FROM stored RETURNING receiver)"
        " SELECT pg_notify('gateway_outbox', receiver) FROM (SELECT DISTINCT receiver FROM queued) AS receivers",
        *columns,
    )


async def remember_request_proof(executor: Executor, jti: str, kid: str, expires_at: datetime) -> bool:
    """Record a request proof's one-time id; False if it was seen before (§9.5, shared by all processes)."""
    inserted = await executor.fetchval(
        "INSERT INTO request_proof_ids (jti, kid, expires_at) VALUES ($1, $2, $3) ON CONFLICT (jti) DO NOTHING RETURNING true",
        uuid.UUID(jti), kid, expires_at,
    )
    return bool(inserted)


async def forget_expired_request_proofs(executor: Executor, now: datetime) -> int:
    result = await executor.execute("DELETE FROM request_proof_ids WHERE expires_at < $1", now)
    return int(result.split()[-1])


async def reseal_messages(pool: asyncpg.Pool, keys: PayloadKeys, *, clear_only: bool = False, batch: int = 500) -> int:
    """Seal every message stored in clear (rows from before payload encryption) and, unless `clear_only`, every
    one sealed under a key other than the current one, with the current key, in batches of `batch` rows; how
    many rows were resealed.

    Each batch is one transaction that locks its rows (SKIP LOCKED: several processes may run it at once). The
    old bytes stay in the table's dead tuples and in the WAL until PostgreSQL reuses the space: callers that
    changed any row run `VACUUM FULL messages` (docs/security.md, "Payloads at rest").
    """
    resealed = 0
    while True:
        async with pool.acquire() as connection, connection.transaction():
            rows = await connection.fetch(
                "SELECT id, compact, payload_key FROM messages"
                " WHERE compact IS NOT NULL AND (payload_key IS NULL OR (NOT $3 AND payload_key <> $1))"
                " ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED",
                keys.current, batch, clear_only,
            )
            if not rows:
                return resealed
            updates = []
            for row in rows:
                message_id = str(row["id"])
                plain = row["compact"] if row["payload_key"] is None else keys.open(message_id, row["payload_key"], row["compact"])
                key_id, sealed = keys.seal(message_id, plain)
                updates.append((row["id"], sealed, key_id))
            await connection.executemany("UPDATE messages SET compact = $2, payload_key = $3 WHERE id = $1", updates)
            resealed += len(updates)


async def payload_key_use(executor: Executor) -> dict[str | None, int]:
    """How many stored payloads each payload key seals (None: stored in clear); purged ones are not counted."""
    rows = await executor.fetch("SELECT payload_key, count(*) AS n FROM messages WHERE compact IS NOT NULL GROUP BY payload_key")
    return {row["payload_key"]: row["n"] for row in rows}
