"""The hub's SQL: messages, cases, outbox and request-proof ids. Plain SQL, one place.

Functions take a connection (or pool) and typed values; none of them opens a
transaction: the caller's transaction (the group commit's savepoint) is the unit.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from gateway.protocol.errors import ProtocolError
from gateway.protocol.message import Message
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


async def receipts_by_digests(executor: Executor, digests: set[str]) -> dict[str, tuple[str, bytes, str]]:
    """`receipt_by_digest` for many digests in one query: digest -> (message id, stored hub receipt, type)."""
    if not digests:
        return {}
    rows = await executor.fetch(
        "SELECT digest, id, hub_receipt, type FROM messages WHERE digest = ANY($1::bytea[])", [bytes.fromhex(d) for d in digests]
    )
    return {bytes(row["digest"]).hex(): (str(row["id"]), row["hub_receipt"], row["type"]) for row in rows}


async def digests_by_ids(executor: Executor, message_ids: set[str]) -> dict[str, str]:
    """`digest_by_id` for many ids in one query: message id -> digest of the accepted message."""
    rows = await executor.fetch("SELECT id, digest FROM messages WHERE id = ANY($1::uuid[])", [uuid.UUID(i) for i in message_ids])
    return {str(row["id"]): bytes(row["digest"]).hex() for row in rows}


async def digest_by_id(executor: Executor, message_id: str) -> str | None:
    """The digest of the accepted message with this id, if any (§8.3)."""
    found = await executor.fetchval("SELECT digest FROM messages WHERE id = $1", uuid.UUID(message_id))
    return found.hex() if found is not None else None


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


async def lock_case(connection: asyncpg.Connection, case_id: str) -> CaseRow | None:
    """The case row, locked until the end of the transaction, or None for a new case."""
    row = await connection.fetchrow(
        "SELECT kind, opener, responder, state, respond_by FROM cases WHERE id = $1 FOR UPDATE", uuid.UUID(case_id)
    )
    return CaseRow(row["kind"], row["opener"], row["responder"], row["state"], row["respond_by"]) if row else None


async def open_case(
    connection: asyncpg.Connection, message: Message, kind: str, state: str, respond_by: datetime | None, now: datetime
) -> None:
    await connection.execute(
        "INSERT INTO cases (id, kind, opener, responder, state, respond_by, opened_by, updated_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        uuid.UUID(message.case), kind, message.sender, message.receiver, state, respond_by, uuid.UUID(message.id), now,
    )


async def move_case(connection: asyncpg.Connection, case_id: str, state: str, now: datetime) -> None:
    await connection.execute("UPDATE cases SET state = $2, updated_at = $3 WHERE id = $1", uuid.UUID(case_id), state, now)


@dataclass(frozen=True, slots=True)
class RepliedMessage:
    case: str
    type: str
    receiver: str
    receipted: bool
    digest: str


async def replied_message(connection: asyncpg.Connection, message_id: str) -> RepliedMessage | None:
    """What `reply_to` checks need of an accepted message (§5.2, §9.4)."""
    row = await connection.fetchrow(
        "SELECT case_id, type, receiver, receiver_receipt IS NOT NULL AS receipted, digest FROM messages WHERE id = $1",
        uuid.UUID(message_id),
    )
    return RepliedMessage(str(row["case_id"]), row["type"], row["receiver"], row["receipted"], bytes(row["digest"]).hex()) if row else None


async def insert_message(
    connection: asyncpg.Connection,
    message: Message,
    accepted_at: datetime,
    ledger_index: int,
    hub_receipt: bytes,
    sealed: tuple[str, bytes],
    retention_days: int | None,
) -> None:
    """Record an accepted message, its bytes `sealed` as (payload key id, sealed bytes) by
    gateway/store/payloads.py and its route's retention, and queue it for delivery to its receiver (one statement)."""
    payload_key, sealed_bytes = sealed
    await connection.fetchval(
        "WITH stored AS ("
        " INSERT INTO messages (id, digest, compact, type, sender, receiver, case_id, reply_to, kid, created,"
        " accepted_at, ledger_index, hub_receipt, payload_key, retention_days)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
        " RETURNING id, receiver, case_id, accepted_at, ledger_index, type),"
        " queued AS (INSERT INTO outbox (message_id, receiver, case_id, due_at, queued_at, ledger_index, is_receipt)"
        " SELECT id, receiver, case_id, accepted_at, accepted_at, ledger_index, type = 'receipt' FROM stored RETURNING receiver)"
        # Wakes the receiver's long polls and the push workers at COMMIT (one notification per
        # receiver and transaction: PostgreSQL folds identical ones).
        " SELECT pg_notify('gateway_outbox', receiver) FROM queued",
        uuid.UUID(message.id),
        bytes.fromhex(message.digest),
        sealed_bytes,
        message.type,
        message.sender,
        message.receiver,
        uuid.UUID(message.case),
        uuid.UUID(message.reply_to) if message.reply_to else None,
        message.kid,
        message.created,
        accepted_at,
        ledger_index,
        hub_receipt,
        payload_key,
        retention_days,
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


async def recheck_in_batch(connection: asyncpg.Connection, message_id: str, kid: str, at: datetime) -> str | None:
    """Under the batch's ledger lock: the digest already accepted under this id, if any — after
    refusing the message if the registry, as committed now, says `kid` is revoked or expired at `at`.

    Key changes take the same lock, so the answer is the registry as of this batch's place in
    the ledger's order (§10.4); one round trip for both questions.
    """
    row = await connection.fetchrow(
        "SELECT m.digest, k.kid IS NOT NULL AS known, k.revoked_at, k.not_after"
        " FROM (SELECT 1) AS one LEFT JOIN messages m ON m.id = $1 LEFT JOIN keys k ON k.kid = $2",
        uuid.UUID(message_id), kid,
    )
    if not row["known"]:
        raise ProtocolError("key-unknown", where="kid")
    if row["revoked_at"] is not None and row["revoked_at"] <= at:
        raise ProtocolError("key-revoked", where="kid")
    if row["not_after"] <= at:
        raise ProtocolError("key-expired", where="kid")
    return row["digest"].hex() if row["digest"] is not None else None


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
