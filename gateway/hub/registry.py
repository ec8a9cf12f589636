"""The trust registry in PostgreSQL, mirrored in every process (DESIGN.md, "Keys and trust").

Every registered key is a row of `keys` (never deleted: a revoked or expired key stays,
so old messages still verify, PROTO-10.3-5); `registry_version` counts changes. A
change runs in one transaction (`apply_change`): it locks the ledger's size row and the
`keys` table, changes rows, appends its ledger entry, bumps the version and NOTIFYs
`gba_registry`, so the notification goes out at commit. Every process then reloads,
records the version it now holds in `gateway_processes`, and NOTIFYs `gba_registry_ack`;
`wait_for_acknowledgements` waits until every live process holds the new version.

A proposed change is checked by building the trust-list document the registry would
then hold and parsing it with `TrustList.from_document`: the rules of
docs/protocol.md §10.1-§10.3 and §10.5 live there, once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

import asyncpg
import structlog

from gateway.ledger.append import LedgerAppender
from gateway.ledger.entries import EntryKind, LedgerEntry
from gateway.protocol.errors import ProtocolError
from gateway.protocol.timestamps import format_timestamp
from gateway.protocol.trust import KeyRecord, TrustList

CHANGED = "gba_registry"
ACKNOWLEDGED = "gba_registry_ack"
APPLICATION_PREFIX = "gateway:"
"""Every gateway process names its connections `gateway:<process id>` (application_name)."""
ROTATION_OVERLAP = timedelta(days=7)
"""Old and new key are both valid this long after the new key's not_before (PROTO-10.4-6)."""
EXPIRY_WARNING = timedelta(days=30)

T = TypeVar("T")

_log = structlog.get_logger(__name__)
_KEY_POINTER = re.compile(r"/keys/(\d+)")
_KEY_COLUMNS = "kid, owner, use, alg, jwk, not_before, not_after, revoked_at, test_key"


class RegistryError(ValueError):
    """A registry change refused for a reason the protocol's catalogue does not name (an unknown kid, a second revocation...)."""


# --- Reading -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RegisteredKey:
    """One row of `keys`, for people (`gateway keys list`)."""

    kid: str
    owner: str
    use: str
    alg: str
    not_before: datetime
    not_after: datetime
    revoked_at: datetime | None
    test_key: bool

    def status_at(self, now: datetime) -> str:
        """"revoked", "expired", "not yet valid" or "active" at `now` (PROTO-10.4-2..4, in that order)."""
        if self.revoked_at is not None and self.revoked_at <= now:
            return "revoked"
        if self.not_before > now:
            return "not yet valid"
        if self.not_after <= now:
            return "expired"
        return "active"


async def read_trust_list(executor: asyncpg.Connection | asyncpg.Pool, mode: str) -> tuple[int, TrustList] | None:
    """(version, trust list) as the database holds them, read from one snapshot; None while nothing is registered."""
    if isinstance(executor, asyncpg.Pool):
        async with executor.acquire() as connection:
            return await read_trust_list(connection, mode)
    if executor.is_in_transaction():
        loaded = await _read_document(executor, mode)
    else:
        async with executor.transaction(isolation="repeatable_read", readonly=True):
            loaded = await _read_document(executor, mode)
    if loaded is None:
        return None
    version, document = loaded
    return version, TrustList.from_document(document)


async def list_keys(connection: asyncpg.Connection) -> tuple[int, list[RegisteredKey]]:
    """The registry's version and every key ever registered, oldest first."""
    async with connection.transaction(isolation="repeatable_read", readonly=True):
        version = await connection.fetchval("SELECT version FROM registry_version")
        rows = await connection.fetch(f"SELECT {_KEY_COLUMNS} FROM keys ORDER BY added_at, kid")
    return version, [
        RegisteredKey(row["kid"], row["owner"], row["use"], row["alg"], row["not_before"], row["not_after"],
                      row["revoked_at"], row["test_key"])
        for row in rows
    ]


def expiring_soon(keys: Iterable[RegisteredKey], now: datetime, within: timedelta = EXPIRY_WARNING) -> list[RegisteredKey]:
    """Keys active at `now` that reach not_after within `within` (PROTO-10.3-6: alert well before not_after)."""
    return [key for key in keys if key.status_at(now) == "active" and key.not_after - now <= within]


