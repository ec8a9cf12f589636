"""Publishing checkpoints and collecting the witnesses' cosignatures (docs/protocol.md §13.4, §13.5).

Every process runs a `Checkpointer`: every `interval` seconds it signs a checkpoint of
the latest tree head if the ledger grew and no process signed one in the last `interval`
seconds (gateway/ledger/checkpoints.py: one signer at a time, never a fork; so N processes
on one database sign once a period between them, not N times), then brings every configured witness up to the
latest checkpoint with C2SP `tlog-witness` `add-checkpoint`: `old` is the size that
witness last cosigned, with the consistency proof from there. A witness that is down
never stops the ledger; how far behind it is shows in `/metrics`.

A witness that answers 409 with a size of which this database holds no checkpoint, larger
or smaller than the hub's latest, has seen a tree this database no longer holds (a larger
one it does hold was signed by another process meanwhile): the database was restored from
a backup or failed over to a replica that had not caught up (docs/operations.md, "Rollback").
The checkpointer then stops signing for this origin and says so, until an operator
starts a new origin (`gateway ledger new-origin`).
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp
import asyncpg
import structlog

from gateway.ledger import checkpoints, notes
from gateway.ledger.checkpoints import CheckpointInconsistent, StoredCheckpoint
from gateway.ledger.tree import consistency_proof
from gateway.protocol.keys import PrivateKey

_log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class WitnessEndpoint:
    name: str
    jurisdiction: str
    key: notes.NoteKey
    url: str | None


def add_checkpoint_body(old_size: int, proof: Sequence[bytes], note: str) -> bytes:
    """The body of a C2SP tlog-witness add-checkpoint request."""
    lines = [f"old {old_size}\n"] + [base64.b64encode(node).decode("ascii") + "\n" for node in proof]
    return ("".join(lines) + "\n" + note).encode("utf-8")


def published_note(checkpoint: StoredCheckpoint, cosignature_lines: Sequence[str]) -> str:
    """The checkpoint as published: the hub's signed note followed by the witnesses' cosignature lines."""
    return notes.add_signature_lines(checkpoint.note, list(cosignature_lines))


def cosignature_line(witness: WitnessEndpoint, latest: StoredCheckpoint, body: bytes) -> str:
    """The line of a witness's answer `body` that is its valid cosignature over `latest` (PROTO-13.5-3): the one the
    hub checked is the one it stores and publishes. A witness may answer with several lines under its name (C2SP
    tlog-witness), by other keys or of other kinds; those are not stored. NoteError or CheckpointRefused if none holds."""
    lines = [line + "\n" for line in body.decode("utf-8", "replace").splitlines() if line]
    _, signatures = notes.parse_note(notes.add_signature_lines(latest.note, lines))
    mine = [s for s in signatures if s.name == witness.name and s.key_id == witness.key.key_id]
    if not mine:
        raise notes.NoteError("no cosignature by this witness in its answer")
    checkpoint = notes.Checkpoint(latest.origin, latest.size, latest.root).body()
    refusal: notes.CheckpointRefused | None = None
    for signature in mine:
        try:
            notes.verify_cosignature(checkpoint, signature, witness.key)
        except notes.CheckpointRefused as error:
            refusal = error
            continue
        return signature.line()
    assert refusal is not None
    raise refusal


class Checkpointer:
    """Signs checkpoints and gathers cosignatures; `run` until cancelled, `checkpoint_now` on demand."""

    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        origin: str,
        key: PrivateKey,
        witnesses: Sequence[WitnessEndpoint],
        interval_seconds: float,
        clock: Callable[[], datetime],
        timeout_seconds: float = 10.0,
        ssl_context: Any = None,
    ) -> None:
        self._pool = pool
        self._ssl = ssl_context if ssl_context is not None else True
        self.origin = origin
        self._key = key
        self._witnesses = tuple(witnesses)
        self._interval = interval_seconds
        self._clock = clock
        self._timeout = timeout_seconds
        self._lock = asyncio.Lock()
        self._met_witnesses = False
        self.rolled_back: str | None = None
        """Why signing stopped (a witness holds a larger tree, or the tree shrank), or None."""

    async def run(self) -> None:
        while True:
            try:
                await self.checkpoint_now(min_interval_seconds=self._interval)
            except Exception as error:  # noqa: BLE001 - the next round tries again; the ledger goes on
                _log.warning("checkpoint_round_failed", error=type(error).__name__)
            await asyncio.sleep(self._interval)  # a period, not synchronisation

    async def checkpoint_now(self, min_interval_seconds: float = 0.0) -> StoredCheckpoint | None:
        """Sign a checkpoint if the ledger grew (and, with `min_interval_seconds`, the last one is at least that old),
        then bring the witnesses up to the latest; the latest checkpoint."""
        async with self._lock:
            if not self._met_witnesses:
                # Before the first signature of this process: do the witnesses hold a larger tree
                # than this database's latest checkpoint? Then the database was rolled back (§13.8).
                # Until one witness has answered, this process signs nothing: it cannot tell.
                before = await checkpoints.latest_checkpoint(self._pool, self.origin)
                answered = await self._witness_round(before) if before is not None else 0
                self._met_witnesses = before is None or answered > 0 or not any(w.url for w in self._witnesses)
                if not self._met_witnesses:
                    _log.warning("checkpoint_waiting_for_a_witness", origin=self.origin)
                    return before
            if self.rolled_back is None:
                reported = await checkpoints.rollback_reported(self._pool, self.origin)
                if reported is not None:
                    self._stop(reported)
            if self.rolled_back is None:
                try:
                    async with self._pool.acquire() as connection:
                        await checkpoints.sign_checkpoint(
                            connection, self.origin, self._key, self._clock(), min_interval_seconds=min_interval_seconds
                        )
                except CheckpointInconsistent as error:
                    self._stop(str(error))
            latest = await checkpoints.latest_checkpoint(self._pool, self.origin)
            if latest is not None:
                await self._witness_round(latest)
            return latest

    async def _witness_round(self, latest: StoredCheckpoint) -> int:
        """Bring every witness up to `latest`; how many of them answered at all."""
        if not any(witness.url for witness in self._witnesses):
            return 0
        connector = aiohttp.TCPConnector(ssl=self._ssl)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._timeout), connector=connector) as session:
            answered = await asyncio.gather(*(self._witness(session, witness, latest) for witness in self._witnesses if witness.url))
        return sum(answered)

    def _stop(self, reason: str) -> None:
        if self.rolled_back is None:
            self.rolled_back = reason
            _log.error("checkpoint_signing_stopped", origin=self.origin, reason=reason)

    async def _witness(self, session: aiohttp.ClientSession, witness: WitnessEndpoint, latest: StoredCheckpoint) -> bool:
        """Bring one witness up to `latest`; whether it answered (with anything)."""
        record = await checkpoints.witness_record(self._pool, witness.name)
        old = record.size if record is not None and record.origin == self.origin else 0
        if old > latest.size:  # another process already brought this witness past this process's latest checkpoint
            return True
        for _ in range(2):  # a 409 tells the size the witness holds: one more try from there
            answer = await self._send(session, witness, old, latest)
            if answer is None:
                return False
            status, body = answer
            if status == 200:
                await self._cosigned(witness, latest, body)
                return True
            if status == 409:
                held_size = _size(body)
                if held_size is None:
                    break
                if held_size > latest.size:
                    if await checkpoints.checkpoint_at(self._pool, self.origin, held_size) is not None:
                        # This database signed that larger tree too: another process's newer checkpoint reached the
                        # witness first (several processes, docs/operations.md). A race, not a rollback.
                        return True
                    self._stop(f"witness {witness.name} holds a tree of {held_size} entries; the latest checkpoint here has {latest.size}")
                    await checkpoints.note_witness(self._pool, witness.name, self.origin, self._clock(), error=f"ahead-{held_size}")
                    return True
                if held_size == old:
                    break
                if held_size > 0 and await checkpoints.checkpoint_at(self._pool, self.origin, held_size) is None:
                    # A smaller tree than ours, but one this database never signed: every checkpoint is stored (in one
                    # transaction) before any process sends it, so the database lost it. A process that kept running
                    # through a failover to a standby that was behind meets this once the new ledger outgrows the old.
                    self._stop(f"witness {witness.name} holds a checkpoint of {held_size} entries that this database does not hold")
                    await checkpoints.note_witness(self._pool, witness.name, self.origin, self._clock(), error=f"ahead-{held_size}")
                    return True
                old = held_size
                continue
            break
        await checkpoints.note_witness(self._pool, witness.name, self.origin, self._clock(), error=f"http-{status}")
        _log.warning("witness_refused", witness=witness.name, status=status, size=latest.size)
        return True

    async def _send(self, session: aiohttp.ClientSession, witness: WitnessEndpoint, old: int, latest: StoredCheckpoint) -> tuple[int, bytes] | None:
        proof = [] if old in (0, latest.size) else (await consistency_proof(self._pool, old, latest.size)).hashes
        body = add_checkpoint_body(old, proof, latest.note)
        assert witness.url is not None
        try:
            async with session.post(witness.url.rstrip("/") + "/add-checkpoint", data=body, headers={"Content-Type": "text/plain"}) as response:
                return response.status, await response.read()
        except (aiohttp.ClientError, OSError, TimeoutError) as error:
            await checkpoints.note_witness(self._pool, witness.name, self.origin, self._clock(), error="unreachable")
            _log.warning("witness_unreachable", witness=witness.name, error=type(error).__name__)
            return None

    async def _cosigned(self, witness: WitnessEndpoint, latest: StoredCheckpoint, body: bytes) -> None:
        try:
            line = cosignature_line(witness, latest, body)
        except (notes.NoteError, notes.CheckpointRefused) as error:
            await checkpoints.note_witness(self._pool, witness.name, self.origin, self._clock(), error="cosignature-invalid")
            _log.warning("witness_cosignature_invalid", witness=witness.name, error=str(error)[:120])
            return
        now = self._clock()
        await checkpoints.add_cosignature(self._pool, self.origin, latest.size, witness.name, line, now)
        await checkpoints.note_witness(self._pool, witness.name, self.origin, now, size=latest.size, root=latest.root)
        _log.info("checkpoint_cosigned", witness=witness.name, size=latest.size)


def _size(body: bytes) -> int | None:
    text = body.decode("ascii", "replace").strip()
    return int(text) if text.isdigit() else None
