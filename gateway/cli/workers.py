"""`gateway serve --workers N`: N processes serve one address (docs/operations.md, "Running several gateway processes").

Each worker is a whole gateway process — its own event loop, database pool, group committer and background
tasks — forked from the supervisor after the configuration is checked and the database found. They listen on the
same port with SO_REUSEPORT, and the kernel spreads new connections over them. Nothing else is shared but
PostgreSQL, exactly as for processes started one by one, and the counters of `/metrics`, which every worker adds
to its own slot of shared memory and reports summed (gateway/hub/counters.py). Abuse limits stay per worker.
Each worker has a slot number from 0 to N-1; one started in place of a dead one takes its slot.

The supervisor prints `gateway: serving URL ... (N workers, pids ...)` once every worker listens. It starts a worker
again when one dies, at most once a second, and prints `gateway: worker PID serving (it replaces PID)` once the new
one listens; a worker that cannot start at all ends the whole. On SIGTERM or SIGINT it passes the signal on and waits
until every worker has drained.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import Callable

from gateway.logs import write_line

Serve = Callable[[int, int, bool, Callable[[str], None]], int]
"""Run one worker: serve(slot, port, reuse_port, ready) calls ready(line) once it listens and returns its exit status."""

RESTART_INTERVAL = 1.0
"""A worker that died is started again, but not sooner than this after its previous start."""


def supervise(count: int, host: str, port: int, serve: Serve) -> int:
    """Run `count` workers of `serve` on `host`:`port` (0: a free port, the same for all) until SIGTERM or SIGINT."""
    holder = None
    if port == 0:  # choose the port once, and hold it until every worker listens on it
        holder = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        holder.bind((host, 0))
        port = holder.getsockname()[1]
    stopping = False
    workers: dict[int, tuple[float, int]] = {}  # pid: (when it started, its slot)

    def stop(signal_number: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        _pass_on(workers, signal.SIGTERM)  # each drains its requests and exits; os.wait() below sees them go

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    first_line = ""
    try:
        for slot in range(count):
            pid, line = _start(serve, slot, port)
            workers[pid] = (time.monotonic(), slot)
            first_line = first_line or line
        if holder is not None:
            holder.close()
        write_line(f"{first_line} ({count} workers, pids {' '.join(map(str, workers))})", sys.stdout)
        while workers:
            try:
                pid, status = os.wait()
            except InterruptedError:
                continue
            except ChildProcessError:
                break
            ended = workers.pop(pid, None)
            if ended is None or stopping:
                continue
            started, slot = ended
            write_line(f"gateway: worker {pid} ended ({_describe(status)}); starting another")
            time.sleep(max(0.0, started + RESTART_INTERVAL - time.monotonic()))  # a worker that keeps dying: once a second
            new_pid, _ = _start(serve, slot, port)
            workers[new_pid] = (time.monotonic(), slot)
            write_line(f"gateway: worker {new_pid} serving (it replaces {pid})", sys.stdout)
            if stopping:  # the stop came while this one started
                _pass_on(workers, signal.SIGTERM)
    finally:
        _pass_on(workers, signal.SIGTERM)
        for pid in list(workers):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        if holder is not None:
            holder.close()
    return 0 if stopping else 1


def _start(serve: Serve, slot: int, port: int) -> tuple[int, str]:
    """Fork worker number `slot`; return its pid and its `serving` line, once it listens."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the worker
        os.close(read_end)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)

        def ready(line: str) -> None:
            os.write(write_end, line.encode() + b"\n")
            os.close(write_end)

        status = 1
        try:
            status = serve(slot, port, True, ready)
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        line = pipe.readline().decode().strip()
    if not line:
        _, status = os.waitpid(pid, 0)
        raise SystemExit(f"gateway: a worker did not start ({_describe(status)})")
    return pid, line


def _pass_on(workers: dict[int, tuple[float, int]], signal_number: int) -> None:
    for pid in workers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal_number)


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"signal {os.WTERMSIG(status)}"
    return f"exit {os.WEXITSTATUS(status)}"