def successor_of(key: RegisteredKey, keys: Iterable[RegisteredKey]) -> RegisteredKey | None:
    """The unrevoked key of the same owner and use that stays valid longest after `key`, if any."""
    later = [
        other for other in keys
        if other.owner == key.owner and other.use == key.use and other.revoked_at is None and other.not_after > key.not_after
    ]
    return max(later, key=lambda other: other.not_after, default=None)


async def _read_document(connection: asyncpg.Connection, mode: str) -> tuple[int, dict[str, Any]] | None:
    """The registry as a trust-list document (§10.3) of `mode`; None while it holds no key."""
    version = await connection.fetchval("SELECT version FROM registry_version")
    jurisdictions = await connection.fetch("SELECT code, names FROM jurisdictions ORDER BY code")
    keys = await connection.fetch(f"SELECT {_KEY_COLUMNS}, added_at FROM keys ORDER BY added_at, kid")
    if not jurisdictions or not keys:
        return None
    return version, {
        "v": 1,
        "issued": format_timestamp(max(row["added_at"] for row in keys)),
        "sequence": max(version, 1),
        "mode": mode,
        "jurisdictions": {row["code"]: {"name": json.loads(row["names"])} for row in jurisdictions},
        "keys": [_entry(row) for row in keys],
    }


def _entry(row: asyncpg.Record) -> dict[str, Any]:
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


# --- Checking a proposed registry ------------------------------------------------------


def check_proposal(document: Mapping[str, Any]) -> TrustList:
    """The registry `document` would become, checked as a trust list (PROTO-10.1-x to 10.3-x, 10.5-1).

    A refusal pointing into `/keys/N` gets a note naming that key, since N is the
    reader's registry order, not something they wrote.
    """
    try:
        return TrustList.from_document(document)
    except ProtocolError as refusal:
        match = _KEY_POINTER.match(refusal.where or "")
        keys = document.get("keys") if isinstance(document, Mapping) else None
        if match and isinstance(keys, list) and int(match.group(1)) < len(keys):
            kid = keys[int(match.group(1))].get("kid") if isinstance(keys[int(match.group(1))], Mapping) else None
            refusal.add_note(f"/keys/{match.group(1)} is the entry of kid {kid!r}")
        raise


async def _proposal_base(connection: asyncpg.Connection, mode: str) -> dict[str, Any]:
    loaded = await _read_document(connection, mode)
    if loaded is None:
        raise RegistryError("the key registry is empty: import a trust list first (gateway keys import --trust-list FILE)")
    return loaded[1]


def _with_keys(document: Mapping[str, Any], entries: Iterable[Any]) -> dict[str, Any]:
    return {**document, "keys": [*document["keys"], *entries]}


def _with_not_after(document: Mapping[str, Any], kid: str, not_after: datetime) -> dict[str, Any]:
    keys = [dict(entry, not_after=format_timestamp(not_after)) if entry["kid"] == kid else entry for entry in document["keys"]]
    return {**document, "keys": keys}


def _merged(document: Mapping[str, Any] | None, imported: TrustList, mode: str) -> dict[str, Any]:
    """The registry after importing `imported`: registered jurisdictions and keys stay as they are,
    and keys already registered with the same owner, use and JWK are not listed twice."""
    if document is None:
        return {**imported.to_document(), "mode": mode}
    registered = {entry["kid"]: entry for entry in document["keys"]}
    fresh = [
        record.to_document() for record in imported.keys.values()
        if not _same_key(registered.get(record.kid), record)
    ]
    jurisdictions = {code: {"name": dict(names)} for code, names in imported.names.items()}
    return {**document, "jurisdictions": {**jurisdictions, **document["jurisdictions"]}, "keys": [*document["keys"], *fresh]}


def _same_key(entry: Mapping[str, Any] | None, record: KeyRecord) -> bool:
    return (
        entry is not None and entry["owner"] == record.owner and entry["use"] == record.use
        and entry["jwk"] == record.public.to_jwk()
    )


# --- Changing the registry (inside `apply_change`'s transaction) ------------------------


class ModeConflict(RegistryError):
    """The registry was recorded in one mode and is used in the other."""


