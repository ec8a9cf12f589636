"""`gateway keys`: make a key pair, and manage the hub's key registry (docs/protocol.md §10, docs/operations.md).

`generate` makes a key pair for one owner and one use. `add`, `import`, `rotate` and
`revoke` change the registry in the database, each in one ledgered transaction, and
return only when every live gateway process holds the change (exit 1, naming the
processes, after `--wait` seconds otherwise); `list` prints it. Which database: as for
`gateway db` (`--database-url`, `$GATEWAY_DATABASE_URL`, the config's `database_url`,
else the embedded server in `--data-dir`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import secrets
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import wraps
from pathlib import Path
from typing import Any

import asyncpg

from gateway.cli.output import read_input, report_refusal, timestamp_argument
from gateway.config import MODES, ConfigError, GatewayConfig, load_config
from gateway.hub import registry
from gateway.keyfiles import write_private_key, write_public_key
from gateway.ledger.append import LedgerAppender
from gateway.protocol import strict_json
from gateway.protocol.errors import ProtocolError
from gateway.protocol.keys import ALGORITHMS, generate
from gateway.protocol.timestamps import format_timestamp, utc_now
from gateway.protocol.trust import ED25519_ONLY_USES, HUB, KEY_USES, allowed_uses, load_trust_list
from gateway.store import StoreError
from gateway.store.database import DATABASE_URL_VARIABLE, DEFAULT_DATA_DIR, Database, resolve_database
from gateway.store.embedded import ensure_embedded_server
from gateway.store.migrate import migrate

_OWNER = re.compile(rf"{HUB}|[A-Z]{{2}}(-[A-Z0-9]{{1,3}})?")


def register(commands: argparse._SubParsersAction) -> None:
    keys = commands.add_parser("keys", help="make and manage signing keys")
    verbs = keys.add_subparsers(dest="verb", required=True, metavar="VERB")
    make = verbs.add_parser(
        "generate",
        help="write a new private key (mode 0600) and its public JWK",
        description="Writes DIR/KID.key.jwk (private, mode 0600) and DIR/KID.pub.jwk, and prints the "
        "key's trust-list entry (docs/protocol.md §10.3) on stdout. A key serves one use only.",
    )
    make.add_argument("--jurisdiction", required=True, help="owner: a jurisdiction code (CN-GD, HK, MO) or 'hub'")
    make.add_argument("--use", required=True, choices=KEY_USES)
    make.add_argument("--out", required=True, type=Path, help="folder for the key files (created if missing)")
    make.add_argument("--alg", choices=ALGORITHMS, default="Ed25519")
    make.add_argument("--kid", help="key id (default: OWNER-USE-DATE-RANDOM)")
    make.add_argument("--valid-days", type=int, default=730, help="validity window in days (default 730)")
    make.add_argument(
        "--not-before", type=timestamp_argument, metavar="TIME",
        help="start of validity, RFC 3339 UTC (default: now). A successor hub receipt key starts no later than the "
        "acceptance of the oldest message still to be delivered: attestations are judged at the message's "
        "accepted_at (docs/operations.md, \"Rotating keys\")",
    )
    make.add_argument("--test-key", action="store_true", help="mark the key test-only (refused in production)")
    make.set_defaults(run=_generate)
    _register_registry_verbs(verbs)


def _generate(arguments: argparse.Namespace) -> int:
    owner = arguments.jurisdiction
    if not _OWNER.fullmatch(owner):
        raise ValueError(f"--jurisdiction must be a code like CN-GD, HK, MO or 'hub', not {owner!r}")
    now = utc_now().replace(microsecond=0)
    kid = arguments.kid or f"{owner.lower()}-{arguments.use}-{now:%Y%m%d}-{secrets.token_hex(3)}"
    allowed = allowed_uses(owner)
    if arguments.use not in allowed:
        raise ValueError(f"a key of {owner} serves {' or '.join(allowed)}, not {arguments.use} (docs/protocol.md PROTO-10.2-3)")
    if arguments.use in ED25519_ONLY_USES and arguments.alg != "Ed25519":
        raise ValueError("checkpoint and witness keys are Ed25519 keys (docs/protocol.md PROTO-10.2-4)")
    if arguments.valid_days < 1:
        raise ValueError("--valid-days must be at least 1")
    not_before = (arguments.not_before or now).replace(microsecond=0)
    key = generate(arguments.alg, kid)
    arguments.out.mkdir(parents=True, exist_ok=True)
    private_path = arguments.out / f"{kid}.key.jwk"
    public_path = arguments.out / f"{kid}.pub.jwk"
    for path in (private_path, public_path):
        if path.exists():
            raise ValueError(f"{path} exists; keys are never overwritten")
    write_private_key(key, private_path)
    write_public_key(key.public(), public_path)
    entry = {
        "kid": kid,
        "owner": owner,
        "use": arguments.use,
        "alg": key.alg,
        "jwk": key.public().to_jwk(),
        "not_before": format_timestamp(not_before),
        "not_after": format_timestamp(not_before + timedelta(days=arguments.valid_days)),
        "status": "active",
        "test_key": arguments.test_key,
    }
    print(json.dumps(entry, indent=2))
    return 0


# --- The key registry ------------------------------------------------------------------

APPLICATION_NAME = "gateway-keys"
"""This command's connection name: not `gateway:...`, for it holds no copy of the registry to acknowledge."""
DEFAULT_WAIT_SECONDS = 30.0

