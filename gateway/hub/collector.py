"""Python's cyclic garbage collector in a serving process: what startup built is frozen, pauses are counted.

A collection of the oldest generation traverses every object the collector tracks, and while it runs the process's
event loop runs nothing else: every request in flight in that process waits. Most of those objects are built once,
at startup (modules, compiled schemas, the trust list, the application), and live as long as the process; traversing
them again every few seconds finds nothing to free. `freeze_startup_objects`, called once a process serves, collects
once and moves every survivor into the permanent generation (`gc.freeze`), which collections no longer visit: what
is left to traverse is what the process made since. Frozen objects are still freed by reference counting; only a
cycle among them would stay, and the collection just before the freeze has already freed the cycles startup left.

`CollectorPauses` counts each collection's pause by generation in a histogram, on a `Board` (gateway/hub/counters.py)
that the workers of `gateway serve --workers N` share, for `/metrics` (docs/operations.md) and bench/accept.py.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

from gateway.hub.counters import Board

GENERATIONS = (0, 1, 2)
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)
"""Upper bounds of the pause histogram, in seconds (Prometheus `le`); a pause above the last counts only in +Inf."""


class CollectorPauses:
    """A histogram of the collector's pauses by generation, plus the objects each process froze."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        names = ["frozen_objects"]
        for generation in GENERATIONS:
            names += [f"seconds:{generation}", f"count:{generation}", *(f"le:{generation}:{bound}" for bound in BUCKETS)]
        self.board = Board(names)
        self._seconds = {generation: self.board.index[f"seconds:{generation}"] for generation in GENERATIONS}
        self._clock = clock
        self._started = 0.0

    def install(self) -> None:
        """Count every collection of this process from now on (once; a second call changes nothing)."""
        if self._callback not in gc.callbacks:
            gc.callbacks.append(self._callback)

    def uninstall(self) -> None:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = self._clock()
            return
        pause = self._clock() - self._started
        mine, position = self.board.mine, self._seconds[info["generation"]]
        mine[position] += pause  # seconds, then count, then the buckets in order (see __init__)
        mine[position + 1] += 1
        for offset, bound in enumerate(BUCKETS):
            if pause <= bound:
                mine[position + 2 + offset] += 1  # a histogram's buckets are cumulative: every bound above counts it

    def froze(self, objects: int) -> None:
        """Record that this process moved `objects` into the permanent generation (its slot's figure is replaced)."""
        self.board.mine[self.board.index["frozen_objects"]] = objects

    def seconds(self, generation: int) -> float:
        return self.board.total(f"seconds:{generation}")

    def count(self, generation: int) -> int:
        return int(self.board.total(f"count:{generation}"))

    def bucket(self, generation: int, bound: float) -> int:
        return int(self.board.total(f"le:{generation}:{bound}"))

    def lines(self) -> list[str]:
        """The Prometheus text: `gateway_gc_pause_seconds` (a histogram by generation) and the frozen objects."""
        lines = [
            "# HELP gateway_gc_pause_seconds Pauses of Python's cyclic garbage collector, by generation: the event loop "
            "runs nothing while one lasts (gateway/hub/collector.py).",
            "# TYPE gateway_gc_pause_seconds histogram",
        ]
        for generation in GENERATIONS:
            label = f'generation="{generation}"'
            lines += [f'gateway_gc_pause_seconds_bucket{{{label},le="{bound}"}} {self.bucket(generation, bound)}' for bound in BUCKETS]
            lines += [
                f'gateway_gc_pause_seconds_bucket{{{label},le="+Inf"}} {self.count(generation)}',
                f"gateway_gc_pause_seconds_sum{{{label}}} {self.seconds(generation):.6f}",
                f"gateway_gc_pause_seconds_count{{{label}}} {self.count(generation)}",
            ]
        lines += [
            "# HELP gateway_gc_frozen_objects Objects that startup built and the serving processes moved out of the "
            "collector's reach (gc.freeze), summed over the workers.",
            "# TYPE gateway_gc_frozen_objects gauge",
            f"gateway_gc_frozen_objects {int(self.board.total('frozen_objects'))}",
        ]
        return lines


COLLECTOR_PAUSES = CollectorPauses()
"""The process's collector figures: one hub per process in production; in-process test hubs share it."""


def freeze_startup_objects() -> int:
    """Collect every generation once, then freeze what survived (see the module's text); the number of objects frozen."""
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    COLLECTOR_PAUSES.froze(frozen)
    return frozen