async def settle_mode(connection: asyncpg.Connection, stated: str | None, record: bool = True) -> str:
    """The registry's mode: the one the database records; else `stated`, recorded now (if `record`); else, when
    nothing is stated, test if the registry is empty or holds a test key (a production registry holds none).

    A production registry holds no test key and is published as a production list (PROTO-10.5-1, -2), so a
    database serves one mode for its life: a stated mode other than the recorded one is refused (ModeConflict),
    as is production for a registry holding test keys, and a change that states no mode on a registry that
    records none and holds no test key (a database from before migration 0012: it may be a production one).
    Record in the transaction that changes the registry, or once the registry has loaded: a change or start
    that fails must not leave its mode behind.
    """
    recorded = await connection.fetchval("SELECT mode FROM registry_version")
    if recorded is None:
        holds_test_keys = await connection.fetchval("SELECT EXISTS (SELECT 1 FROM keys WHERE test_key)")
        if stated is None:
            if holds_test_keys or not await connection.fetchval("SELECT EXISTS (SELECT 1 FROM keys)"):
                return "test"
            raise ModeConflict(
                "this database's key registry records no mode yet (it is older than the gateway's migration 0012) "
                "and holds no test key, so it may be a production registry: give --config with the gateway's "
                "configuration, or --mode"
            )
        if stated == "production" and holds_test_keys:
            raise ModeConflict("this database's key registry holds test keys, so it is a test registry, and this is "
                               "a production gateway: use a database of its own for production mode")
        if not record:
            return stated
        # Another process may have recorded a mode since the read above (this UPDATE waits for its transaction):
        # what counts is what the row holds once this one has had its turn.
        await connection.execute("UPDATE registry_version SET mode = $1 WHERE mode IS NULL", stated)
        recorded = await connection.fetchval("SELECT mode FROM registry_version")
    if stated is not None and recorded != stated:
        raise ModeConflict(
            f"this database's key registry is a {recorded} registry, and this is a {stated} gateway: a database "
            f"serves one mode for its life. Use a database of its own for {stated} mode (a new --data-dir or "
            f"database), or the configuration that belongs to this one. (The mode was recorded by the first gateway "
            f"start or `gateway keys` change that stated one, in registry_version.mode.)"
        )
    return recorded


async def apply_change(
    connection: asyncpg.Connection, change: Callable[[asyncpg.Connection, LedgerAppender], Awaitable[T]]
) -> tuple[int, T]:
    """Run `change` in one transaction that also ledgers it and bumps the registry version; return (new version, result).

    Locks in the order the hub's group commit takes them (ledger size row, then `keys`),
    so a change never deadlocks with the hub's first trust-list import. EXCLUSIVE mode
    lets readers (every process reloading) through and serialises writers.
    """
    async with connection.transaction():
        appender = LedgerAppender(connection)
        await appender.reserve()
        await connection.execute("LOCK TABLE keys IN EXCLUSIVE MODE")
        result = await change(connection, appender)
        await appender.finish()
        version = await bump_version(connection)
    return version, result


async def import_trust_list(connection: asyncpg.Connection, appender: LedgerAppender, trust: TrustList, now: datetime) -> int:
    """Register the jurisdictions and the keys of `trust` that are new; ledger each; bump the version.

    The hub's first start uses it on an empty registry; return how many keys were added.
    """
    added = await _register(connection, appender, trust.names, trust.keys.values(), trust.sequence, now)
    # The registry's published list must supersede the imported one for receivers anchored on
    # it (PROTO-10.3-3 refuses the same sequence with other contents), so it counts on from it.
    await bump_version(connection, at_least=trust.sequence + 1)
    return added


@dataclass(frozen=True, slots=True)
class Imported:
    keys_added: tuple[str, ...]
    jurisdictions_added: tuple[str, ...]


async def import_new_entries(
    connection: asyncpg.Connection, appender: LedgerAppender, imported: TrustList, mode: str, now: datetime
) -> Imported:
    """Register what `imported` adds to the registry (new jurisdictions, new keys), checked as a whole first.

    A kid registered with another owner, use or JWK is refused (`kid-duplicate`): keys change
    through rotation and revocation, never by import.
    """
    before = await _read_document(connection, mode)
    proposed = check_proposal(_merged(before[1] if before else None, imported, mode))
    registered = {entry["kid"] for entry in before[1]["keys"]} if before else set()
    known_codes = set(before[1]["jurisdictions"]) if before else set()
    new_names = {code: names for code, names in proposed.names.items() if code not in known_codes}
    new_keys = [record for kid, record in proposed.keys.items() if kid not in registered]
    await _register(connection, appender, new_names, new_keys, imported.sequence, now)
    # As at the first start (`import_trust_list`): the list published next must supersede the imported one for
    # a receiver anchored on it (PROTO-10.3-3, -4); `apply_change` counts one on from here.
    await connection.execute("UPDATE registry_version SET version = GREATEST(version, $1)", imported.sequence)
    return Imported(tuple(record.kid for record in new_keys), tuple(new_names))


