"""`gateway officers`: the console's accounts (docs/console.md, "Accounts").

`add` enrols an officer: a password (from stdin with --password-stdin, else a random
one printed once), a new TOTP secret (printed once, with its otpauth:// URI for an
authenticator app) and the fingerprints of the ledger keys the console verifies with,
which the officer pins now and compares out of band later. `disable` ends the account's
sessions and stops sign-in; `reset` gives a new password and TOTP secret (and pins the
current keys again); `role` changes the role, jurisdictions or payload right. Each change
is one transaction with its `officer-changed` ledger entry (the officer's pseudonym, never
the name). Which database: as for `gateway keys`.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg

from gateway.cli.keys import connect_migrated, storage_command, storage_target
from gateway.config import default_config, load_config
from gateway.console import accounts
from gateway.keyfiles import read_private_key
from gateway.ledger import notes
from gateway.ledger.append import LedgerAppender
from gateway.protocol.timestamps import utc_now
from gateway.store.database import DATABASE_URL_VARIABLE, DEFAULT_DATA_DIR


def register(commands: argparse._SubParsersAction) -> None:
    officers = commands.add_parser("officers", help="manage the console's officer accounts", description=__doc__)
    verbs = officers.add_subparsers(dest="verb", required=True, metavar="VERB")
    add = verbs.add_parser("add", help="enrol an officer (prints the TOTP secret and the pinned fingerprints once)")
    add.add_argument("name", help="sign-in name: 2-63 lower-case letters, digits, '.', '_', '-'")
    add.add_argument("--role", choices=accounts.ROLES, required=True,
                     help="officer: entries involving its jurisdictions; auditor: everything")
    add.add_argument("--jurisdiction", action="append", default=[], metavar="CODE", help="a jurisdiction of an officer (repeat)")
    add.add_argument("--payload-right", action="store_true", help="may view payloads (each view asks a reason and is ledgered)")
    add.add_argument("--time-zone", default="UTC", metavar="ZONE", help="IANA zone the console shows times in (default UTC)")
    add.set_defaults(run=storage_command(_add))
    disable = verbs.add_parser("disable", help="stop an officer signing in and end its sessions")
    disable.add_argument("name")
    disable.set_defaults(run=storage_command(_disable))
    reset = verbs.add_parser("reset", help="new password and TOTP secret; pin the current keys again; re-enable")
    reset.add_argument("name")
    reset.set_defaults(run=storage_command(_reset))
    role = verbs.add_parser("role", help="change an officer's role, jurisdictions or payload right")
    role.add_argument("name")
    role.add_argument("--role", choices=accounts.ROLES, required=True)
    role.add_argument("--jurisdiction", action="append", default=None, metavar="CODE", help="replaces the jurisdictions (repeat)")
    right = role.add_mutually_exclusive_group()
    right.add_argument("--payload-right", dest="payload_right", action="store_true", default=None)
    right.add_argument("--no-payload-right", dest="payload_right", action="store_false")
    role.set_defaults(run=storage_command(_role))
    listing = verbs.add_parser("list", help="print the officers (no secrets)")
    listing.set_defaults(run=storage_command(_list))
    for verb in (add, disable, reset, role, listing):
        verb.add_argument("--config", type=Path, metavar="FILE", help="the gateway's TOML configuration")
        verb.add_argument("--data-dir", type=Path, metavar="DIR", help=f"the gateway's data directory (default ./{DEFAULT_DATA_DIR})")
        verb.add_argument("--database-url", metavar="URL", help=f"an external PostgreSQL; overrides ${DATABASE_URL_VARIABLE}")
    for verb in (add, reset):
        verb.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
        verb.add_argument("--log-key", metavar="VKEY", help="the log's checkpoint key to pin (default: from the configuration)")
        verb.add_argument("--witness", action="append", default=None, metavar="VKEY", help="a witness key to pin (repeat; default: configured)")
        verb.add_argument("--quorum", type=int, metavar="N", help="the fewest witness cosignatures to pin (default: the configuration's)")


def _say(message: str) -> None:
    print(f"gateway: {message}", file=sys.stderr)


def _keys_to_pin(arguments: argparse.Namespace) -> tuple[str, ...]:
    """Fingerprints of the log and witness keys: given on the command line, else those of the configuration."""
    config = load_config(arguments.config) if arguments.config else default_config(arguments.data_dir or Path(DEFAULT_DATA_DIR))
    if arguments.log_key:
        log_key = notes.parse_vkey(arguments.log_key)
    elif config.hub.checkpoint_key is not None:
        log_key = notes.note_key(config.origin, read_private_key(config.hub.checkpoint_key).public())
    else:
        log_key = None
    witnesses = [notes.parse_vkey(vkey) for vkey in (arguments.witness if arguments.witness is not None else [w.vkey for w in config.witnesses])]
    for key in witnesses:
        if key.kind != notes.COSIGNATURE_V1:
            raise ValueError(f"witness key {key.name} is not a cosignature/v1 key (type 0x04)")
    if log_key is None:
        raise ValueError("no checkpoint key to pin: give --log-key VKEY or a --config with hub.checkpoint_key")
    if arguments.witness is not None and arguments.quorum is None:
        raise ValueError("with --witness keys, give --quorum too: how many of them must cosign")
    quorum = arguments.quorum if arguments.quorum is not None else config.quorum
    if not 0 <= quorum <= len(witnesses):
        raise ValueError(f"a quorum of {quorum} cannot be met by {len(witnesses)} witness keys")
    for key in [log_key, *witnesses]:
        _say(f"pinned {key.vkey()}\n         fingerprint {accounts.fingerprint(key.vkey())}")
    _say(f"pinned quorum {quorum}: the pages accept no checkpoint with fewer witness cosignatures")
    return accounts.key_fingerprints(log_key, witnesses, quorum)


def _password(arguments: argparse.Namespace) -> tuple[str, bool]:
    """(password, generated?)"""
    if arguments.password_stdin:
        return sys.stdin.readline().rstrip("\r\n"), False
    return secrets.token_urlsafe(18), True


def _ledgered(arguments: argparse.Namespace, change: Callable[[asyncpg.Connection, LedgerAppender], Awaitable[Any]]) -> Any:
    target = storage_target(arguments)

    async def run() -> Any:
        connection = await connect_migrated(target.dsn)
        try:
            async with connection.transaction():
                appender = LedgerAppender(connection)
                await appender.reserve()
                result = await change(connection, appender)
                await appender.finish()
                return result
        finally:
            await connection.close()

    try:
        return asyncio.run(run())
    except accounts.AccountError as error:
        raise ValueError(str(error)) from None


def _print_secrets(name: str, password: str, generated: bool, totp_secret: str) -> None:
    if generated:
        print(f"password: {password}")
    print(f"totp secret: {totp_secret}")
    print(f"totp uri: {accounts.totp_uri(name, totp_secret)}")


def _add(arguments: argparse.Namespace) -> int:
    password, generated = _password(arguments)
    pinned = _keys_to_pin(arguments)
    secret = accounts.new_totp_secret()
    officer = _ledgered(arguments, lambda connection, appender: accounts.add_officer(
        connection, appender, name=arguments.name, role=arguments.role, jurisdictions=arguments.jurisdiction,
        payload_right=arguments.payload_right, password=password, totp_secret=secret, time_zone=arguments.time_zone,
        pinned=pinned, now=utc_now(),
    ))
    _say(f"added {officer.role} {officer.name} (pseudonym {officer.pseudonym} in the ledger)")
    _print_secrets(officer.name, password, generated, secret)
    return 0


def _disable(arguments: argparse.Namespace) -> int:
    officer = _ledgered(arguments, lambda connection, appender: accounts.disable_officer(connection, appender, arguments.name, utc_now()))
    _say(f"disabled {officer.name}; its sessions ended")
    return 0


def _reset(arguments: argparse.Namespace) -> int:
    password, generated = _password(arguments)
    pinned = _keys_to_pin(arguments)
    secret = accounts.new_totp_secret()
    officer = _ledgered(arguments, lambda connection, appender: accounts.reset_officer(
        connection, appender, arguments.name, password, secret, pinned, utc_now()
    ))
    _say(f"reset {officer.name}: new password and TOTP secret, keys pinned again, sessions ended")
    _print_secrets(officer.name, password, generated, secret)
    return 0


def _role(arguments: argparse.Namespace) -> int:
    officer = _ledgered(arguments, lambda connection, appender: accounts.change_role(
        connection, appender, arguments.name, arguments.role, arguments.jurisdiction, arguments.payload_right, utc_now()
    ))
    scope = ", ".join(officer.jurisdictions) or "all"
    _say(f"{officer.name} is now {officer.role} ({scope}), payload right {'yes' if officer.payload_right else 'no'}; sessions ended")
    return 0


def _list(arguments: argparse.Namespace) -> int:
    target = storage_target(arguments)

    async def read() -> list[Any]:
        connection = await connect_migrated(target.dsn)
        try:
            return await connection.fetch(
                "SELECT name, pseudonym, role, jurisdictions, payload_right, time_zone, disabled_at FROM console_officers ORDER BY name"
            )
        finally:
            await connection.close()

    for row in asyncio.run(read()):
        state = "disabled" if row["disabled_at"] else "active"
        print(f"{row['name']}  {row['role']}  {','.join(row['jurisdictions']) or '*'}  payload={'yes' if row['payload_right'] else 'no'}"
              f"  {row['time_zone']}  {state}  {row['pseudonym']}")
    return 0
