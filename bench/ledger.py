"""Ledger benchmark (issue 4): appends, proofs and verification on a real PostgreSQL.

One run does, in order:
  1. starts a database: the embedded PostgreSQL (fsync on) in a new temporary data
     directory, or a fresh database on the server of `--database-url` (dropped at the end);
  2. appends `--append-entries` realistic entries through `LedgerAppender` in batches of
     `--batch` (256), each batch its own transaction and COMMIT (durable: fsync and
     synchronous_commit as the server has them, reported): entries/s and batch latency;
  3. for each size of `--sizes` (default 10^3 and 10^5; `--big` adds 10^6), grows the
     ledger to exactly that size — in batches of 256 up to the append measurement, then
     bulk through the appender in batches of `--bulk-batch` — and measures
     `--proofs` inclusion proofs (random entries, against the head of that size) and as
     many consistency proofs (a random earlier head to that head): latency p50/p99 and
     the rows each read (bound: ceil(log2 n) + 1 and + 3); every proof is verified;
  4. runs the full verification of `gateway ledger verify` (gateway.ledger.verify) on the
     final ledger, once right after the bulk load (`first_read_*`: the first reader of
     fresh rows sets their hint bits) and once after VACUUM (ANALYZE), as a settled
     ledger is verified: entries/s (the target applies to the settled run).

Prints one JSON object with stable keys (`append`, `bulk_append`, `proofs`, `verify`,
`database`, `machine`, `targets`, `problems`) and exits 0, or 1 when a target is missed
or a proof fails (`problems`).

    .venv/bin/python bench/ledger.py [--big] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import random
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402

from gateway.ledger import merkle  # noqa: E402
from gateway.ledger.append import LedgerAppender  # noqa: E402
from gateway.ledger.entries import LedgerEntry  # noqa: E402
from gateway.ledger.tree import consistency_proof, inclusion_proof  # noqa: E402
from gateway.ledger.verify import verify_ledger  # noqa: E402
from gateway.store.database import with_database_name  # noqa: E402
from gateway.store.embedded import ensure_embedded_server, stop_embedded_server  # noqa: E402
from gateway.store.migrate import migrate  # noqa: E402

TARGETS = {"append_entries_per_s": 10_000, "proof_p99_ms": 5.0, "verify_entries_per_s": 100_000}


def entry(number: int) -> LedgerEntry:
    """An `accepted` entry as the hub writes it (ids and digests vary)."""
    return LedgerEntry("accepted", f"2026-11-28T12:{number // 60 % 60:02d}:{number % 60:02d}Z", {
        "message_id": f"0190f5c4-{number >> 16 & 0xFFFF:04x}-7{number >> 4 & 0xFFF:03x}-8{number & 0xF:03x}-{number:012x}",
        "message_digest": "sha-256:" + secrets.token_hex(32),
        "type": "referral.submit", "from": "CN-GD", "to": "HK",
        "case": f"0190f5c4-0000-7000-8000-{number:012x}", "kid": "test-cn-gd-message-1",
    })


async def append_batch(connection: asyncpg.Connection, entries: list[LedgerEntry]) -> None:
    """One transaction: reserve, add each entry (canonical bytes, leaf hash), finish (the tree), COMMIT."""
    async with connection.transaction():
        appender = LedgerAppender(connection)
        await appender.reserve()
        for item in entries:
            await appender.add(item)
        await appender.finish()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


class Ledger:
    """The growing ledger of the run, and its figures."""

    def __init__(self, connection: asyncpg.Connection, batch: int, bulk_batch: int) -> None:
        self.db = connection
        self.batch = batch
        self.bulk_batch = bulk_batch
        self.size = 0
        self.batch_seconds: list[float] = []
        self.bulk_entries = 0
        self.bulk_seconds = 0.0

    async def grow(self, target: int, bulk: bool) -> None:
        while self.size < target:
            count = min(self.bulk_batch if bulk else self.batch, target - self.size)
            entries = [entry(self.size + offset) for offset in range(count)]  # made by the caller, as the hub does
            started = time.perf_counter()
            await append_batch(self.db, entries)
            elapsed = time.perf_counter() - started
            if bulk:
                self.bulk_entries += count
                self.bulk_seconds += elapsed
            elif count == self.batch:
                self.batch_seconds.append(elapsed)
            self.size += count


async def measure_proofs(connection: asyncpg.Connection, size: int, count: int, problems: list[str]) -> dict[str, Any]:
    chooser = random.Random(size)
    entries = {}
    indexes = [chooser.randrange(size) for _ in range(count)]
    for row in await connection.fetch("SELECT idx, entry FROM ledger_entries WHERE idx = ANY($1::bigint[])", indexes):
        entries[row["idx"]] = row["entry"]
    latencies, rows = [], []
    for index in indexes:
        started = time.perf_counter()
        proof = await inclusion_proof(connection, index, size)
        latencies.append((time.perf_counter() - started) * 1000)
        rows.append(proof.rows_read)
        try:
            merkle.verify_inclusion(merkle.leaf_hash(entries[index]), index, size, proof.hashes, proof.root)
        except merkle.ProofError as error:
            problems.append(f"inclusion proof of {index} in {size} failed: {error}")
    heads = [row["size"] for row in await connection.fetch("SELECT size FROM ledger_heads WHERE size <= $1", size)]
    c_latencies, c_rows = [], []
    for _ in range(count):
        old = chooser.choice(heads)
        started = time.perf_counter()
        proof = await consistency_proof(connection, old, size)
        c_latencies.append((time.perf_counter() - started) * 1000)
        c_rows.append(proof.rows_read)
        try:
            merkle.verify_consistency(old, size, proof.hashes, proof.root1, proof.root2)
        except merkle.ProofError as error:
            problems.append(f"consistency proof {old} -> {size} failed: {error}")
    bound = math.ceil(math.log2(size))
    if max(rows) > bound + 2:
        problems.append(f"an inclusion proof at size {size} read {max(rows)} rows, bound {bound + 2}")
    return {
        "size": size,
        "inclusion": {
            "count": count, "p50_ms": round(percentile(latencies, 0.5), 3), "p99_ms": round(percentile(latencies, 0.99), 3),
            "rows_mean": round(statistics.fmean(rows), 2), "rows_max": max(rows), "rows_bound": bound + 1,
        },
        "consistency": {
            "count": count, "p50_ms": round(percentile(c_latencies, 0.5), 3),
            "p99_ms": round(percentile(c_latencies, 0.99), 3),
            "rows_mean": round(statistics.fmean(c_rows), 2), "rows_max": max(c_rows), "rows_bound": bound + 3,
        },
    }


async def run(arguments: argparse.Namespace, dsn: str, embedded: bool) -> dict[str, Any]:
    problems: list[str] = []
    connection = await asyncpg.connect(dsn)
    try:
        await migrate(connection)
        database = {
            "embedded": embedded,
            "server_version": await connection.fetchval("SHOW server_version"),
            "fsync": await connection.fetchval("SHOW fsync"),
            "synchronous_commit": await connection.fetchval("SHOW synchronous_commit"),
        }
        ledger = Ledger(connection, arguments.batch, arguments.bulk_batch)
        sizes = sorted(set(arguments.sizes + ([10**6] if arguments.big else [])))
        proofs: dict[str, Any] = {}
        append_done = False
        for size in sizes:
            if not append_done and size >= arguments.append_entries:
                await ledger.grow(arguments.append_entries, bulk=False)
                append_done = True
            await ledger.grow(size, bulk=append_done)
            proofs[str(size)] = await measure_proofs(connection, size, arguments.proofs, problems)
        if not append_done:
            await ledger.grow(max(ledger.size, arguments.append_entries), bulk=False)
        batches = ledger.batch_seconds
        append = {
            "batch_size": arguments.batch,
            "batches": len(batches),
            "entries": len(batches) * arguments.batch,
            "seconds": round(sum(batches), 3),
            "entries_per_s": round(len(batches) * arguments.batch / sum(batches)),
            "batch_p50_ms": round(percentile(batches, 0.5) * 1000, 2),
            "batch_p99_ms": round(percentile(batches, 0.99) * 1000, 2),
        }
        bulk = {
            "batch_size": arguments.bulk_batch,
            "entries": ledger.bulk_entries,
            "seconds": round(ledger.bulk_seconds, 3),
            "entries_per_s": round(ledger.bulk_entries / ledger.bulk_seconds) if ledger.bulk_seconds else None,
        }
        # First right after the bulk load: the first reader of fresh rows sets their hint
        # bits (WAL-logged, with data checksums on). Then as a settled ledger is verified,
        # after the VACUUM that autovacuum would have run.
        first_read = await verify_ledger(connection)
        await connection.execute("VACUUM (ANALYZE) ledger_entries, ledger_nodes, ledger_heads, ledger_edges")
        report = await verify_ledger(connection)
        verify = {
            "entries": report.size,
            "heads": report.heads_checked,
            "nodes": report.nodes_checked,
            "seconds": round(report.seconds, 3),
            "entries_per_s": round(report.size / report.seconds),
            "first_read_seconds": round(first_read.seconds, 3),
            "first_read_entries_per_s": round(first_read.size / first_read.seconds),
            "intact": report.intact and first_read.intact,
        }
        if not verify["intact"]:
            problems.append(f"verification found {(report.findings or first_read.findings)[0].message}")
    finally:
        await connection.close()
    if append["entries_per_s"] < TARGETS["append_entries_per_s"]:
        problems.append(f"appends: {append['entries_per_s']} entries/s < {TARGETS['append_entries_per_s']}")
    for size, figures in proofs.items():
        for kind in ("inclusion", "consistency"):
            if figures[kind]["p99_ms"] >= TARGETS["proof_p99_ms"]:
                problems.append(f"{kind} proofs at {size}: p99 {figures[kind]['p99_ms']} ms >= {TARGETS['proof_p99_ms']}")
    if verify["entries_per_s"] < TARGETS["verify_entries_per_s"]:
        problems.append(f"verify: {verify['entries_per_s']} entries/s < {TARGETS['verify_entries_per_s']}")
    return {
        "append": append, "bulk_append": bulk, "proofs": proofs, "verify": verify,
        "database": database, "machine": machine(), "targets": TARGETS, "problems": problems,
    }


def machine() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    return {"cpu": model, "cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}


@contextlib.contextmanager
def database(url: str | None) -> Iterator[tuple[str, bool]]:
    """A fresh database: on the server of `url`, or on a new embedded server (fsync on)."""
    if url:
        name = "gba_bench_" + secrets.token_hex(4)

        async def execute(statement: str) -> None:
            connection = await asyncpg.connect(url)
            try:
                await connection.execute(statement)
            finally:
                await connection.close()

        asyncio.run(execute(f'CREATE DATABASE "{name}"'))
        try:
            yield with_database_name(url, name), False
        finally:
            asyncio.run(execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        return
    folder = Path(tempfile.mkdtemp(prefix="gba-bench-ledger-"))
    try:
        server = ensure_embedded_server(folder / "data")
        try:
            yield server.dsn, True
        finally:
            stop_embedded_server(folder / "data")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="a server to create a fresh database on (default: an embedded server)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 100_000], help="ledger sizes to measure proofs at")
    parser.add_argument("--big", action="store_true", help="also measure at 10^6 entries")
    parser.add_argument("--batch", type=int, default=256, help="entries per appended batch (transaction)")
    parser.add_argument("--append-entries", type=int, default=25_600, help="entries appended in batches of --batch, measured")
    parser.add_argument("--bulk-batch", type=int, default=20_000, help="entries per transaction when growing the ledger")
    parser.add_argument("--proofs", type=int, default=1_000, help="proofs of each kind measured at each size")
    arguments = parser.parse_args()
    with database(arguments.database_url) as (dsn, embedded):
        result = asyncio.run(run(arguments, dsn, embedded))
    print(json.dumps(result, indent=2, sort_keys=True))
    return 1 if result["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