async def add_key_entry(
    connection: asyncpg.Connection, appender: LedgerAppender, entry: Any, mode: str, now: datetime
) -> KeyRecord:
    """Register one trust-list key entry (§10.3), checked together with the registry; ledger `key-added`."""
    proposed = check_proposal(_with_keys(await _proposal_base(connection, mode), [entry]))
    record = proposed.keys[entry["kid"]]
    await add_key(connection, appender, record, now)
    return record


async def add_key(connection: asyncpg.Connection, appender: LedgerAppender, record: KeyRecord, now: datetime) -> bool:
    """Register one key unless its kid is known; ledger it. Returns whether it was added."""
    inserted = await connection.fetchval(
        f"INSERT INTO keys ({_KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        " ON CONFLICT (kid) DO NOTHING RETURNING true",
        record.kid, record.owner, record.use, record.public.alg,
        json.dumps(record.public.to_jwk(), sort_keys=True).encode(),
        record.not_before, record.not_after, record.revoked_at, record.test_key,
    )
    if inserted:
        await appender.add(_key_entry("key-added", record, now))
    return bool(inserted)


@dataclass(frozen=True, slots=True)
class Rotation:
    retired: KeyRecord
    """The old key, with the not_after it now has."""
    successor: KeyRecord


async def rotate_key(
    connection: asyncpg.Connection, appender: LedgerAppender, old_kid: str, entry: Any,
    retire_at: datetime | None, mode: str, now: datetime,
) -> Rotation:
    """Register `entry` as the successor of `old_kid` and end the old key's validity at `retire_at`
    (default: the new key's not_before plus 7 days, PROTO-10.4-6); ledger `key-rotated`.

    The old key stays registered, so what it signed before still verifies (PROTO-10.3-5).
    A rotation never extends the old key's validity, nor ends it in the past.
    """
    base = await _proposal_base(connection, mode)
    with_successor = check_proposal(_with_keys(base, [entry]))
    old, new = with_successor.keys.get(old_kid), with_successor.keys[entry["kid"]]
    _check_rotation(old_kid, old, new)
    retirement = _retirement(old, new, retire_at, now)
    proposed = check_proposal(_with_keys(_with_not_after(base, old_kid, retirement), [entry]))
    await connection.execute(
        f"INSERT INTO keys ({_KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        new.kid, new.owner, new.use, new.public.alg, json.dumps(new.public.to_jwk(), sort_keys=True).encode(),
        new.not_before, new.not_after, new.revoked_at, new.test_key,
    )
    await connection.execute("UPDATE keys SET not_after = $2 WHERE kid = $1", old_kid, retirement)
    fields = {"replaces": old_kid, "replaced_not_after": format_timestamp(retirement)}
    await appender.add(_key_entry("key-rotated", new, now, **fields))
    return Rotation(proposed.keys[old_kid], new)


def _check_rotation(old_kid: str, old: KeyRecord | None, new: KeyRecord) -> None:
    if old is None:
        raise RegistryError(f"no key {old_kid!r} is registered")
    if old.revoked_at is not None:
        raise RegistryError(f"key {old_kid!r} is revoked; register its successor with `gateway keys add`")
    if (new.owner, new.use) != (old.owner, old.use):
        raise RegistryError(
            f"a successor serves its predecessor's owner and use ({old.owner}, {old.use}), not ({new.owner}, {new.use})"
        )


def _retirement(old: KeyRecord, new: KeyRecord, requested: datetime | None, now: datetime) -> datetime:
    """When the old key stops being valid: requested, or the overlap's end; never later than it was."""
    retirement = requested or new.not_before + ROTATION_OVERLAP
    if retirement < now:
        raise RegistryError(
            f"--retire-at {format_timestamp(retirement)} is in the past: messages accepted since would no longer verify; "
            "to disown signatures after a compromise use `gateway keys revoke KID --at TIME`"
        )
    return min(retirement, old.not_after)