Change = Callable[[asyncpg.Connection, LedgerAppender, str], Awaitable[Any]]
"""A registry change: (connection, appender, the registry's mode) -> its result."""


def _register_registry_verbs(verbs: argparse._SubParsersAction) -> None:
    add = verbs.add_parser(
        "add", help="register a key from its trust-list entry",
        description="Registers the key of a trust-list entry (docs/protocol.md §10.3), as `keys generate` prints it. "
        "The registry with the new key must still be a valid trust list; in production mode a test key is refused.",
    )
    add.add_argument("--entry", required=True, metavar="FILE", help="the key's trust-list entry (JSON), or - for stdin")
    add.set_defaults(run=storage_command(_add))
    imported = verbs.add_parser(
        "import", help="register the new jurisdictions and keys of a trust list",
        description="Registers what a trust list (JSON document, §10.3) adds to the registry. A kid registered "
        "with another owner, use or JWK is refused: keys change by rotation and revocation.",
    )
    imported.add_argument("--trust-list", required=True, metavar="FILE", help="the trust list (JSON), or - for stdin")
    imported.set_defaults(run=storage_command(_import))
    rotate = verbs.add_parser(
        "rotate", help="register a successor key and end the old key's validity",
        description="Registers the new key and sets the old key's not_after to the new key's not_before plus "
        "7 days (PROTO-10.4-6), or to --retire-at; never later than it was. The old key stays registered, "
        "so what it signed still verifies.",
    )
    rotate.add_argument("kid", help="the key being replaced")
    rotate.add_argument("--entry", required=True, metavar="FILE", help="the new key's trust-list entry (JSON), or - for stdin")
    rotate.add_argument("--retire-at", type=timestamp_argument, metavar="TIME", help="end of the old key's validity (UTC)")
    rotate.set_defaults(run=storage_command(_rotate))
    revoke = verbs.add_parser(
        "revoke", help="revoke a key",
        description="Revokes the key from TIME on (default now). After a compromise give the earliest time the "
        "key may have been compromised: what it signed since then no longer verifies (PROTO-10.4-2).",
    )
    revoke.add_argument("kid", help="the key to revoke")
    revoke.add_argument("--at", type=timestamp_argument, metavar="TIME", help="revocation time (UTC, not in the future)")
    revoke.set_defaults(run=storage_command(_revoke))
    listing = verbs.add_parser(
        "list", help="print the registry's keys",
        description="Prints every registered key with its validity and status; warns on stderr about keys that "
        "expire within 30 days, naming their successor if one is registered (marked EXPIRES SOON; the exit "
        "status stays 0).",
    )
    listing.add_argument("--json", action="store_true", help="print JSON for programs")
    listing.set_defaults(run=storage_command(_list))
    for verb in (add, imported, rotate, revoke, listing):
        verb.add_argument("--config", type=Path, metavar="FILE",
                          help="the gateway's TOML configuration (for mode, data_dir, database_url)")
        verb.add_argument("--data-dir", type=Path, metavar="DIR",
                          help=f"the gateway's data directory (default: the config's, else ./{DEFAULT_DATA_DIR})")
        verb.add_argument("--database-url", metavar="URL",
                          help=f"an external PostgreSQL (postgresql://...); overrides ${DATABASE_URL_VARIABLE}")
    for verb in (add, imported, rotate):
        verb.add_argument("--mode", choices=MODES, help="the hub's mode (default: the config's, else the one the "
                          "database records, else test); production wins; must agree with the database's")
    for verb in (add, imported, rotate, revoke):
        verb.add_argument("--wait", type=_seconds, default=DEFAULT_WAIT_SECONDS, metavar="SECONDS",
                          help=f"how long to wait for every live gateway process to acknowledge "
                          f"(default {DEFAULT_WAIT_SECONDS:g})")


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds")
    return seconds


