"""Where an acceptance spends its time: seconds per pipeline stage, for `/metrics` and bench/ (docs/performance.md).

Each stage is timed around the code that does it, in the process that does it. CPU stages (`CPU_STAGES`: work that
does not yield) count the thread's CPU time, so other processes on the same cores do not inflate them. Stages that
await the database (`lookup`, `batch_lookup`, `insert`, `ledger_write`, `commit`, `inbox_claim`) and `queue`
measure wall time, which includes waiting for PostgreSQL and for the event loop. The
figures are counters since the process started, summed over the workers of `gateway serve --workers N`
(gateway/hub/counters.py); a benchmark reads them before and after its window and divides by the messages it
measured. Timing costs about 1.4 µs a CPU stage (two readings of the thread's CPU clock, a system call each)
and 0.9 µs a wall-time stage.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from gateway.hub.counters import Board

STAGES = (
    ("signature", "JWS parse, key lookup and Ed25519 verification (§3)"),
    ("payload", "strict I-JSON parse of the payload (§4)"),
    ("lookup", "the one query before the queue: resend by digest, conflict by id (§8.2, §8.3); database wall time"),
    ("envelope", "freshness, schema, sender and receiver, route policy, adapters (§5-§8, §12.3)"),
    ("queue", "waiting in the group committer's queue for a batch"),
    ("batch_lookup", "the batch's read of id, key, case (locked) and reply_to (§7, §10.4); database wall time"),
    ("decide", "the case state machine and reply_to checks (§5.2, §7)"),
    ("receipt_sign", "signing the hub receipt (§9.1)"),
    ("seal", "AES-256-GCM sealing of the stored payload"),
    ("insert", "the one statement writing case, message and outbox; database wall time"),
    ("ledger_write", "locking the ledger's size row and writing the batch's entries and tree nodes (§13); wall time, per batch"),
    ("commit", "COMMIT, durable (fsync); wall time, per batch"),
    ("inbox_claim", "leasing deliveries for a pull (§12.6); database wall time"),
    ("attest", "signing attestations and building local views of pulled deliveries (§9.2, §9.3)"),
)
"""Every stage, in pipeline order, with what it covers."""

CPU_STAGES = frozenset({"signature", "payload", "envelope", "decide", "receipt_sign", "seal", "attest"})
"""Stages that do not wait: timed in the thread's CPU time. The others are wall time."""


class StageTimes:
    """Counters of seconds and occurrences per stage, on a `Board` that workers share."""

    def __init__(self) -> None:
        # Each stage's seconds and count side by side: position p and p + 1 of the board's slot.
        self.board = Board(name for stage, _ in STAGES for name in (f"seconds:{stage}", f"count:{stage}"))
        self._position = {stage: self.board.index[f"seconds:{stage}"] for stage, _ in STAGES}

    def add(self, stage: str, seconds: float, count: int = 1) -> None:
        mine, position = self.board.mine, self._position[stage]
        mine[position] += seconds
        mine[position + 1] += count

    def timed(self, stage: str, count: int = 1) -> _Timed:
        """Time the block (`with STAGE_TIMES.timed(stage):`): in this thread's CPU seconds for a CPU stage (so that
        other processes on the same cores do not inflate it), in wall seconds for a stage that waits for the
        database."""
        return _Timed(self.board, self._position[stage], count, time.thread_time if stage in CPU_STAGES else time.perf_counter)

    def seconds(self, stage: str) -> float:
        return self.board.total(f"seconds:{stage}")

    def count(self, stage: str) -> int:
        return int(self.board.total(f"count:{stage}"))

    def lines(self) -> list[str]:
        """The Prometheus text of both counters."""
        return [
            "# HELP gateway_stage_seconds_total Seconds spent in each stage of the pipeline (gateway/hub/stages.py).",
            "# TYPE gateway_stage_seconds_total counter",
            *(f'gateway_stage_seconds_total{{stage="{name}"}} {self.seconds(name):.6f}' for name, _ in STAGES),
            "# HELP gateway_stage_count_total Times each stage ran (a batch stage counts once a batch).",
            "# TYPE gateway_stage_count_total counter",
            *(f'gateway_stage_count_total{{stage="{name}"}} {self.count(name)}' for name, _ in STAGES),
        ]


class _Timed:
    """One timed block. A plain class, not `contextlib.contextmanager`, whose generator, wrapper and StopIteration
    cost more than the clock readings: 2.0 against 1.4 µs a CPU stage, about ten blocks a message
    (docs/performance.md, "Eighth pass")."""

    __slots__ = ("_board", "_position", "_count", "_clock", "_started")

    def __init__(self, board: Board, position: int, count: int, clock: Callable[[], float]) -> None:
        self._board = board
        self._position = position
        self._count = count
        self._clock = clock
        self._started = 0.0

    def __enter__(self) -> None:
        self._started = self._clock()

    def __exit__(self, *_: object) -> None:
        mine, position = self._board.mine, self._position  # read at the end: a worker's slot is set after fork
        mine[position] += self._clock() - self._started
        mine[position + 1] += self._count


STAGE_TIMES = StageTimes()
"""The process's stage times: one hub per process in production; in-process test hubs share it."""
