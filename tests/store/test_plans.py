"""Statements on the message path probe by key, whatever the planner's statistics say.

A new database's tables grow faster than autovacuum analyses them (at most once a minute), and
asyncpg's prepared statements settle on a generic plan after five runs. A statement written as a
plain join of a batch's keys with `messages` then read the whole table for every batch, while the
statistics still said it was small: a cost that grew with every message accepted
(docs/performance.md, "Fifteenth pass"). These tests ask for the generic plan on a new database,
whose tables were never analysed, and refuse a scan of a table that grows with the traffic (the
batch lookup, the person indexer's read of the next messages, its delete of purged cases' rows) and an anti join for the held-back check
(the claims).

What they do not cover: a plan made while a table really is a page or two (analysed then) scans
it, since that is cheapest then, and keeps doing so until autovacuum analyses the table again,
which for a table growing that fast is within a minute.
"""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from gateway.console.persons import FORGET_CASES_SQL, NEXT_MESSAGES_SQL
from gateway.hub.outbox import CLAIM_FOR_INBOX_SQL, CLAIM_FOR_PUSH_SQL
from gateway.hub.store import LOOK_UP_MANY_SQL
from gateway.store.migrate import migrate

GROWING = ("messages", "cases", "outbox", "ledger_entries", "console_person_index")
"""Tables that grow with every message: no statement of STATEMENTS may scan one whole."""

STATEMENTS = {
    "look_up_many": (LOOK_UP_MANY_SQL, ("uuid[]", "text[]", "uuid[]", "uuid[]")),
    "person_indexer_next_messages": (NEXT_MESSAGES_SQL, ("bigint", "text[]", "int")),
    "person_index_forget_cases": (FORGET_CASES_SQL, ("uuid[]",)),
}

CLAIMS = {
    "claim_for_inbox": (CLAIM_FOR_INBOX_SQL, ("timestamptz", "text", "text", "float8", "int", "text", "float8"), 3),
    "claim_for_push": (CLAIM_FOR_PUSH_SQL, ("timestamptz", "text[]", "text", "float8", "int", "text[]", "float8"), 1),
}
"""The claims, and how many times each asks whether a candidate is held back (PROTO-12.4-2)."""


def generic_plan(database_url: str, sql: str, types: tuple[str, ...]) -> list[str]:
    """The lines of `EXPLAIN` for the generic plan of `sql` on a freshly migrated database."""

    async def explain() -> list[str]:
        connection = await asyncpg.connect(database_url)
        try:
            await migrate(connection)
            await connection.execute("SET plan_cache_mode = force_generic_plan")
            await connection.execute(f"PREPARE probe ({', '.join(types)}) AS {sql}")
            nulls = ", ".join("NULL" for _ in types)
            return [row[0] for row in await connection.fetch(f"EXPLAIN EXECUTE probe ({nulls})")]
        finally:
            await connection.close()

    return asyncio.run(explain())


@pytest.mark.parametrize("name", sorted(STATEMENTS))
def test_a_statement_of_the_message_path_scans_no_growing_table(database_url, name):
    sql, types = STATEMENTS[name]
    plan = generic_plan(database_url, sql, types)
    scans = [line.strip() for line in plan for table in GROWING if f"Seq Scan on {table} " in line + " "]
    assert not scans, f"{name} scans a growing table whole:\n" + "\n".join(plan)
    assert any("Index Scan" in line or "Index Only Scan" in line for line in plan), "\n".join(plan)


@pytest.mark.parametrize("name", sorted(CLAIMS))
def test_a_claim_asks_whether_a_row_is_held_back_by_one_probe_of_the_case_order(database_url, name):
    """Each candidate row is checked by one probe of `outbox_case_order` (receiver, case, ledger index), never by a
    join that reads every queued row of the receiver for each candidate (quadratic in the queue's depth)."""
    sql, types, checks = CLAIMS[name]
    plan = generic_plan(database_url, sql, types)
    text = "\n".join(plan)
    assert "Anti Join" not in text, text
    probes = [line for line in plan if "Index Cond: ((receiver = c" in line and "case_id = c" in line and "ledger_index < c" in line]
    assert len(probes) == checks, text
