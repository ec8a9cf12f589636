"""Gap-free appends to the ledger inside the caller's transaction (docs/protocol.md §13).

The next index comes from the one-row `ledger_size` table, locked `FOR UPDATE` by the
appending transaction: concurrent appenders (any process) queue on that row, and a
rolled-back transaction gives its indexes back, so the ledger never has a gap — which a
SEQUENCE cannot promise. The hub appends a whole group-committed batch under one lock.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from gateway.ledger.entries import LedgerEntry, leaf_hash


class LedgerAppender:
    """Appends for one transaction: `reserve` locks the size row, `add` takes the next index."""

    def __init__(self, connection: asyncpg.Connection) -> None:
        self._connection = connection
        self._next: int | None = None
        self._start: int | None = None

    async def reserve(self) -> None:
        """Lock the size row for the rest of the transaction and read the next index."""
        self._next = await self._connection.fetchval("SELECT size FROM ledger_size FOR UPDATE")
        self._start = self._next

    @property
    def next_index(self) -> int:
        if self._next is None:
            raise RuntimeError("reserve() first")
        return self._next

    async def add(self, entry: LedgerEntry) -> int:
        """Insert `entry` at the next index and return that index."""
        index = self.next_index
        data = entry.canonical()
        await self._connection.execute(
            "INSERT INTO ledger_entries (idx, entry, leaf_hash) VALUES ($1, $2, $3)", index, data, leaf_hash(data)
        )
        self._next = index + 1
        return index

    def rewind(self, index: int) -> None:
        """Give back indexes from `index` on, after the caller rolled back a savepoint holding them."""
        if self._start is None or not self._start <= index <= self.next_index:
            raise ValueError("can only rewind to an index reserved in this transaction")
        self._next = index

    async def finish(self) -> None:
        """Record the new size; call last, inside the same transaction."""
        if self._next is not None and self._next != self._start:
            await self._connection.execute("UPDATE ledger_size SET size = $1", self._next)


async def append(connection: asyncpg.Connection, entries: Sequence[LedgerEntry]) -> list[int]:
    """Append `entries` in order inside the caller's transaction; return their indexes."""
    appender = LedgerAppender(connection)
    await appender.reserve()
    indexes = [await appender.add(entry) for entry in entries]
    await appender.finish()
    return indexes
