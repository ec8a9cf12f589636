"""Gap-free appends to the ledger inside the caller's transaction (docs/protocol.md §13).

The next index comes from the one-row `ledger_size` table, locked `FOR UPDATE` by the
appending transaction: concurrent appenders (any process) queue on that row, and a
rolled-back transaction gives its indexes back, so the ledger never has a gap — which a
SEQUENCE cannot promise. The hub appends a whole group-committed batch under one lock.

`add` only takes the next index and keeps the canonical bytes and leaf hash in memory
(a savepoint rolled back gives its indexes back through `rewind`). `finish` writes the
batch in one statement: the entries, the tree's new perfect nodes (level 0 included),
one tree head for the new size with its root and edges, and the new size
(gateway/ledger/tree.py). The tree's right edge is loaded from the database at every
`finish` (one query of at most log2(n) + 2 rows) and checked against the stored head
of the current size; it is deliberately not cached in the process: `finish` runs
before COMMIT, so a cache would have to guess whether that commit happened, and a
batch whose commit failed would leave a cached edge for a size that another process
may then reach with other entries.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from gateway.ledger.entries import LedgerEntry
from gateway.ledger.merkle import leaf_hash
from gateway.ledger.tree import Head, write_append


class LedgerAppender:
    """Appends for one transaction: `reserve` locks the size row, `add` takes the next index, `finish` writes."""

    def __init__(self, connection: asyncpg.Connection) -> None:
        self._connection = connection
        self._next: int | None = None
        self._start: int | None = None
        self._entries: list[bytes] = []
        self._leaves: list[bytes] = []
        self.head: Head | None = None
        """The tree head written by `finish` (None until then, or when nothing was added)."""

    async def reserve(self) -> None:
        """Lock the size row for the rest of the transaction and read the next index."""
        self._next = await self._connection.fetchval("SELECT size FROM ledger_size FOR UPDATE")
        self._start = self._next
        self._entries.clear()
        self._leaves.clear()

    @property
    def next_index(self) -> int:
        if self._next is None:
            raise RuntimeError("reserve() first")
        return self._next

    async def add(self, entry: LedgerEntry) -> int:
        """Take the next index for `entry` and return it; `finish` writes it."""
        index = self.next_index
        data = entry.canonical()
        self._entries.append(data)
        self._leaves.append(leaf_hash(data))
        self._next = index + 1
        return index

    def rewind(self, index: int) -> None:
        """Give back indexes from `index` on, after the caller rolled back a savepoint holding them."""
        if self._start is None or not self._start <= index <= self.next_index:
            raise ValueError("can only rewind to an index reserved in this transaction")
        del self._entries[index - self._start:]
        del self._leaves[index - self._start:]
        self._next = index

    async def finish(self) -> None:
        """Write the entries, extend the tree and record the new size; call last, inside the same transaction."""
        if self._start is None or self._next is None or self._next == self._start:
            return
        self.head = await write_append(self._connection, self._start, self._entries, self._leaves)
        self._start = self._next
        self._entries.clear()
        self._leaves.clear()


async def append(connection: asyncpg.Connection, entries: Sequence[LedgerEntry]) -> list[int]:
    """Append `entries` in order inside the caller's transaction; return their indexes."""
    appender = LedgerAppender(connection)
    await appender.reserve()
    indexes = [await appender.add(entry) for entry in entries]
    await appender.finish()
    return indexes
