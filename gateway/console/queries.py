"""The console's SQL, in one place: what the pages read, always narrowed to what the officer may see.

An officer sees messages whose sender or receiver is one of its jurisdictions and ledger
entries whose parties (gateway/ledger/scope.py) include one of them; an auditor sees
everything. Scoping is done here, never in templates.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway.console.accounts import Officer
from gateway.ledger import scope
from gateway.protocol.timestamps import parse_timestamp

PAGE_SIZE = 50


def may_see_parties(officer: Officer, parties: set[str]) -> bool:
    if officer.is_auditor:
        return scope.may_see(scope.AUDITOR, parties)
    return any(scope.may_see(code, parties) for code in officer.jurisdictions)


def _message_scope(officer: Officer, args: list[Any]) -> str:
    """A WHERE clause part restricting `messages m` to the officer's jurisdictions (TRUE for an auditor)."""
    if officer.is_auditor:
        return "TRUE"
    args.append(list(officer.jurisdictions))
    return f"(m.sender = ANY(${len(args)}::text[]) OR m.receiver = ANY(${len(args)}::text[]))"


@dataclass(frozen=True, slots=True)
class SearchFilters:
    case: str | None = None
    message_id: str | None = None
    party: str | None = None
    type: str | None = None
    state: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    code: str | None = None
    page: int = 0


@dataclass(frozen=True, slots=True)
class MessageRow:
    id: str
    case: str
    type: str
    sender: str
    receiver: str
    status: str
    accepted_at: datetime
    ledger_index: int


@dataclass(frozen=True, slots=True)
class RefusalRow:
    index: int
    time: str
    sender: str
    code: str
    where: str | None


async def search_messages(executor: Any, officer: Officer, filters: SearchFilters, limit: int = PAGE_SIZE) -> list[MessageRow]:
    """Accepted messages matching every given filter, newest first, one page (limit + 1 rows tell whether more follow)."""
    args: list[Any] = []
    where = [_message_scope(officer, args)]
    for column, value in (("m.case_id", filters.case), ("m.id", filters.message_id)):
        if value:
            args.append(uuid.UUID(value))
            where.append(f"{column} = ${len(args)}")
    if filters.party:
        args.append(filters.party)
        where.append(f"(m.sender = ${len(args)} OR m.receiver = ${len(args)})")
    for column, value in (("m.type", filters.type), ("m.status", filters.state)):
        if value:
            args.append(value)
            where.append(f"{column} = ${len(args)}")
    if filters.since:
        args.append(filters.since)
        where.append(f"m.accepted_at >= ${len(args)}")
    if filters.until:
        args.append(filters.until)
        where.append(f"m.accepted_at < ${len(args)}")
    args += [limit + 1, filters.page * limit]
    rows = await executor.fetch(
        "SELECT m.id, m.case_id, m.type, m.sender, m.receiver, m.status, m.accepted_at, m.ledger_index FROM messages m"
        f" WHERE {' AND '.join(where)} ORDER BY m.accepted_at DESC, m.ledger_index DESC LIMIT ${len(args) - 1} OFFSET ${len(args)}",
        *args,
    )
    return [MessageRow(str(r["id"]), str(r["case_id"]), r["type"], r["sender"], r["receiver"], r["status"], r["accepted_at"], r["ledger_index"]) for r in rows]


async def search_refusals(executor: Any, officer: Officer, filters: SearchFilters, limit: int = PAGE_SIZE) -> list[RefusalRow]:
    """Ledgered refusals (no message is stored for them) by code and sender, newest first, one page.

    Entries are matched on their canonical bytes (`"kind":"refused"`), then parsed: a scan of
    the refusals, which stays small beside the accepted traffic.
    """
    rows = await executor.fetch(
        "SELECT idx, entry FROM ledger_entries WHERE position('\"kind\":\"refused\"'::bytea IN entry) > 0 ORDER BY idx DESC"
    )
    found = []
    for row in rows:
        entry = json.loads(row["entry"])
        if filters.code and entry.get("code") != filters.code:
            continue
        if filters.party and entry.get("from") != filters.party:
            continue
        at = parse_timestamp(entry["time"])
        if (filters.since and at < filters.since) or (filters.until and at >= filters.until):
            continue
        if not may_see_parties(officer, {entry.get("from")}):
            continue
        found.append(RefusalRow(row["idx"], entry["time"], entry["from"], entry["code"], entry.get("where")))
    return found[filters.page * limit : (filters.page + 1) * limit + 1]


@dataclass(frozen=True, slots=True)
class WitnessLag:
    name: str
    size: int
    lag: int
    """Entries of the latest checkpoint the witness has not cosigned yet."""
    last_error: str | None


@dataclass(frozen=True, slots=True)
class Dashboard:
    ledger_size: int
    checkpoint: Any
    cosigned_by: list[str]
    witnesses: list[WitnessLag]
    verification: Any
    by_route: list[tuple[str, str, str, str, int]]
    refusals: list[tuple[str, int]]
    dead_letters: int
    oldest_undelivered: datetime | None


