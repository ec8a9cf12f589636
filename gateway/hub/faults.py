"""Deterministic kill points for crash tests (honoured only in test mode).

`GATEWAY_KILL_POINT=STAGE:N` makes the process kill itself with SIGKILL — no
cleanup, no flush, as a power cut or the OOM killer would — when the N-th batch of
the group committer reaches STAGE: `before-commit` (the work is done inside the
transaction, COMMIT not yet sent) or `after-commit` (durable, but nobody answered).
The crash tests use it instead of sleeping and hoping to hit a window.
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Awaitable, Callable

VARIABLE = "GATEWAY_KILL_POINT"
STAGES = ("before-commit", "after-commit")
Hook = Callable[[int], Awaitable[None]]


def kill_point_hooks(mode: str, environ: dict[str, str] | os._Environ[str] = os.environ) -> tuple[Hook | None, Hook | None]:
    """(before-commit hook, after-commit hook) for the configured kill point, or (None, None)."""
    setting = environ.get(VARIABLE)
    if not setting:
        return None, None
    if mode != "test":
        raise ValueError(f"{VARIABLE} is a test facility and is refused in {mode} mode")
    match = re.fullmatch(r"(before-commit|after-commit):([1-9][0-9]*)", setting)
    if match is None:
        raise ValueError(f"{VARIABLE} must be STAGE:N with STAGE one of {', '.join(STAGES)}, not {setting!r}")
    stage, target = match.group(1), int(match.group(2))
    batches = 0

    async def hook(batch_size: int) -> None:
        nonlocal batches
        batches += 1
        if batches == target:
            os.kill(os.getpid(), signal.SIGKILL)

    return (hook, None) if stage == "before-commit" else (None, hook)
