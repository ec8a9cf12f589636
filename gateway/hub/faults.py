"""Deterministic kill and hold points for crash and race tests (honoured only in test mode).

`GATEWAY_KILL_POINT=STAGE:N` makes the process kill itself with SIGKILL — no
cleanup, no flush, as a power cut or the OOM killer would — when the N-th batch of
the group committer reaches STAGE: `before-commit` (the work is done inside the
transaction, COMMIT not yet sent) or `after-commit` (durable, but nobody answered);
or when the N-th push delivery reaches `during-lease` (leased, receiver not called)
or `after-push-answer` (the receiver answered, nothing of it recorded); or when the
N-th pull that leased deliveries reaches `pull-leased` (the lease committed, the answer
not yet written).
The crash tests use it instead of sleeping and hoping to hit a window.

`GATEWAY_HOLD_POINT=before-commit:N` holds the N-th batch's transaction open until the
database shows another gateway transaction waiting on its locks (at most 60 s), then
logs `hold_released` and commits: the race tests' proof that two processes overlapped.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
from collections.abc import Awaitable, Callable

import asyncpg
import structlog

VARIABLE = "GATEWAY_KILL_POINT"
HOLD_VARIABLE = "GATEWAY_HOLD_POINT"
_CONTENDED = (
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
    " AND wait_event_type = 'Lock' AND application_name LIKE 'gateway:%'"
)
_log = structlog.get_logger(__name__)
STAGES = ("before-commit", "after-commit")
DELIVERY_STAGES = ("during-lease", "after-push-answer", "pull-leased")
Hook = Callable[[int], Awaitable[None]]


def kill_point_hooks(mode: str, environ: dict[str, str] | os._Environ[str] = os.environ) -> tuple[Hook | None, Hook | None]:
    """(before-commit hook, after-commit hook) for the configured kill point, or (None, None)."""
    parsed = _kill_point(mode, environ)
    if parsed is None or parsed[0] not in STAGES:
        return None, None
    stage, target = parsed
    batches = 0

    async def hook(batch_size: int) -> None:
        nonlocal batches
        batches += 1
        if batches == target:
            os.kill(os.getpid(), signal.SIGKILL)

    return (hook, None) if stage == "before-commit" else (None, hook)


def delivery_kill_point(mode: str, environ: dict[str, str] | os._Environ[str] = os.environ) -> Callable[[str], Awaitable[None]] | None:
    """The delivery worker's kill point, or None: SIGKILL the N-th time a delivery reaches STAGE.

    `during-lease`: the lease is committed, the receiver not yet called. `after-push-answer`:
    the receiver answered (its receipt is in hand) but the hub has recorded nothing of it.
    `pull-leased`: a pull's lease is committed, its answer not yet written.
    """
    parsed = _kill_point(mode, environ)
    if parsed is None or parsed[0] not in DELIVERY_STAGES:
        return None
    stage, target = parsed
    reached = 0

    async def hit(at: str) -> None:
        nonlocal reached
        if at != stage:
            return
        reached += 1
        if reached == target:
            os.kill(os.getpid(), signal.SIGKILL)

    return hit


def _kill_point(mode: str, environ: dict[str, str] | os._Environ[str]) -> tuple[str, int] | None:
    setting = environ.get(VARIABLE)
    if not setting:
        return None
    if mode != "test":
        raise ValueError(f"{VARIABLE} is a test facility and is refused in {mode} mode")
    stages = STAGES + DELIVERY_STAGES
    match = re.fullmatch(r"([a-z-]+):([1-9][0-9]*)", setting)
    if match is None or match.group(1) not in stages:
        raise ValueError(f"{VARIABLE} must be STAGE:N with STAGE one of {', '.join(stages)}, not {setting!r}")
    return match.group(1), int(match.group(2))


def hold_point_hook(mode: str, dsn: str, environ: dict[str, str] | os._Environ[str] = os.environ) -> Hook | None:
    """A before-commit hook for GATEWAY_HOLD_POINT, or None when it is not set."""
    setting = environ.get(HOLD_VARIABLE)
    if not setting:
        return None
    if mode != "test":
        raise ValueError(f"{HOLD_VARIABLE} is a test facility and is refused in {mode} mode")
    match = re.fullmatch(r"before-commit:([1-9][0-9]*)", setting)
    if match is None:
        raise ValueError(f"{HOLD_VARIABLE} must be before-commit:N, not {setting!r}")
    target, batches = int(match.group(1)), 0

    async def hook(batch_size: int) -> None:
        nonlocal batches
        batches += 1
        if batches != target:
            return
        connection = await asyncpg.connect(dsn)
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 60
            while await connection.fetchval(_CONTENDED) == 0:
                if loop.time() > deadline:
                    _log.error("hold_timed_out", batch=batches)
                    return
                await asyncio.sleep(0.005)  # polls the database for a condition, bounded by the deadline
            _log.info("hold_released", batch=batches)
        finally:
            await connection.close()

    return hook


def chain(*hooks: Hook | None) -> Hook | None:
    """One hook that awaits each given hook in turn (None when there is none)."""
    present = [hook for hook in hooks if hook is not None]
    if not present:
        return None

    async def chained(batch_size: int) -> None:
        for hook in present:
            await hook(batch_size)

    return chained
