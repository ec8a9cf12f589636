"""Server-side sessions, CSRF tokens and sign-in throttling for the console (docs/console.md).

- A session is a random 256-bit token in an HttpOnly, SameSite=Strict cookie (Secure
  over HTTPS); the database keeps only its SHA-256, so a database reader cannot sign in.
  It ends after `session_idle_seconds` unused or `session_max_seconds` after sign-in,
  both measured with the app's (injectable) clock, and at sign-out.
- CSRF: a synchroniser token per session, required in every POST form; before sign-in
  the login form carries a double-submit token (cookie and field must match).
- Throttling counts failed sign-ins per source address and per (account, address), and
  answers with a growing wait once a threshold is passed. Wrong passwords never make the
  account wait: failures from one address never stop the officer signing in from another,
  so an attacker cannot lock an officer out. Guessing from many addresses still needs the
  TOTP, and attempts at the code given with the right password are counted per account,
  from every address (`claim_code_attempt`).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from gateway.console.accounts import Officer, officer_by_name

ADDRESS_THRESHOLD = 10
"""Failures from one address (any account) before it has to wait."""
PAIR_THRESHOLD = 5
"""Failures for one account from one address before that pair has to wait."""
SECOND_FACTOR_THRESHOLD = 5
"""Wrong one-time codes given with the account's right password, from any address, before the account has to wait."""
SECOND_FACTOR_FORGET_AFTER = timedelta(hours=24)
"""The account's count of attempts at the code starts again from zero after this long without one. A day, not
FORGET_AFTER's hour: with an hour, a guesser could spend the free tries and the short waits, pause an hour, and
start again, for about 270 guesses a day instead of about 110 (docs/console.md, "Throttling")."""
MAX_WAIT_SECONDS = 900
FORGET_AFTER = timedelta(hours=1)
"""A scope with no failure for this long starts again from zero."""


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("ascii", "replace")).digest()


def same_token(expected: str | None, given: str | None) -> bool:
    """Whether `given` is the token `expected`, in constant time. Compared as UTF-8 bytes: `compare_digest` refuses
    strings with characters outside ASCII (a TypeError), and a form field may hold any."""
    return bool(expected) and bool(given) and secrets.compare_digest(str(expected).encode(), str(given).encode())


@dataclass(frozen=True, slots=True)
class Session:
    officer: Officer
    csrf: str
    language: str
    token_hash: bytes


async def create_session(executor: Any, officer: str, language: str, now: datetime) -> tuple[str, str]:
    """A new session for `officer`; returns (cookie token, CSRF token)."""
    token, csrf = new_token(), new_token()
    await executor.execute(
        "INSERT INTO console_sessions (token_hash, officer, csrf, language, created_at, seen_at) VALUES ($1, $2, $3, $4, $5, $5)",
        token_hash(token), officer, csrf, language, now,
    )
    return token, csrf


async def load_session(executor: Any, token: str | None, now: datetime, idle_seconds: int, max_seconds: int) -> Session | None:
    """The live session of `token`, its use recorded; None (and the row gone) when unknown, expired or disabled."""
    if not token:
        return None
    digest = token_hash(token)
    row = await executor.fetchrow(
        "SELECT s.officer, s.csrf, s.language, s.created_at, s.seen_at, o.disabled_at IS NOT NULL AS disabled"
        " FROM console_sessions s JOIN console_officers o ON o.name = s.officer WHERE s.token_hash = $1",
        digest,
    )
    if row is None:
        return None
    if row["disabled"] or now - row["seen_at"] > timedelta(seconds=idle_seconds) or now - row["created_at"] > timedelta(seconds=max_seconds):
        await executor.execute("DELETE FROM console_sessions WHERE token_hash = $1", digest)
        return None
    await executor.execute("UPDATE console_sessions SET seen_at = $2 WHERE token_hash = $1", digest, now)
    officer = await officer_by_name(executor, row["officer"])
    assert officer is not None
    return Session(officer, row["csrf"], row["language"], digest)


async def set_language(executor: Any, session: Session, language: str) -> None:
    await executor.execute("UPDATE console_sessions SET language = $2 WHERE token_hash = $1", session.token_hash, language)


async def end_session(executor: Any, session: Session) -> None:
    await executor.execute("DELETE FROM console_sessions WHERE token_hash = $1", session.token_hash)


# --- throttling ------------------------------------------------------------------------


def _scopes(name: str, address: str) -> list[tuple[str, int]]:
    return [(f"address:{address}", ADDRESS_THRESHOLD), (f"account:{name}|{address}", PAIR_THRESHOLD)]