async def revoke_key(
    connection: asyncpg.Connection, appender: LedgerAppender, kid: str, at: datetime, now: datetime
) -> RegisteredKey:
    """Revoke `kid` from `at` on (PROTO-10.4-2); ledger `key-revoked`.

    `at` may lie in the past — the earliest time the key may have been compromised, which
    disowns what it signed since — but not in the future. A revoked key may only be
    revoked again earlier (a compromise found to have started sooner), never later.
    Revocation skips the whole-registry check on purpose: it must work in an emergency.
    """
    row = await connection.fetchrow(f"SELECT {_KEY_COLUMNS} FROM keys WHERE kid = $1", kid)
    if row is None:
        raise RegistryError(f"no key {kid!r} is registered")
    if at > now:
        raise RegistryError(f"--at {format_timestamp(at)} is in the future; a revocation takes effect now or earlier")
    if row["revoked_at"] is not None and row["revoked_at"] <= at:
        raise RegistryError(f"key {kid!r} is already revoked, at {format_timestamp(row['revoked_at'])}")
    await connection.execute("UPDATE keys SET revoked_at = $2 WHERE kid = $1", kid, at)
    fields = {"kid": kid, "owner": row["owner"], "use": row["use"], "alg": row["alg"], "revoked_at": format_timestamp(at)}
    if row["revoked_at"] is not None:
        fields["previously_revoked_at"] = format_timestamp(row["revoked_at"])
    await appender.add(LedgerEntry("key-revoked", format_timestamp(now), fields))
    return RegisteredKey(kid, row["owner"], row["use"], row["alg"], row["not_before"], row["not_after"], at, row["test_key"])


async def bump_version(connection: asyncpg.Connection, at_least: int = 0) -> int:
    """Count one change (to `at_least` if that is more) and notify every process; the NOTIFY is delivered at commit."""
    version = await connection.fetchval(
        "UPDATE registry_version SET version = GREATEST(version + 1, $1) RETURNING version", at_least
    )
    await connection.execute(f"NOTIFY {CHANGED}, '{int(version)}'")
    return version


async def _register(
    connection: asyncpg.Connection, appender: LedgerAppender, names: Mapping[str, Mapping[str, str]],
    records: Iterable[KeyRecord], sequence: int, now: datetime,
) -> int:
    jurisdictions_added = 0
    for code, display_names in names.items():
        jurisdictions_added += await connection.fetchval(
            "WITH added AS (INSERT INTO jurisdictions (code, names) VALUES ($1, $2) ON CONFLICT (code) DO NOTHING RETURNING 1)"
            " SELECT count(*) FROM added",
            code, json.dumps(dict(display_names), ensure_ascii=False),
        )
    added = 0
    for record in records:
        added += await add_key(connection, appender, record, now)
    fields = {"sequence": sequence, "keys_added": added, "jurisdictions_added": jurisdictions_added}
    await appender.add(LedgerEntry("trust-list-imported", format_timestamp(now), fields))
    return added


def _key_entry(kind: EntryKind, record: KeyRecord, now: datetime, **more: Any) -> LedgerEntry:
    """A ledger entry about one key: metadata only, never the key itself."""
    return LedgerEntry(kind, format_timestamp(now), {
        "kid": record.kid, "owner": record.owner, "use": record.use, "alg": record.public.alg,
        "not_before": format_timestamp(record.not_before), "not_after": format_timestamp(record.not_after),
        "test_key": record.test_key, **more,
    })


# --- Acknowledgement --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Acknowledgement:
    """Who holds registry `version`: the live gateway processes, and those of them still behind."""

    version: int
    live: tuple[str, ...]
    behind: tuple[tuple[str, int], ...]
    """(process id, version it holds) of each live process that has not acknowledged."""


async def live_processes(connection: asyncpg.Connection) -> list[tuple[str, int]]:
    """(process id, registry version held) of every gateway process with a connection open to this database now.

    A row of `gateway_processes` without a connection is a process that is gone (killed,
    crashed): it cannot acknowledge, and is not waited for.
    """
    rows = await connection.fetch(
        "SELECT p.process_id, p.registry_version FROM gateway_processes p"
        " WHERE EXISTS (SELECT 1 FROM pg_stat_activity a"
        "               WHERE a.datname = current_database() AND a.application_name = p.process_id)"
        " ORDER BY p.process_id"
    )
    return [(row["process_id"], row["registry_version"]) for row in rows if row["process_id"].startswith(APPLICATION_PREFIX)]


