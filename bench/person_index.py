"""What migration 0013's index on `console_person_index (message_id)` costs the person indexer's insert.

Retention deletes a purged case's rows of the person index by message (docs/console.md, "Find by person"), which
needs a second B-tree beside the primary key (blind, message_id). The indexer writes a row for every identity
document of every `referral.submit` and `verification.request`, so each of those rows now pays one more index
insert. This measures it directly, on the real table's shape:

  1. a fresh database (the embedded PostgreSQL, fsync on, or one on `--database-url`), migrated;
  2. two scratch tables `LIKE console_person_index INCLUDING ALL`, one without the message index;
  3. `--batches` batches of 1,500 rows (the indexer's 500 messages naming three persons each: blind values random,
     message ids time-ordered like UUIDv7), each inserted into both tables by the indexer's own statement, one
     transaction each, the order of the two tables alternating; the first tenth is not counted (warm-up).

Prints one JSON object: microseconds a row with and without the index (medians of the batches), the difference,
and the tables' sizes. `docs/performance.md`, "Nineteenth pass", has the figures.

    .venv/bin/python bench/person_index.py [--batches 200] [--database-url URL] [--json-out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import asyncpg  # noqa: E402
import ledger  # noqa: E402  (bench/ledger.py: a fresh database, embedded or on a server)

from gateway.store.migrate import migrate  # noqa: E402

ROWS = 1_500
"""Rows a batch: the indexer reads 500 messages at a time (persons.index_new_messages), three persons each."""
TABLES = {"with_index": "bench_person_index_with", "without_index": "bench_person_index_without"}
INSERT_SQL = "INSERT INTO {} (blind, message_id) SELECT * FROM unnest($1::bytea[], $2::uuid[]) ON CONFLICT DO NOTHING"
"""The indexer's statement (gateway/console/persons.py), on a scratch table."""


def uuid7(milliseconds: int, sequence: int) -> uuid.UUID:
    """A UUIDv7 for `milliseconds` (RFC 9562): ids that grow with time, as the hub's do."""
    value = (milliseconds << 80) | (0x7 << 76) | ((sequence & 0xFFF) << 64) | (0b10 << 62) | (secrets.randbits(62))
    return uuid.UUID(int=value)


async def run(dsn: str, batches: int) -> dict[str, Any]:
    connection = await asyncpg.connect(dsn)
    try:
        await migrate(connection)
        for table in TABLES.values():
            await connection.execute(f"CREATE TABLE {table} (LIKE console_person_index INCLUDING ALL)")
        indexes = await connection.fetch("SELECT indexname FROM pg_indexes WHERE tablename = $1 AND indexdef LIKE '%(message_id)'",
                                         TABLES["without_index"])
        assert len(indexes) == 1, "console_person_index has its message index (migration 0013)"
        await connection.execute(f'DROP INDEX "{indexes[0]["indexname"]}"')
        seconds: dict[str, list[float]] = {name: [] for name in TABLES}
        start = int(time.time() * 1000)
        for batch in range(batches):
            ids = [uuid7(start + batch, message) for message in range(ROWS // 3) for _ in range(3)]
            blinds = [secrets.token_bytes(32) for _ in range(ROWS)]
            order = list(TABLES) if batch % 2 == 0 else list(reversed(TABLES))
            for name in order:
                began = time.perf_counter()
                async with connection.transaction():
                    await connection.execute(INSERT_SQL.format(TABLES[name]), blinds, ids)
                seconds[name].append(time.perf_counter() - began)
        counted = {name: values[batches // 10:] for name, values in seconds.items()}
        # Rounded first, so that the difference printed is the difference of the figures printed.
        per_row = {name: round(statistics.median(values) / ROWS * 1e6, 3) for name, values in counted.items()}
        sizes = {name: await connection.fetchval("SELECT pg_total_relation_size($1::regclass)", table) for name, table in TABLES.items()}
        server = await connection.fetchval("SHOW server_version")
    finally:
        await connection.close()
    return {
        "rows": batches * ROWS,
        "batches_counted": batches - batches // 10,
        "us_per_row": per_row,
        "extra_us_per_row": round(per_row["with_index"] - per_row["without_index"], 3),
        "extra_ratio": round(per_row["with_index"] / per_row["without_index"] - 1, 4),
        "table_bytes": sizes,
        "postgresql": server,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=200, help=f"batches of {ROWS} rows inserted into each table")
    parser.add_argument("--database-url", help="a server to create a fresh database on (default: an embedded server)")
    parser.add_argument("--json-out", type=Path, help="also write the JSON result to this file")
    arguments = parser.parse_args()
    if arguments.batches < 2:
        parser.error("--batches must be at least 2")
    with ledger.database(arguments.database_url) as (dsn, embedded):
        result = asyncio.run(run(dsn, arguments.batches))
    result.update(embedded=embedded, machine=ledger.machine())
    text = json.dumps(result, indent=2, sort_keys=True)
    print(text)
    if arguments.json_out:
        arguments.json_out.write_text(text + "\n", "utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
