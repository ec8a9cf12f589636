"""Find by person: a keyed blind index of identity numbers (docs/console.md, "Find by person").

`console_person_index` holds HMAC-SHA256(key, normalised number) for every identity
document named in a `referral.submit` or `verification.request`, and the message that
names it. The key lives in a file outside the database (`[console] blind_index_key`),
so a copy of the database alone tells nobody whose records it holds, and nobody can
test a guessed number without the key.

The index is written by `index_new_messages`, which the console runs in every gateway
process after acceptance (not in the accepting transaction): it follows `messages` by
ledger index from a cursor kept in the same transaction as the rows it writes, so no
message is skipped or indexed twice, and the hub's acceptance path neither reads the
key nor waits for it. A message is findable within about a second of its acceptance.
Payloads are opened through `gateway.console.payloads` only.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from gateway.console.payloads import payload_of
from gateway.console.settings import ConsoleRuntime

_log = structlog.get_logger(__name__)

INDEXED_TYPES = ("referral.submit", "verification.request")
KEY_BYTES = 32
_SEPARATORS = re.compile(r"[\s\-()/.]")
_NUMBER = re.compile(r"[A-Z0-9]{4,40}")
_CURSOR_LOCK = 0x6762615F706978  # "gba_pix": one indexer at a time across processes
_ROWS_BETWEEN_YIELDS = 25
"""Messages the indexer opens between two returns to the event loop (each is about 50-100 µs of CPU)."""


def normalise(number: str) -> str | None:
    """The canonical form of an identity number: upper case, without spaces, hyphens, brackets, slashes or dots.

    "a123456(7)" and "A1234567" are the same HKID. None for anything that is not 4-40 letters and digits then.
    """
    value = _SEPARATORS.sub("", number).upper()
    return value if _NUMBER.fullmatch(value) else None


def blind(key: bytes, normalised: str) -> bytes:
    """HMAC-SHA256 of the normalised number: one lookup's blind value (the indexer keeps a `blinder`)."""
    return blinder(key)(normalised)


def blinder(key: bytes) -> Callable[[str], bytes]:
    """`blind(key, ·)` for many numbers: the key's HMAC state is made once and copied for each number.

    The indexer blinds several numbers a message; setting OpenSSL's MAC up for each one (`hmac.digest`) made
    two thirds of its HMAC cost (bench/instructions.py).
    """
    keyed = hmac.new(key, digestmod="sha256")

    def blinded(normalised: str) -> bytes:
        state = keyed.copy()
        state.update(normalised.encode("ascii"))
        return state.digest()

    return blinded


def load_key(runtime: ConsoleRuntime) -> bytes | None:
    """The blind index key from its file; None when none is configured.

    In test mode without a configured key the file is made (mode 0600) in the data directory
    when that directory exists; the console never creates directories of its own.
    """
    path = runtime.blind_index_key
    if path is None:
        return None
    path = Path(path)
    if not path.exists() and runtime.create_blind_index_key and path.parent.is_dir():
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process made it first
        else:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(secrets.token_bytes(KEY_BYTES))
    key = path.read_bytes()
    if len(key) < KEY_BYTES:
        raise ValueError(f"the blind index key in {path} has {len(key)} bytes, want at least {KEY_BYTES}")
    return key


def identity_numbers(payload: Any) -> list[str]:
    """Every normalised number under an `identity_documents` member anywhere in the payload's body.

    One recursive walk into objects and arrays only (the payload's depth is bounded, §4.5): generators per level
    were most of the person indexer's cost at load."""
    found: list[str] = []
    _collect_numbers(payload, found)
    return found


def _collect_numbers(value: Any, found: list[str]) -> None:
    if type(value) is dict:
        for name, member in value.items():
            if name == "identity_documents" and type(member) is list:
                for document in member:
                    number = normalise(str(document.get("number", ""))) if type(document) is dict else None
                    if number:
                        found.append(number)
            elif type(member) is dict or type(member) is list:
                _collect_numbers(member, found)
    elif type(value) is list:
        for member in value:
            if type(member) is dict or type(member) is list:
                _collect_numbers(member, found)


NEXT_MESSAGES_SQL = (
    "SELECT id, ledger_index, compact, payload_key FROM messages"
    " WHERE ledger_index > $1 AND ledger_index < (SELECT size FROM ledger_size) AND type = ANY($2::text[])"
    " ORDER BY ledger_index LIMIT $3"
)
"""The indexer's next messages after the cursor ($1) of the types ($2), at most $3, in ledger order.

The upper bound changes no answer: a message and its ledger entry commit together, so in the statement's one snapshot
every visible message's index is below the ledger's size. It is there for the planner: with a range bounded on both
sides, the generic plan reads `messages` by its ledger index from the cursor on, even while the statistics say the
table is small. With the cursor alone, on a new database, the generic plan read all of `messages` and sorted it for
every batch: a cost that grew with every message (docs/performance.md, "Sixteenth pass"; tests/store/test_plans.py)."""