def storage_command(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """`run`, with each kind of failure reported on stderr and exit status 1."""

    @wraps(run)
    def wrapper(arguments: argparse.Namespace) -> int:
        try:
            return run(arguments)
        except ProtocolError as refusal:
            status = report_refusal(refusal, as_json=False)
            for note in getattr(refusal, "__notes__", ()):
                _say(note)
            return status
        except ConfigError as error:
            print(f"gateway: config: {error}", file=sys.stderr)
            return 1
        except (StoreError, registry.RegistryError, asyncpg.PostgresError) as error:
            _say(f"error: {error}")
            return 1

    return wrapper


def _say(message: str) -> None:
    print(f"gateway: {message}", file=sys.stderr)


@dataclass(frozen=True, slots=True)
class StorageTarget:
    dsn: str
    mode: str | None
    """The mode the options or the configuration state (production if either does), None if neither does: the
    registry's changes then take the mode the database records (`registry.settle_mode`)."""


def configured_database(arguments: argparse.Namespace) -> tuple[Database, GatewayConfig | None]:
    """The database the options name (`--database-url`, `--data-dir`, `--config`), by docs/database.md's order;
    and the configuration, if one was given."""
    config = load_config(arguments.config) if arguments.config else None
    config_url, config_dir = (config.database_url, config.data_dir) if config else (None, None)
    return resolve_database(arguments.database_url, config_url, arguments.data_dir or config_dir), config


def storage_target(arguments: argparse.Namespace) -> StorageTarget:
    """The database and the stated mode: the options, then the config (if given), then the defaults."""
    database, config = configured_database(arguments)
    dsn = ensure_embedded_server(database.data_dir, notify=_say).dsn if database.embedded else database.dsn
    modes = {getattr(arguments, "mode", None), config.mode if config else None}
    return StorageTarget(dsn, "production" if "production" in modes else ("test" if "test" in modes else None))


async def connect_migrated(dsn: str) -> asyncpg.Connection:
    """A connection with the schema in place (the same migrations `serve` applies, under the same lock)."""
    connection = await asyncpg.connect(dsn, server_settings={"application_name": APPLICATION_NAME})
    try:
        await migrate(connection)
    except BaseException:
        await connection.close()
        raise
    return connection


def on_migrated_connection(arguments: argparse.Namespace, work: Callable[[asyncpg.Connection], Awaitable[Any]]) -> Any:
    """`await work(connection)` on a migrated connection to the database the options name (see `storage_target`)."""
    target = storage_target(arguments)

    async def main() -> Any:
        connection = await connect_migrated(target.dsn)
        try:
            return await work(connection)
        finally:
            await connection.close()

    return asyncio.run(main())


def _change(target: StorageTarget, change: Change, wait: float, judged_by_mode: bool = True) -> tuple[Any, registry.Acknowledgement]:
    """Apply `change` (one transaction) in the registry's mode, then wait for every live gateway process to
    acknowledge it. A change not `judged_by_mode` (a revocation: urgent, and the same in both modes) asks the
    registry's mode only when the options state one, to refuse a contradiction."""

    async def in_mode(connection: asyncpg.Connection, appender: LedgerAppender) -> Any:
        if not judged_by_mode and target.mode is None:
            return await change(connection, appender, "")
        return await change(connection, appender, await registry.settle_mode(connection, target.mode))

    async def run() -> tuple[Any, registry.Acknowledgement]:
        connection = await connect_migrated(target.dsn)
        try:
            version, result = await registry.apply_change(connection, in_mode)
            return result, await registry.wait_for_acknowledgements(connection, version, wait)
        finally:
            await connection.close()

    return asyncio.run(run())


def _report(done: str, acknowledgement: registry.Acknowledgement, wait: float) -> int:
    _say(done)
    version = acknowledgement.version
    if acknowledgement.behind:
        behind = ", ".join(f"{process_id} (holds version {held})" for process_id, held in acknowledgement.behind)
        _say(
            f"error: the change is committed as registry version {version}, but these live gateway processes did not "
            f"acknowledge it within {wait:g} s and may still use the previous keys: {behind}"
        )
        return 1
    _say(f"registry version {version}, acknowledged by every live gateway process ({len(acknowledgement.live)})")
    return 0


def _read_json(path: str, part: str) -> Any:
    return strict_json.loads(read_input(path), part=part)


def _add(arguments: argparse.Namespace) -> int:
    entry = _read_json(arguments.entry, "key entry")
    target, now = storage_target(arguments), utc_now()
    record, acknowledgement = _change(
        target, lambda connection, appender, mode: registry.add_key_entry(connection, appender, entry, mode, now), arguments.wait
    )
    return _report(f"added key {record.kid} ({_validity(record.not_before, record.not_after)})", acknowledgement, arguments.wait)


def _import(arguments: argparse.Namespace) -> int:
    target, now = storage_target(arguments), utc_now()
    data = read_input(arguments.trust_list)
    trust = load_trust_list(data, require_production=target.mode == "production")

    async def change(connection: asyncpg.Connection, appender: LedgerAppender, mode: str) -> registry.Imported:
        # In the mode the database records, which the options may not have stated.
        checked = load_trust_list(data, require_production=mode == "production")
        return await registry.import_new_entries(connection, appender, checked, mode, now)

    imported, acknowledgement = _change(target, change, arguments.wait)
    keys = ", ".join(imported.keys_added) or "none"
    done = f"imported trust list {trust.sequence}: {len(imported.jurisdictions_added)} new jurisdiction(s), new keys: {keys}"
    return _report(done, acknowledgement, arguments.wait)


def _rotate(arguments: argparse.Namespace) -> int:
    entry = _read_json(arguments.entry, "key entry")
    target, now = storage_target(arguments), utc_now()
    rotation, acknowledgement = _change(
        target,
        lambda connection, appender, mode: registry.rotate_key(
            connection, appender, arguments.kid, entry, arguments.retire_at, mode, now
        ),
        arguments.wait,
    )
    old, new = rotation.retired, rotation.successor
    overlap = old.not_after - new.not_before
    if overlap < registry.ROTATION_OVERLAP:
        _say(f"warning: {old.kid} and {new.kid} overlap by {overlap}, less than the 7 days of PROTO-10.4-6")
    done = (f"rotated {old.kid} to {new.kid}: {old.kid} valid until {format_timestamp(old.not_after)}, "
            f"{new.kid} {_validity(new.not_before, new.not_after)}")
    return _report(done, acknowledgement, arguments.wait)


def _revoke(arguments: argparse.Namespace) -> int:
    target, now = storage_target(arguments), utc_now()
    at = arguments.at or now
    revoked, acknowledgement = _change(
        target, lambda connection, appender, mode: registry.revoke_key(connection, appender, arguments.kid, at, now), arguments.wait,
        judged_by_mode=False,
    )
    return _report(f"revoked key {revoked.kid} from {format_timestamp(at)}", acknowledgement, arguments.wait)


def _list(arguments: argparse.Namespace) -> int:
    target = storage_target(arguments)

    async def read() -> tuple[int, list[registry.RegisteredKey]]:
        connection = await connect_migrated(target.dsn)
        try:
            return await registry.list_keys(connection)
        finally:
            await connection.close()

    version, keys = asyncio.run(read())
    now = utc_now()
    soon = registry.expiring_soon(keys, now)
    for key in soon:
        successor = registry.successor_of(key, keys)
        _say(f"warning: key {key.kid} ({key.owner}, {key.use}) expires at {format_timestamp(key.not_after)}, "
             f"in {(key.not_after - now).days} day(s); "
             + (f"successor: {successor.kid}" if successor else "no successor is registered"))
    expiring = {key.kid for key in soon}
    if arguments.json:
        listed = [_key_json(key, now, key.kid in expiring) for key in keys]
        print(json.dumps({"registry_version": version, "keys": listed}, indent=2))
    else:
        print(_key_table(keys, now, expiring))
    return 0


def _validity(not_before: datetime, not_after: datetime) -> str:
    return f"valid from {format_timestamp(not_before)} to {format_timestamp(not_after)}"


def _key_json(key: registry.RegisteredKey, now: datetime, expires_soon: bool) -> dict[str, Any]:
    return {
        "kid": key.kid,
        "owner": key.owner,
        "use": key.use,
        "alg": key.alg,
        "not_before": format_timestamp(key.not_before),
        "not_after": format_timestamp(key.not_after),
        "revoked_at": format_timestamp(key.revoked_at) if key.revoked_at else None,
        "test_key": key.test_key,
        "status": key.status_at(now),
        "expires_soon": expires_soon,
    }


def _key_table(keys: list[registry.RegisteredKey], now: datetime, expiring: set[str]) -> str:
    rows = [("KID", "OWNER", "USE", "ALG", "NOT BEFORE", "NOT AFTER", "TEST", "STATUS")]
    for key in keys:
        status = key.status_at(now)
        if key.revoked_at is not None:
            status = f"{status} (revoked at {format_timestamp(key.revoked_at)})"
        if key.kid in expiring:
            status += " EXPIRES SOON"
        rows.append((key.kid, key.owner, key.use, key.alg, format_timestamp(key.not_before),
                     format_timestamp(key.not_after), "yes" if key.test_key else "no", status))
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]) - 1)]
    return "\n".join("  ".join([*(cell.ljust(width) for cell, width in zip(row, widths)), row[-1]]) for row in rows)
