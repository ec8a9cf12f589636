"""Officers' accounts: argon2id passwords, RFC 6238 TOTP, roles, pinned key fingerprints (docs/console.md).

An officer is a row of `console_officers` (migration 0005). The ledger never holds an
officer's name: every entry about an officer's action carries its `pseudonym`, a random
UUID made at enrolment. Each change to an account is itself ledgered (`officer-changed`).

Roles: `officer` sees what involves its jurisdictions; `auditor` sees everything. The
right to read payloads is separate (`payload_right`) and each use asks for a reason.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import argon2
import asyncpg
import pyotp

from gateway.ledger import notes
from gateway.ledger.append import LedgerAppender
from gateway.ledger.entries import LedgerEntry
from gateway.protocol.timestamps import format_timestamp

ROLES = ("officer", "auditor")
NAME = re.compile(r"[a-z0-9][a-z0-9._-]{1,62}")
MIN_PASSWORD_LENGTH = 12
TOTP_STEP_SECONDS = 30

# argon2id, RFC 9106's second recommended option (64 MiB, 3 passes, 4 lanes).
_HASHER = argon2.PasswordHasher(time_cost=3, memory_cost=64 * 1024, parallelism=4, type=argon2.Type.ID)
_DUMMY_HASH = _HASHER.hash(secrets.token_urlsafe(16))
"""Verified against when the name is unknown, so that an unknown name costs as long as a wrong password."""


class AccountError(ValueError):
    """An account change that cannot be made; the message says why (no secret in it)."""


@dataclass(frozen=True, slots=True)
class Officer:
    name: str
    pseudonym: str
    role: str
    jurisdictions: tuple[str, ...]
    payload_right: bool
    time_zone: str
    pinned: tuple[str, ...]
    disabled: bool

    @property
    def is_auditor(self) -> bool:
        return self.role == "auditor"


def fingerprint(vkey: str) -> str:
    """The fingerprint an officer pins and compares out of band: SHA-256 of the C2SP vkey text, hex."""
    return hashlib.sha256(vkey.encode("utf-8")).hexdigest()


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"a password has at least {MIN_PASSWORD_LENGTH} characters")
    return _HASHER.hash(password)


def password_matches(stored_hash: str | None, password: str) -> bool:
    """Whether `password` matches `stored_hash` (argon2id); an unknown account (None) costs the same and fails."""
    try:
        return _HASHER.verify(stored_hash or _DUMMY_HASH, password) and stored_hash is not None
    except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
        return False


def new_totp_secret() -> str:
    return pyotp.random_base32(32)


def totp_step(secret: str, code: str, now: datetime, last_step: int) -> int | None:
    """The time step `code` is valid for at `now` (±1 step), if later than `last_step` (no replay); else None."""
    if not re.fullmatch(r"[0-9]{6}", code or ""):
        return None
    totp = pyotp.TOTP(secret, interval=TOTP_STEP_SECONDS)
    current = int(now.timestamp()) // TOTP_STEP_SECONDS
    for step in (current - 1, current, current + 1):
        if step > last_step and secrets.compare_digest(totp.at(step * TOTP_STEP_SECONDS), code):
            return step
    return None


def totp_uri(name: str, secret: str) -> str:
    return pyotp.TOTP(secret, interval=TOTP_STEP_SECONDS).provisioning_uri(name=name, issuer_name="GBA Case Gateway console")


QUORUM_PIN = "quorum:"
"""A pinned item `quorum:N`: the fewest witness cosignatures the officer's pages accept, whatever the server says."""


def key_fingerprints(log_key: notes.NoteKey | None, witness_keys: Sequence[notes.NoteKey], quorum: int) -> tuple[str, ...]:
    """What an officer pins at enrolment: each key's fingerprint, and the quorum (so a server cannot lower it)."""
    keys = tuple(fingerprint(key.vkey()) for key in ([log_key] if log_key else []) + list(witness_keys))
    return (*keys, f"{QUORUM_PIN}{quorum}")


# --- SQL -------------------------------------------------------------------------------

_COLUMNS = "name, pseudonym, role, jurisdictions, payload_right, time_zone, pinned, disabled_at IS NOT NULL AS disabled"


def _officer(row: asyncpg.Record) -> Officer:
    return Officer(
        row["name"], str(row["pseudonym"]), row["role"], tuple(row["jurisdictions"]), row["payload_right"],
        row["time_zone"], tuple(row["pinned"]), row["disabled"],
    )


async def officer_by_name(executor: Any, name: str) -> Officer | None:
    row = await executor.fetchrow(f"SELECT {_COLUMNS} FROM console_officers WHERE name = $1", name)
    return _officer(row) if row else None


async def credentials(executor: Any, name: str) -> tuple[str, str, int] | None:
    """(password hash, TOTP secret, last TOTP step) of an enabled officer, or None."""
    row = await executor.fetchrow(
        "SELECT password_hash, totp_secret, totp_last_step FROM console_officers WHERE name = $1 AND disabled_at IS NULL", name
    )
    return (row[0], row[1], row[2]) if row else None