async def dashboard(executor: Any, officer: Officer, origin: str) -> Dashboard:
    from gateway.ledger import checkpoints

    size = await executor.fetchval("SELECT size FROM ledger_size")
    latest = await checkpoints.latest_checkpoint(executor, origin)
    cosigned = [name for name, _ in await checkpoints.cosignatures(executor, origin, latest.size)] if latest else []
    args: list[Any] = []
    scoped = _message_scope(officer, args)
    by_route = await executor.fetch(
        f"SELECT m.sender, m.receiver, m.type, m.status, count(*) AS n FROM messages m WHERE {scoped}"
        " GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4",
        *args,
    )
    outbox = await executor.fetchrow(
        "SELECT count(*) FILTER (WHERE o.state = 'dead') AS dead, min(o.queued_at) FILTER (WHERE o.state = 'queued') AS oldest"
        f" FROM outbox o JOIN messages m ON m.id = o.message_id WHERE {scoped}",
        *args,
    )
    refusals = await search_refusals(executor, officer, SearchFilters(), limit=10**9)
    by_code = Counter(refusal.code for refusal in refusals)
    return Dashboard(
        ledger_size=size,
        checkpoint=latest,
        cosigned_by=cosigned,
        witnesses=[
            WitnessLag(w.witness, w.size, max((latest.size if latest else 0) - w.size, 0), w.last_error)
            for w in await checkpoints.witness_records(executor)
        ],
        verification=await checkpoints.latest_verification(executor),
        by_route=[(r["sender"], r["receiver"], r["type"], r["status"], r["n"]) for r in by_route],
        refusals=sorted(by_code.items()),
        dead_letters=outbox["dead"],
        oldest_undelivered=outbox["oldest"],
    )


@dataclass(frozen=True, slots=True)
class EntryRow:
    index: int
    entry: bytes
    fields: dict[str, Any]


async def visible_entries(executor: Any, officer: Officer, rows: Sequence[Any]) -> list[EntryRow]:
    parties = await scope.parties_of(executor, [row["entry"] for row in rows])
    return [
        EntryRow(row["idx"], bytes(row["entry"]), json.loads(row["entry"]))
        for row, who in zip(rows, parties)
        if may_see_parties(officer, who)
    ]


async def entry(executor: Any, officer: Officer, index: int) -> EntryRow | None:
    """Ledger entry `index` if the officer may see it (None otherwise: the same answer as for a missing one)."""
    rows = await executor.fetch("SELECT idx, entry FROM ledger_entries WHERE idx = $1", index)
    found = await visible_entries(executor, officer, rows)
    return found[0] if found else None


async def case_timeline(executor: Any, officer: Officer, case_id: str) -> list[EntryRow]:
    """Every ledger entry of the case the officer may see, in ledger order: its messages' acceptances, deliveries,
    receipts, dead letters and retries, and the case's own entries (withdrawn, cancelled, deadline passed)."""
    case = uuid.UUID(case_id)
    rows = await executor.fetch(
        "SELECT e.idx, e.entry FROM ledger_entries e WHERE e.message_id IN (SELECT id::text FROM messages WHERE case_id = $1)"
        " UNION SELECT e.idx, e.entry FROM ledger_entries e"
        " WHERE e.message_id IS NULL AND position(convert_to($2, 'UTF8') IN e.entry) > 0"
        " ORDER BY 1",
        case, f'"case":"{case}"',
    )
    return await visible_entries(executor, officer, rows)


async def message_for_officer(executor: Any, officer: Officer, message_id: str) -> Any:
    args: list[Any] = [uuid.UUID(message_id)]
    scoped = _message_scope(officer, args)
    return await executor.fetchrow(
        "SELECT m.id, m.case_id, m.type, m.sender, m.receiver, m.status, m.accepted_at, m.ledger_index,"
        f" m.receiver_receipt IS NOT NULL AS receipted FROM messages m WHERE m.id = $1 AND {scoped}",
        *args,
    )


async def recent_checkpoints(executor: Any, origin: str, limit: int = 50) -> list[Any]:
    return await executor.fetch(
        "SELECT c.size, c.root, c.signed_at, (SELECT count(*) FROM ledger_cosignatures s WHERE s.origin = c.origin AND s.size = c.size) AS cosignatures"
        " FROM ledger_checkpoints c WHERE c.origin = $1 ORDER BY c.size DESC LIMIT $2",
        origin, limit,
    )


async def checkpoint_covering(executor: Any, origin: str, index: int) -> Any:
    """The latest signed checkpoint whose tree holds entry `index`, or None."""
    from gateway.ledger import checkpoints

    latest = await checkpoints.latest_checkpoint(executor, origin)
    return latest if latest is not None and latest.size > index else None
