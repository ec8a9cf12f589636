"""Counters that the workers of one `gateway serve --workers N` add up (docs/operations.md).

A `Board` is a fixed list of named counters (float64) with one slot of them per process. A
process adds only to its own slot, and reads the sum over all slots: so `/metrics` gives the
same totals whichever worker answers the scrape, where each worker's own figures would make
every counter jump up and down from one scrape to the next.

A board starts with one slot in private memory (one process, and every hub a test builds in
its own process). Before it forks the workers, the supervisor calls `share(workers)`: the
slots then live in one anonymous shared mapping that every forked worker inherits, and each
worker calls `use_slot(i)` with its own number. A worker started again in place of one that
died takes that one's slot and goes on from its figures, so the totals never go back.

Each slot has one writer, and an aligned 8-byte store is atomic on the platforms we run on, so
a reader sees each counter either before or after an addition, never torn; a sum over slots is
not one instant, which counters do not need. We use `mmap` rather than
`multiprocessing.shared_memory`, which would name a file in /dev/shm that a killed supervisor
leaves behind.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterable

_DOUBLE = 8


class Board:
    """Named float64 counters: this process adds to its slot, `total` sums every slot."""

    def __init__(self, names: Iterable[str]) -> None:
        self.names = tuple(names)
        self.index = {name: position for position, name in enumerate(self.names)}
        if len(self.index) != len(self.names):
            raise ValueError("a board's counter names must be distinct")
        self.slots = 1
        self._all = memoryview(bytearray(_DOUBLE * len(self.names))).cast("d")
        self.mine = self._all
        """This process's slot: counter `i` is `mine[i]` (`index[name]`). Hot paths add to it directly."""

    def share(self, slots: int) -> None:
        """Move the counters into memory that processes forked after this call share, `slots` of them.

        The figures counted so far go to slot 0; every slot starts at zero otherwise."""
        if slots < 1:
            raise ValueError("a board needs at least one slot")
        width = len(self.names)
        shared = memoryview(mmap.mmap(-1, max(_DOUBLE * width * slots, 1))).cast("d")
        for position in range(width):
            shared[position] = self.mine[position]
        self._all, self.slots = shared, slots
        self.mine = shared[:width]

    def use_slot(self, slot: int) -> None:
        """Add to slot `slot` from now on (a worker's own number, from 0)."""
        if not 0 <= slot < self.slots:
            raise ValueError(f"slot {slot} is not one of this board's {self.slots}")
        width = len(self.names)
        self.mine = self._all[slot * width:(slot + 1) * width]

    def add(self, name: str, amount: float = 1.0) -> None:
        self.mine[self.index[name]] += amount

    def total(self, name: str) -> float:
        """The counter summed over every slot."""
        position, width = self.index[name], len(self.names)
        return sum(self._all[position::width])