async def seconds_to_wait(executor: Any, name: str, address: str, now: datetime) -> int:
    """How long this address must wait before trying `name` again (0: it may try now)."""
    rows = await executor.fetch(
        "SELECT blocked_until FROM console_throttle WHERE scope = ANY($1::text[]) AND blocked_until > $2",
        [scope for scope, _ in _scopes(name, address)], now,
    )
    return max((int((row["blocked_until"] - now).total_seconds()) + 1 for row in rows), default=0)


def wait_after(failures: int, threshold: int) -> int:
    """Seconds to wait after `failures` failures: none below the threshold, then 2, 4, 8 ... up to MAX_WAIT_SECONDS."""
    if failures < threshold:
        return 0
    return min(2 ** (failures - threshold + 1), MAX_WAIT_SECONDS)


async def record_failure(executor: Any, name: str, address: str, now: datetime) -> None:
    for scope, threshold in _scopes(name, address):
        failures = await executor.fetchval(
            "INSERT INTO console_throttle (scope, failures, updated_at) VALUES ($1, 1, $2)"
            " ON CONFLICT (scope) DO UPDATE SET failures = CASE WHEN console_throttle.updated_at < $3 THEN 1"
            " ELSE console_throttle.failures + 1 END, updated_at = $2 RETURNING failures",
            scope, now, now - FORGET_AFTER,
        )
        wait = wait_after(failures, threshold)
        if wait:
            await executor.execute(
                "UPDATE console_throttle SET blocked_until = $2 WHERE scope = $1", scope, now + timedelta(seconds=wait)
            )


# --- the account's one-time codes ---------------------------------------------------------

def _code_scope(name: str) -> str:
    return f"second-factor:{name}"


@dataclass(frozen=True, slots=True)
class CodeAttempt:
    """Whether the one-time code may be checked now, and the wait this attempt started (0: none)."""

    allowed: bool
    started_wait: int = 0


async def claim_code_attempt(pool: Any, name: str, right_password: bool, now: datetime) -> CodeAttempt:
    """Before the one-time code is checked: count the attempt against the account, from every address.

    Only an attempt with the right password counts, so guessing wrong cannot lock an officer out; but whoever else holds
    the password gets SECOND_FACTOR_THRESHOLD guesses at the code, then waits that double up to MAX_WAIT_SECONDS,
    however many addresses they guess from, the count kept for SECOND_FACTOR_FORGET_AFTER (RFC 6238 §5.2). The
    account's row is locked while it is read and written, so attempts sent at once queue on it and each sees the ones
    before it; the attempt is counted before the code is checked and given back if the code was right
    (`give_back_code_attempt`). While a wait runs, the code is not checked. Every path (wrong password, a wait running,
    an attempt counted) runs the same statements and writes the row, so that neither the answer nor its time says
    whether the password was right (docs/console.md, "Throttling").
    """
    scope = _code_scope(name)
    async with pool.acquire() as connection, connection.transaction():
        # One statement makes the row if need be and locks it (a reset deleting it meanwhile cannot leave none).
        row = await connection.fetchrow(
            "INSERT INTO console_throttle AS t (scope, failures, updated_at) VALUES ($1, 0, $2)"
            " ON CONFLICT (scope) DO UPDATE SET scope = t.scope RETURNING t.failures, t.updated_at, t.blocked_until",
            scope, now,
        )
        failures, updated_at, blocked_until = row["failures"], row["updated_at"], row["blocked_until"]
        waiting = blocked_until is not None and blocked_until > now
        counted = right_password and not waiting
        started = 0
        if counted:
            failures = 1 if updated_at < now - SECOND_FACTOR_FORGET_AFTER else failures + 1
            updated_at = now
            started = wait_after(failures, SECOND_FACTOR_THRESHOLD)
            blocked_until = now + timedelta(seconds=started) if started else None
        await connection.execute(
            "UPDATE console_throttle SET failures = $2, updated_at = $3, blocked_until = $4 WHERE scope = $1",
            scope, failures, updated_at, blocked_until,
        )
    return CodeAttempt(counted, started)


async def give_back_code_attempt(executor: Any, name: str, attempt: CodeAttempt) -> None:
    """The code was right: the attempt `claim_code_attempt` counted was not a guess, and the wait it started, if any,
    ends (while a wait runs no attempt is counted, so a wait running now is this attempt's own, or one a guess counted
    after it started)."""
    await executor.execute(
        "UPDATE console_throttle SET failures = greatest(failures - 1, 0),"
        " blocked_until = CASE WHEN $2 THEN NULL ELSE blocked_until END WHERE scope = $1",
        _code_scope(name), attempt.started_wait > 0,
    )


async def record_success(executor: Any, name: str, address: str) -> None:
    """Forget this account's failures from this address (the address's own count stays: one valid account must not
    wipe the count of guesses against others; so does the account's count of wrong codes, or a sign-in by the officer
    would give whoever else holds the password a new allowance of guesses)."""
    await executor.execute("DELETE FROM console_throttle WHERE scope = $1", f"account:{name}|{address}")
