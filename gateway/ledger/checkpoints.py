"""Signed checkpoints of the ledger, their cosignatures and the witnesses' state (docs/protocol.md §13.4, §13.5).

A checkpoint is a C2SP `tlog-checkpoint` signed note over a stored tree head
(gateway/ledger/notes.py), signed with the hub's `checkpoint` key, whose name is the
log's origin. `sign_checkpoint` never signs a tree that does not extend the last signed
checkpoint of its origin: it fetches the consistency proof from the database and
checks it with the independent verifier (gateway/ledger/merkle.py) first. One signer at
a time across all processes (a transaction-scoped advisory lock); any process may try.

SQL for the tables of migration 0004 lives here, plain asyncpg.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from gateway.ledger import merkle, notes
from gateway.ledger.tree import consistency_proof, latest_head
from gateway.protocol.keys import PrivateKey

CHECKPOINT_LOCK = 0x6762615F636B70  # "gba_ckp": namespaced key for pg_advisory_xact_lock


class CheckpointInconsistent(RuntimeError):
    """The tree no longer extends the last signed checkpoint: the hub refuses to sign (§13.4)."""


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    origin: str
    size: int
    root: bytes
    note: str
    signed_at: datetime


@dataclass(frozen=True, slots=True)
class WitnessRecord:
    witness: str
    origin: str
    size: int
    root: bytes | None
    contacted_at: datetime | None
    last_error: str | None


def _stored(row: asyncpg.Record) -> StoredCheckpoint:
    return StoredCheckpoint(row["origin"], row["size"], row["root"], row["note"], row["signed_at"])


async def latest_checkpoint(executor: Any, origin: str) -> StoredCheckpoint | None:
    row = await executor.fetchrow(
        "SELECT origin, size, root, note, signed_at FROM ledger_checkpoints WHERE origin = $1 ORDER BY size DESC LIMIT 1", origin
    )
    return _stored(row) if row else None


async def checkpoint_at(executor: Any, origin: str, size: int) -> StoredCheckpoint | None:
    row = await executor.fetchrow(
        "SELECT origin, size, root, note, signed_at FROM ledger_checkpoints WHERE origin = $1 AND size = $2", origin, size
    )
    return _stored(row) if row else None


async def sign_checkpoint(
    connection: asyncpg.Connection, origin: str, key: PrivateKey, now: datetime, *, min_interval_seconds: float = 0.0
) -> StoredCheckpoint | None:
    """Sign a checkpoint of the latest tree head if it is newer than the last one; return the latest signed.

    With `min_interval_seconds`, sign only if the last checkpoint of `origin` was signed at least that long before
    `now`, by whichever process: the period then holds for all the processes on one database together.
    Raises CheckpointInconsistent if the head does not extend the last signed checkpoint.
    Returns None only while the ledger has no head at all.
    """
    async with connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock($1)", CHECKPOINT_LOCK)
        head = await latest_head(connection)
        last = await latest_checkpoint(connection, origin)
        if head is None or (last is not None and head.size == last.size and head.root == last.root):
            return last
        if last is not None and (now - last.signed_at).total_seconds() < min_interval_seconds:
            return last
        if last is None:
            # The first checkpoint of an origin that a hand-over started must extend the tree handed over (§13.8).
            handed = await handover_to(connection, origin)
            if handed is not None and handed[1] > 0:
                last = StoredCheckpoint(origin, handed[1], handed[2], handed[3], now)
        if last is not None:
            if head.size < last.size:
                raise CheckpointInconsistent(
                    f"the ledger holds {head.size} entries but checkpoint {last.size} of {origin} was signed: it was rolled back"
                )
            proof = await consistency_proof(connection, last.size, head.size)
            try:
                merkle.verify_consistency(last.size, head.size, proof.hashes, last.root, head.root)
            except merkle.ProofError as error:
                raise CheckpointInconsistent(f"tree {head.size} does not extend checkpoint {last.size}: {error}") from None
        body = notes.Checkpoint(origin, head.size, head.root).body()
        note = notes.sign_note(body, origin, key)
        await connection.execute(
            "INSERT INTO ledger_checkpoints (origin, size, root, note, signed_at) VALUES ($1, $2, $3, $4, $5)",
            origin, head.size, head.root, note, now,
        )
        return StoredCheckpoint(origin, head.size, head.root, note, now)


async def cosignatures(executor: Any, origin: str, size: int) -> list[tuple[str, str]]:
    """(witness, cosignature line) of every cosignature stored for the checkpoint, by witness name."""
    rows = await executor.fetch(
        "SELECT witness, line FROM ledger_cosignatures WHERE origin = $1 AND size = $2 ORDER BY witness", origin, size
    )
    return [(row["witness"], row["line"]) for row in rows]


async def add_cosignature(executor: Any, origin: str, size: int, witness: str, line: str, now: datetime) -> None:
    await executor.execute(
        "INSERT INTO ledger_cosignatures (origin, size, witness, line, received_at) VALUES ($1, $2, $3, $4, $5)"
        " ON CONFLICT (origin, size, witness) DO UPDATE SET line = EXCLUDED.line, received_at = EXCLUDED.received_at",
        origin, size, witness, line, now,
    )


async def witness_record(executor: Any, witness: str) -> WitnessRecord | None:
    row = await executor.fetchrow(
        "SELECT witness, origin, size, root, contacted_at, last_error FROM ledger_witnesses WHERE witness = $1", witness
    )
    return WitnessRecord(*row.values()) if row else None


async def witness_records(executor: Any) -> list[WitnessRecord]:
    rows = await executor.fetch("SELECT witness, origin, size, root, contacted_at, last_error FROM ledger_witnesses ORDER BY witness")
    return [WitnessRecord(*row.values()) for row in rows]


async def note_witness(
    executor: Any, witness: str, origin: str, now: datetime, *, size: int | None = None, root: bytes | None = None, error: str | None = None
) -> None:
    """Record a contact with a witness: the size (and root) it now holds for `origin`, or the failure."""
    await executor.execute(
        "INSERT INTO ledger_witnesses (witness, origin, size, root, contacted_at, last_error)"
        " VALUES ($1, $2, coalesce($3, 0), $4, $5, $6)"
        " ON CONFLICT (witness) DO UPDATE SET origin = EXCLUDED.origin,"
        " size = CASE WHEN $3::bigint IS NULL THEN ledger_witnesses.size ELSE EXCLUDED.size END,"
        " root = CASE WHEN $3::bigint IS NULL THEN ledger_witnesses.root ELSE EXCLUDED.root END,"
        " contacted_at = EXCLUDED.contacted_at, last_error = EXCLUDED.last_error",
        witness, origin, size, root, now, error,
    )


async def record_verification(
    executor: Any, started_at: datetime, seconds: float, size: int, first_bad_index: int | None, finding: str | None, by_whom: str
) -> None:
    """Store the result of a full verification (continuous verification, `ledger verify --record`)."""
    await executor.execute(
        "INSERT INTO ledger_verifications (started_at, seconds, size, intact, first_bad_index, finding, by_whom)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7)",
        started_at, seconds, size, finding is None, first_bad_index, finding, by_whom,
    )


async def latest_verification(executor: Any) -> asyncpg.Record | None:
    return await executor.fetchrow(
        "SELECT started_at, seconds, size, intact, first_bad_index, finding, by_whom FROM ledger_verifications"
        " ORDER BY id DESC LIMIT 1"
    )


async def rollback_reported(executor: Any, origin: str) -> str | None:
    """Why a witness says this database was rolled back (it holds a tree of `origin` that this database never
    checkpointed, or a larger one), or None."""
    row = await executor.fetchrow(
        "SELECT witness, last_error FROM ledger_witnesses WHERE origin = $1 AND last_error LIKE 'ahead-%' ORDER BY witness LIMIT 1",
        origin,
    )
    if row is None:
        return None
    return f"witness {row['witness']} holds a tree of {row['last_error'].removeprefix('ahead-')} entries of {origin}"


HANDOVER_FORMAT = "gba-ledger-handover/v1"


@dataclass(frozen=True, slots=True)
class Handover:
    """A verified hand-over note (§13.8): the log `old_origin` ends at (size, root); `new_origin`, whose checkpoint
    key is `new_key`, carries the same ledger on. Made after a rollback, and when the checkpoint key rotates."""

    old_origin: str
    size: int
    root: bytes
    new_origin: str
    new_key: notes.NoteKey
    note: str


def handover_text(old_origin: str, size: int, root: bytes, new_origin: str, new_key: notes.NoteKey) -> str:
    """The text of a hand-over note: which log ends where, the key of the one that follows, and its origin."""
    return (
        f"{HANDOVER_FORMAT}\nold {old_origin}\nsize {size}\nroot {base64.b64encode(root).decode('ascii')}\n"
        f"new-key {new_key.vkey()}\nnew {new_origin}\n"
    )


def read_handover(note: str, old_key: notes.NoteKey) -> Handover:
    """The hand-over in `note`, if `old_key` (the checkpoint key of the origin it ends, from the reader's own
    configuration or an earlier hand-over) signed it. Raises CheckpointRefused ("log-signature", "malformed")."""
    text = notes.verify_note(note, old_key)
    lines = text[:-1].split("\n")
    fields = dict(line.split(" ", 1) for line in lines[1:] if " " in line)
    try:
        if lines[0] != HANDOVER_FORMAT or len(lines) != 6 or list(fields) != ["old", "size", "root", "new-key", "new"]:
            raise notes.NoteError(f"not a {HANDOVER_FORMAT} note")
        new_key = notes.parse_vkey(fields["new-key"])
        root = base64.b64decode(fields["root"], validate=True)
        if not fields["size"].isdigit() or len(root) != 32 or new_key.kind != notes.ED25519 or new_key.name != fields["new"]:
            raise notes.NoteError("size, root or the new log's key (type 0x01, named by the new origin) is not well formed")
    except (notes.NoteError, ValueError) as error:
        raise notes.CheckpointRefused("malformed", f"hand-over note: {error}") from None
    if fields["old"] != old_key.name:
        raise notes.CheckpointRefused("origin", f"hand-over ends {fields['old']!r}, not {old_key.name!r}")
    return Handover(fields["old"], int(fields["size"]), root, fields["new"], new_key, note)


async def handover_to(executor: Any, origin: str) -> tuple[str, int, bytes, str] | None:
    """(old origin, size, root, note) of the hand-over that started `origin`, if it was started by one."""
    row = await executor.fetchrow("SELECT old_origin, size, root, note FROM ledger_handovers WHERE new_origin = $1", origin)
    return (row["old_origin"], row["size"], row["root"], row["note"]) if row else None


async def handovers_to(executor: Any, origin: str) -> list[tuple[int, str]]:
    """(size, note) of the hand-overs that lead to `origin`, oldest first (none for a log that started afresh)."""
    chain: list[tuple[int, str]] = []
    seen = {origin}
    while (found := await handover_to(executor, origin)) is not None and found[0] not in seen:
        chain.append((found[1], found[3]))
        origin = found[0]
        seen.add(origin)
    return chain[::-1]


async def hand_over(
    connection: asyncpg.Connection, old_origin: str, new_origin: str, key: PrivateKey, now: datetime,
    new_key: PrivateKey | None = None,
) -> str:
    """Sign with `key` (the old origin's) and store the hand-over from `old_origin` to `new_origin` at the tree the
    database holds; the signed note. `new_key` is the new log's checkpoint key: a rotation; default `key` (a rollback)."""
    if old_origin == new_origin:
        raise ValueError("the new origin must differ from the old one")
    successor = notes.note_key(new_origin, (new_key or key).public())
    async with connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock($1)", CHECKPOINT_LOCK)
        head = await latest_head(connection)
        if head is None:
            raise ValueError("the ledger is empty: nothing to hand over")
        note = notes.sign_note(handover_text(old_origin, head.size, head.root, new_origin, successor), old_origin, key)
        await connection.execute(
            "INSERT INTO ledger_handovers (old_origin, new_origin, size, root, note, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
            old_origin, new_origin, head.size, head.root, note, now,
        )
        return note