async def index_new_messages(pool: Any, key: bytes, payload_keys: Any, batch: int = 500) -> int:
    """Index the persons of messages accepted since the cursor; the number of messages looked at.

    A batch costs one read of the messages with their payloads and one insert of all their index rows: this runs
    beside acceptance in every process, and a round trip per message was a seventh of the hub's CPU at load
    (docs/performance.md)."""
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock($1)", _CURSOR_LOCK)
        await _forget_queued(connection)
        cursor = await connection.fetchval("SELECT coalesce(max(ledger_index), -1) FROM console_person_cursor")
        rows = await connection.fetch(NEXT_MESSAGES_SQL, cursor, list(INDEXED_TYPES), batch)
        blinds: list[bytes] = []
        message_ids: list[Any] = []
        blinded = blinder(key)
        for position, row in enumerate(rows):
            if position and position % _ROWS_BETWEEN_YIELDS == 0:
                await asyncio.sleep(0)  # a batch is tens of milliseconds of CPU: let requests in between (p99)
            payload = payload_of(row, payload_keys)
            for value in {blinded(number) for number in identity_numbers(payload.get("body") if payload else None)}:
                blinds.append(value)
                message_ids.append(row["id"])
        if blinds:
            await connection.execute(
                "INSERT INTO console_person_index (blind, message_id) SELECT * FROM unnest($1::bytea[], $2::uuid[])"
                " ON CONFLICT DO NOTHING",
                blinds, message_ids,
            )
        if rows:
            await connection.execute("DELETE FROM console_person_cursor")
            await connection.execute("INSERT INTO console_person_cursor (ledger_index) VALUES ($1)", rows[-1]["ledger_index"])
        return len(rows)


async def keep_indexing(pool: Any, runtime: ConsoleRuntime, payload_keys: Any, every_seconds: float = 1.0) -> None:
    """Index new messages for ever, once a second (a period, not synchronisation)."""
    try:
        key = load_key(runtime)
    except (OSError, ValueError) as error:
        _log.warning("person_index_unavailable", error=type(error).__name__)
        return
    if key is None:
        return
    while True:
        try:
            while await index_new_messages(pool, key, payload_keys):
                pass
        except Exception as error:  # noqa: BLE001 - the next period tries again
            _log.warning("person_index_failed", error=type(error).__name__)
        await asyncio.sleep(every_seconds)


FORGET_CASES_SQL = (
    "DELETE FROM console_person_index i USING unnest($1::uuid[]) AS q(case_id),"
    " LATERAL (SELECT id FROM messages WHERE case_id = q.case_id ORDER BY case_id) m"
    " WHERE i.message_id = m.id"
    " AND (SELECT 1 FROM messages k WHERE k.case_id = q.case_id AND k.compact IS NOT NULL LIMIT 1) IS NULL"
)
"""The index rows of the cases ($1) that have no payload left. A case that still holds one keeps its rows: a data
subject's request finds the case through them (gateway/console/subjects.py). Each case is probed by `messages_case`,
its payload check a subquery with LIMIT (not NOT EXISTS, which the planner turns into an anti join that reads all of
`messages`; tests/store/test_plans.py)."""


async def _forget_queued(connection: Any) -> int:
    """Empty the queue of cases that purges touched (migration 0013); the index rows deleted. The caller holds the
    indexer's lock. Two statements, so that the usual empty queue costs one small one, and the delete is planned
    for the cases it is given (by `messages_case` and the index by message), never as a join of whole tables."""
    queued = await connection.fetch("DELETE FROM console_person_forget RETURNING case_id")
    cases = list({row["case_id"] for row in queued})
    if not cases:
        return 0
    status = await connection.execute(FORGET_CASES_SQL, cases)
    return int(status.split()[-1])


async def forget_purged(connection: Any) -> int:
    """Delete the person index's rows of cases whose payloads were all purged; how many rows. Takes the indexer's lock,
    in a transaction of the caller's or one of its own.

    The purge itself only queues the cases (gateway/hub/retention.py): it holds the ledger's lock and must not wait for
    an indexer. Holding the indexer's lock here means that an indexer which read a payload before its purge has
    committed its rows (the delete, a later statement, sees them), and one that starts later finds no payload to read.
    The indexer empties the queue too, at each run (`index_new_messages`).
    """
    async with connection.transaction():  # a savepoint inside the caller's transaction, else its own
        await connection.execute("SELECT pg_advisory_xact_lock($1)", _CURSOR_LOCK)
        return await _forget_queued(connection)


async def messages_of(executor: Any, blinded: bytes) -> list[str]:
    rows = await executor.fetch("SELECT message_id FROM console_person_index WHERE blind = $1 ORDER BY message_id", blinded)
    return [str(row["message_id"]) for row in rows]

