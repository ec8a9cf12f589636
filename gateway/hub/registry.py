"""The trust registry in PostgreSQL, mirrored in every process (DESIGN.md, "Keys and trust").

Every registered key is a row of `keys` (never deleted: a revoked or expired key stays,
so old messages still verify); `registry_version` counts changes. A change bumps the
version and NOTIFYs `gba_registry`; every process reloads, records the version it now
holds in `gateway_processes`, and NOTIFYs `gba_registry_ack`, so the command that made
the change can wait for every live process to hold it.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime

import asyncpg
import structlog

from gateway.ledger.append import LedgerAppender
from gateway.ledger.entries import LedgerEntry
from gateway.protocol.timestamps import format_timestamp
from gateway.protocol.trust import KeyRecord, TrustList

CHANGED = "gba_registry"
ACKNOWLEDGED = "gba_registry_ack"
APPLICATION_PREFIX = "gateway:"

_log = structlog.get_logger(__name__)


async def read_trust_list(executor: asyncpg.Connection | asyncpg.Pool, mode: str) -> tuple[int, TrustList] | None:
    """(version, trust list) as the database holds them; None while nothing is registered."""
    version = await executor.fetchval("SELECT version FROM registry_version")
    jurisdictions = await executor.fetch("SELECT code, names FROM jurisdictions ORDER BY code")
    keys = await executor.fetch(
        "SELECT kid, owner, use, alg, jwk, not_before, not_after, revoked_at, test_key FROM keys ORDER BY added_at, kid"
    )
    if not jurisdictions or not keys:
        return None
    document = {
        "v": 1,
        "issued": format_timestamp(await executor.fetchval("SELECT max(added_at) FROM keys")),
        "sequence": max(version, 1),
        "mode": mode,
        "jurisdictions": {row["code"]: {"name": json.loads(row["names"])} for row in jurisdictions},
        "keys": [_entry(row) for row in keys],
    }
    return version, TrustList.from_document(document)


def _entry(row: asyncpg.Record) -> dict:
    entry = {
        "kid": row["kid"],
        "owner": row["owner"],
        "use": row["use"],
        "alg": row["alg"],
        "jwk": json.loads(row["jwk"]),
        "not_before": format_timestamp(row["not_before"]),
        "not_after": format_timestamp(row["not_after"]),
        "status": "revoked" if row["revoked_at"] is not None else "active",
        "test_key": row["test_key"],
    }
    if row["revoked_at"] is not None:
        entry["revoked_at"] = format_timestamp(row["revoked_at"])
    return entry


async def import_trust_list(connection: asyncpg.Connection, appender: LedgerAppender, trust: TrustList, now: datetime) -> int:
    """Register the jurisdictions and the keys of `trust` that are new; ledger each; return how many keys were added."""
    for code, names in trust.names.items():
        await connection.execute(
            "INSERT INTO jurisdictions (code, names) VALUES ($1, $2) ON CONFLICT (code) DO NOTHING",
            code, json.dumps(dict(names), ensure_ascii=False),
        )
    added = 0
    for record in trust.keys.values():
        if await add_key(connection, appender, record, now):
            added += 1
    await appender.add(LedgerEntry("trust-list-imported", format_timestamp(now), {"sequence": trust.sequence, "keys_added": added}))
    await bump_version(connection)
    return added


async def add_key(connection: asyncpg.Connection, appender: LedgerAppender, record: KeyRecord, now: datetime) -> bool:
    """Register one key unless its kid is known; ledger it. Returns whether it was added."""
    inserted = await connection.fetchval(
        "INSERT INTO keys (kid, owner, use, alg, jwk, not_before, not_after, revoked_at, test_key)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (kid) DO NOTHING RETURNING true",
        record.kid, record.owner, record.use, record.public.alg,
        json.dumps(record.public.to_jwk(), sort_keys=True).encode(),
        record.not_before, record.not_after, record.revoked_at, record.test_key,
    )
    if inserted:
        await appender.add(
            LedgerEntry("key-added", format_timestamp(now), {"kid": record.kid, "owner": record.owner, "use": record.use, "alg": record.public.alg})
        )
    return bool(inserted)


async def bump_version(connection: asyncpg.Connection) -> int:
    version = await connection.fetchval("UPDATE registry_version SET version = version + 1 RETURNING version")
    await connection.execute(f"NOTIFY {CHANGED}, '{int(version)}'")
    return version


class Registry:
    """This process's copy of the trust registry, kept current by LISTEN/NOTIFY."""

    def __init__(self, pool: asyncpg.Pool, mode: str, process_id: str) -> None:
        self._pool = pool
        self._mode = mode
        self._process_id = process_id
        self._trust: TrustList | None = None
        self._version = -1
        self._listener: asyncpg.Connection | None = None
        self._reloads: set[asyncio.Task[None]] = set()

    def current(self) -> TrustList:
        if self._trust is None:
            raise RuntimeError("the registry is not loaded")
        return self._trust

    async def start(self) -> None:
        """Load the registry, then listen for changes on a dedicated connection."""
        self._listener = await self._pool.acquire()
        await self._listener.execute(
            "INSERT INTO gateway_processes (process_id) VALUES ($1) ON CONFLICT (process_id) DO NOTHING", self._process_id
        )
        await self._listener.add_listener(CHANGED, self._on_change)
        await self.reload()

    async def close(self) -> None:
        if self._listener is not None:
            await self._listener.remove_listener(CHANGED, self._on_change)
            await self._listener.execute("DELETE FROM gateway_processes WHERE process_id = $1", self._process_id)
            await self._pool.release(self._listener)
            self._listener = None

    async def reload(self) -> None:
        loaded = await read_trust_list(self._pool, self._mode)
        if loaded is None:
            raise RuntimeError("the trust registry is empty: import a trust list first")
        self._version, self._trust = loaded
        await self._pool.execute(
            "UPDATE gateway_processes SET registry_version = $2, seen_at = now() WHERE process_id = $1",
            self._process_id, self._version,
        )
        await self._pool.execute(f"NOTIFY {ACKNOWLEDGED}, '{self._process_id}'")
        _log.info("registry_loaded", version=self._version, keys=len(self._trust.keys))

    def _on_change(self, connection: asyncpg.Connection, pid: int, channel: str, payload: str) -> None:
        task = asyncio.get_running_loop().create_task(self.reload())
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)