async def wait_for_acknowledgements(connection: asyncpg.Connection, version: int, timeout: float) -> Acknowledgement:
    """Wait until every live gateway process holds `version`, or `timeout` seconds; say who is behind.

    Listens on `gba_registry_ack` and checks again on each notification. Listening before
    the first check loses nothing: a process records its version before it notifies.
    """
    notified = asyncio.Event()

    def on_acknowledgement(*_: object) -> None:
        notified.set()

    await connection.add_listener(ACKNOWLEDGED, on_acknowledgement)
    try:
        try:
            async with asyncio.timeout(timeout):
                while True:
                    notified.clear()
                    acknowledgement = _acknowledgement(version, await live_processes(connection))
                    if not acknowledgement.behind:
                        return acknowledgement
                    await notified.wait()
        except TimeoutError:
            return _acknowledgement(version, await live_processes(connection))
    finally:
        await connection.remove_listener(ACKNOWLEDGED, on_acknowledgement)


def _acknowledgement(version: int, processes: list[tuple[str, int]]) -> Acknowledgement:
    behind = tuple((process_id, held) for process_id, held in processes if held < version)
    return Acknowledgement(version, tuple(process_id for process_id, _ in processes), behind)


# --- This process's copy ----------------------------------------------------------------


LISTENER_CHECK_SECONDS = 10.0
"""How often `Registry.watch` checks that the LISTEN connection still answers."""


def _alive(connection: asyncpg.Connection | None) -> bool:
    """Whether `connection` is open. A pooled connection that was terminated has been handed back to the pool already,
    and its proxy then refuses every call, `is_closed` included."""
    try:
        return connection is not None and not connection.is_closed()
    except asyncpg.InterfaceError:
        return False