async def use_totp_step(executor: Any, name: str, step: int) -> bool:
    """Record `step` as used; False if it (or a later one) was used already (a replayed code)."""
    done = await executor.fetchval(
        "UPDATE console_officers SET totp_last_step = $2 WHERE name = $1 AND totp_last_step < $2 RETURNING true", name, step
    )
    return bool(done)


def _check_fields(role: str, jurisdictions: Sequence[str], time_zone: str) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if role not in ROLES:
        raise AccountError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    if role == "officer" and not jurisdictions:
        raise AccountError("an officer needs at least one jurisdiction (--jurisdiction CODE)")
    try:
        ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise AccountError(f"{time_zone!r} is not an IANA time zone (e.g. Asia/Hong_Kong)") from None


def _changed(officer: Officer, change: str, now: datetime) -> LedgerEntry:
    return LedgerEntry("officer-changed", format_timestamp(now), {
        "officer": officer.pseudonym, "change": change, "role": officer.role,
        "jurisdictions": sorted(officer.jurisdictions), "payload_right": officer.payload_right,
    })


async def add_officer(
    connection: asyncpg.Connection, appender: LedgerAppender, *, name: str, role: str, jurisdictions: Sequence[str],
    payload_right: bool, password: str, totp_secret: str, time_zone: str, pinned: Sequence[str], now: datetime,
) -> Officer:
    """Enrol an officer (one transaction with its `officer-changed` entry)."""
    if not NAME.fullmatch(name):
        raise AccountError("a name is 2-63 characters: lower-case letters, digits, '.', '_', '-', starting with a letter or digit")
    _check_fields(role, jurisdictions, time_zone)
    if not pinned:
        raise AccountError("no key fingerprints to pin: configure the ledger's checkpoint key and witnesses")
    if await officer_by_name(connection, name) is not None:
        raise AccountError(f"officer {name} exists")
    officer = Officer(name, str(uuid.uuid4()), role, tuple(sorted(set(jurisdictions))), payload_right, time_zone, tuple(pinned), False)
    await connection.execute(
        "INSERT INTO console_officers (name, pseudonym, role, jurisdictions, payload_right, password_hash, totp_secret,"
        " time_zone, pinned, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        name, uuid.UUID(officer.pseudonym), role, list(officer.jurisdictions), payload_right, hash_password(password),
        totp_secret, time_zone, list(pinned), now,
    )
    await appender.add(_changed(officer, "added", now))
    return officer


async def _require(connection: asyncpg.Connection, name: str) -> Officer:
    officer = await officer_by_name(connection, name)
    if officer is None:
        raise AccountError(f"no officer named {name}")
    return officer


async def disable_officer(connection: asyncpg.Connection, appender: LedgerAppender, name: str, now: datetime) -> Officer:
    """Disable the account and end its sessions at once."""
    officer = await _require(connection, name)
    await connection.execute("UPDATE console_officers SET disabled_at = coalesce(disabled_at, $2) WHERE name = $1", name, now)
    await connection.execute("DELETE FROM console_sessions WHERE officer = $1", name)
    await appender.add(_changed(officer, "disabled", now))
    return officer


async def reset_officer(
    connection: asyncpg.Connection, appender: LedgerAppender, name: str, password: str, totp_secret: str,
    pinned: Sequence[str], now: datetime,
) -> Officer:
    """New password, new TOTP secret, fingerprints pinned again, account enabled; its sessions end, and so does the
    account's wait for wrong codes (they were given with the password this replaces)."""
    officer = await _require(connection, name)
    await connection.execute(
        "UPDATE console_officers SET password_hash = $2, totp_secret = $3, totp_last_step = 0, disabled_at = NULL,"
        " pinned = $4 WHERE name = $1",
        name, hash_password(password), totp_secret, list(pinned) or list(officer.pinned),
    )
    await connection.execute("DELETE FROM console_sessions WHERE officer = $1", name)
    await connection.execute("DELETE FROM console_throttle WHERE scope = $1", f"second-factor:{name}")
    await appender.add(_changed(officer, "reset", now))
    return officer


async def change_role(
    connection: asyncpg.Connection, appender: LedgerAppender, name: str, role: str, jurisdictions: Sequence[str] | None,
    payload_right: bool | None, now: datetime,
) -> Officer:
    """Change role, jurisdictions or the payload right; sessions end so that the change applies at once."""
    officer = await _require(connection, name)
    jurisdictions = tuple(sorted(set(jurisdictions))) if jurisdictions is not None else officer.jurisdictions
    right = officer.payload_right if payload_right is None else payload_right
    _check_fields(role, jurisdictions, officer.time_zone)
    await connection.execute(
        "UPDATE console_officers SET role = $2, jurisdictions = $3, payload_right = $4 WHERE name = $1",
        name, role, list(jurisdictions), right,
    )
    await connection.execute("DELETE FROM console_sessions WHERE officer = $1", name)
    changed = Officer(name, officer.pseudonym, role, jurisdictions, right, officer.time_zone, officer.pinned, officer.disabled)
    await appender.add(_changed(changed, "role", now))
    return changed
