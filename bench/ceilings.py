"""Ceilings measured in the same run as a benchmark (issue 12): what the machine can do at best.

- Ed25519 signatures and verifications per second, in one process (best of five rounds), on a
  real message of the run (the verification reuses bench/accept.py `ed25519_verify_rate`);
- PostgreSQL `COPY` rows per second into a scratch table shaped like `messages` (same columns,
  constraints and indexes), rows like the ones the hub writes (a sealed ~3.3 KB payload), through
  asyncpg's `copy_records_to_table`: the database's own bulk-insert ceiling on this machine;
- the echo ceiling: the Python client stack of the simulators (aiohttp, keep-alive, https when the
  run uses TLS) against bench/accept.py's echo server, single messages or bulk bodies.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))

import accept  # noqa: E402  (bench/accept.py: the shared harness)

from gateway.keyfiles import read_private_key  # noqa: E402
from gateway.protocol import jws  # noqa: E402

COPY_TABLE = "bench_copy_ceiling"


def ed25519_sign_rate(compact: bytes, kid: str = accept.SENDER_KID, seconds: float = 2.0, rounds: int = 5) -> float:
    """Bare Ed25519 signatures of `compact`'s signing input per second, in this process (best round)."""
    parsed = jws.parse_compact(compact, "gba-case+jws")
    key = read_private_key(accept.KEYS / f"{kid}.key.jwk")
    return accept.best_rate(lambda: key.sign(parsed.signing_input), seconds, rounds)


def ed25519_verify_rate(compact: bytes, seconds: float = 2.0) -> float:
    return accept.ed25519_verify_rate(compact, seconds)


async def _copy_rate(dsn: str, compact: bytes, seconds: float) -> dict[str, Any]:
    import asyncpg

    connection = await asyncpg.connect(dsn, timeout=15)
    try:
        await connection.execute(f"DROP TABLE IF EXISTS {COPY_TABLE}")
        await connection.execute(f"CREATE TABLE {COPY_TABLE} (LIKE messages INCLUDING DEFAULTS INCLUDING CONSTRAINTS "
                                 f"INCLUDING INDEXES)")
        columns = [row["attname"] for row in await connection.fetch(
            "SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped "
            "ORDER BY attnum", COPY_TABLE)]
        sealed = secrets.token_bytes(12) + compact + secrets.token_bytes(16)
        now = datetime.now(timezone.utc)
        base = {
            "compact": sealed, "type": "verification.request", "sender": "CN-GD", "receiver": "HK",
            "kid": accept.SENDER_KID, "created": now, "accepted_at": now, "hub_receipt": secrets.token_bytes(300),
            "status": "accepted", "payload_key": "bench", "retention_days": 2555,
        }
        batch = 2000
        rows_done, next_index = 0, 0
        start = time.perf_counter()
        deadline = start + seconds
        while time.perf_counter() < deadline:
            records = []
            for _ in range(batch):
                identifier = uuid.uuid4()
                values = dict(base, id=identifier, digest=hashlib.sha256(identifier.bytes).digest(),
                              case_id=uuid.uuid4(), ledger_index=next_index)
                next_index += 1
                records.append(tuple(values.get(column) for column in columns))
            await connection.copy_records_to_table(COPY_TABLE, records=records, columns=columns)
            rows_done += batch
        elapsed = time.perf_counter() - start
        return {"copy_rows_per_s": round(rows_done / elapsed), "copy_rows": rows_done,
                "copy_row_bytes": len(sealed) + 300 + 200}
    finally:
        try:
            await connection.execute(f"DROP TABLE IF EXISTS {COPY_TABLE}")
        finally:
            await connection.close()


def postgres_copy_rate(dsn: str, compact: bytes, seconds: float = 3.0) -> dict[str, Any]:
    """COPY rows/s into a scratch copy of `messages` (dropped afterwards); batches of 2,000 rows, one connection.
    Includes building the rows in Python (about 5 µs each), as any client would."""
    return asyncio.run(_copy_rate(dsn, compact, seconds))


def echo_ceiling(url: str, bodies: Sequence[bytes], cafile: str | None, processes: int, connections: int,
                 seconds: float, bulk_lines: int = 0) -> dict[str, Any]:
    """The simulators' client stack (aiohttp, keep-alive) against the echo server at `url`.

    With `bulk_lines`, bodies of that many lines go to `/v1/messages/bulk` and the rate is in lines/s."""
    if bulk_lines:
        chunks = [b"\n".join(bodies[start:start + bulk_lines]) + b"\n" for start in range(0, len(bodies), bulk_lines)]
        result = accept.run_python_clients(url, chunks, processes, connections, seconds, True, cafile,
                                           path=accept.PATH + "/bulk", content_type="application/vnd.gba.jose-lines")
        lines_per_body = sum(chunk.count(b"\n") for chunk in chunks) / len(chunks)
        return {"echo_ceiling_per_s": round(result.accepted_per_s * lines_per_body, 1),
                "echo_requests_per_s": round(result.accepted_per_s, 1), "echo_p50_ms": round(result.p50_ms, 2),
                "echo_p99_ms": round(result.p99_ms, 2), "echo_errors": result.errors,
                "echo_detail": f"{processes} Python client process(es), {connections} connections, bulk bodies of "
                               f"{lines_per_body:.0f} lines; rate in lines/s"}
    result = accept.run_python_clients(url, bodies, processes, connections, seconds, True, cafile)
    return {"echo_ceiling_per_s": round(result.accepted_per_s, 1), "echo_requests_per_s": round(result.accepted_per_s, 1),
            "echo_p50_ms": round(result.p50_ms, 2), "echo_p99_ms": round(result.p99_ms, 2),
            "echo_errors": result.errors,
            "echo_detail": f"{processes} Python client process(es), {connections} connections, single messages"}


if __name__ == "__main__":  # a quick look: python bench/ceilings.py
    sample = accept.sign_messages(1)[0]
    print({"ed25519_sign_per_s": round(ed25519_sign_rate(sample)), "ed25519_verify_per_s": round(ed25519_verify_rate(sample)),
           "cpus": len(os.sched_getaffinity(0))})