class Registry:
    """This process's copy of the trust registry, kept current by LISTEN/NOTIFY."""

    def __init__(
        self, pool: asyncpg.Pool, mode: str, process_id: str, listeners: Mapping[str, Callable[..., None]] | None = None
    ) -> None:
        """`listeners`: more channels heard on the same LISTEN connection (channel -> asyncpg listener callback)."""
        self._pool = pool
        self._listeners = dict(listeners or {})
        self._mode = mode
        self._process_id = process_id
        self._trust: TrustList | None = None
        self._version = -1
        self._listener: asyncpg.Connection | None = None
        self._reloading = asyncio.Lock()
        self._relistening = asyncio.Lock()
        self._reloads: set[asyncio.Task[None]] = set()
        self._closing = False
        self.on_loaded: Callable[[TrustList], None] | None = None
        """Called with each newer registry this process loads, before it acknowledges it."""

    def current(self) -> TrustList:
        if self._trust is None:
            raise RuntimeError("the registry is not loaded")
        return self._trust

    @property
    def listening(self) -> bool:
        """True while the LISTEN connection is up (readiness: without it changes would be missed)."""
        return _alive(self._listener)

    async def start(self) -> None:
        """Register this process, listen for changes on a dedicated connection, then load."""
        await self._pool.execute(
            "INSERT INTO gateway_processes (process_id) VALUES ($1) ON CONFLICT (process_id) DO NOTHING", self._process_id
        )
        await self._listen()
        await self.reload()

    async def close(self) -> None:
        self._closing = True
        for task in list(self._reloads):
            task.cancel()
        await asyncio.gather(*self._reloads, return_exceptions=True)
        listener, self._listener = self._listener, None
        if listener is not None:
            try:
                if _alive(listener):
                    await listener.remove_listener(CHANGED, self._on_change)
                    for channel, callback in self._listeners.items():
                        await listener.remove_listener(channel, callback)
                await self._pool.release(listener)
            except (OSError, asyncpg.InterfaceError, asyncpg.PostgresError) as error:
                _log.warning("registry_listener_release_failed", error=type(error).__name__)
        try:
            await self._pool.execute("DELETE FROM gateway_processes WHERE process_id = $1", self._process_id)
        except (OSError, asyncpg.InterfaceError, asyncpg.PostgresError) as error:
            _log.warning("registry_unregister_failed", error=type(error).__name__)

    async def _listen(self) -> None:
        connection = await self._pool.acquire()
        try:
            connection.add_termination_listener(self._on_lost)
            await connection.add_listener(CHANGED, self._on_change)
            for channel, callback in self._listeners.items():
                await connection.add_listener(channel, callback)
        except BaseException:
            # Never keep a connection out of the pool: pool.close() would wait for it for ever.
            connection.remove_termination_listener(self._on_lost)
            await self._pool.release(connection)
            raise
        self._listener = connection

    async def watch(self, every_seconds: float = LISTENER_CHECK_SECONDS) -> None:
        """Put a statement to the LISTEN connection every `every_seconds`, for the life of the process.

        A connection whose server vanished without a reset (a failover) is never closed by itself, and LISTEN alone
        would wait on it for ever, missing every change. The statement's timeout (the pool's `command_timeout`,
        `database_timeout_seconds`) ends the wait; the connection is then closed, and `_on_lost` listens again."""
        while True:
            await asyncio.sleep(every_seconds)  # a period, not synchronisation
            listener = self._listener
            if not _alive(listener):
                continue
            try:
                await listener.fetchval("SELECT 1")
            except Exception as error:  # noqa: BLE001 - any failure means the connection cannot be trusted
                _log.warning("registry_listener_unanswered", error=type(error).__name__)
                if _alive(listener):
                    listener.terminate()  # its termination listener, _on_lost, listens again

    def _on_lost(self, connection: asyncpg.Connection) -> None:
        """The LISTEN connection died (server restart, failover, a killed backend): listen again."""
        if self._closing:
            return
        _log.warning("registry_listener_lost")
        self._spawn(self._listen_again())

    async def _listen_again(self) -> None:
        """Reconnect, LISTEN, and reload (changes made meanwhile were not notified), with backoff.

        One round at a time: a connection that dies while a round opens it calls `_on_lost` too, and two rounds
        at once would each take a connection from the pool, one of them never given back (then `pool.close()`
        waits for ever, and SIGTERM never ends the process; seen in tests/faults/test_failover.py). A round that
        finds the listener already up again has nothing to do."""
        async with self._relistening:
            await self._listen_again_alone()

    async def _listen_again_alone(self) -> None:
        if _alive(self._listener):
            return  # an earlier round listens again already (and reloaded before it ended)
        delay = 0.1
        while not self._closing:
            try:
                if not _alive(self._listener):
                    lost, self._listener = self._listener, None
                    if lost is not None:
                        with contextlib.suppress(OSError, asyncpg.InterfaceError, asyncpg.PostgresError):
                            await self._pool.release(lost)
                    await self._listen()
                await self.reload()
                _log.info("registry_listener_restored", version=self._version)
                return
            except Exception as error:  # noqa: BLE001 - keep trying until closed; each failure is logged
                _log.warning("registry_listen_retry", error=type(error).__name__, delay=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    async def reload(self) -> None:
        """Load the registry if it is newer than the copy held, then acknowledge the version held.

        One reload at a time, and never back to an older version: reloads started by two
        quick notifications may read in one order and finish in the other.
        """
        async with self._reloading:
            loaded = await read_trust_list(self._pool, self._mode)
            if loaded is None:
                raise RegistryError("the trust registry is empty: import a trust list first")
            if loaded[0] > self._version or self._trust is None:
                self._version, self._trust = loaded
                _log.info("registry_loaded", version=self._version, keys=len(self._trust.keys))
                if self.on_loaded is not None:
                    self.on_loaded(self._trust)
            await self._acknowledge()

    async def _acknowledge(self) -> None:
        await self._pool.execute(
            "INSERT INTO gateway_processes (process_id, registry_version) VALUES ($1, $2)"
            " ON CONFLICT (process_id) DO UPDATE"
            " SET registry_version = GREATEST(gateway_processes.registry_version, EXCLUDED.registry_version), seen_at = now()",
            self._process_id, self._version,
        )
        await self._pool.execute("SELECT pg_notify($1, $2)", ACKNOWLEDGED, self._process_id)

    async def _reload_logging_failure(self) -> None:
        try:
            await self.reload()
        except Exception as error:  # noqa: BLE001 - the copy held stays; the change's command times out naming this process
            # Why, as far as it can be told without text that could quote data: a refusal's catalogue code and place,
            # this module's own sentences (`detail` is withheld by the log filter, gateway/logs.py).
            _log.error("registry_reload_failed", error=type(error).__name__, code=getattr(error, "code", None),
                       where=getattr(error, "where", None), reason=str(error) if type(error) is RegistryError else None)

    def _on_change(self, connection: asyncpg.Connection, pid: int, channel: str, payload: str) -> None:
        self._spawn(self._reload_logging_failure())
