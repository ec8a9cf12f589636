"""The group committer (gateway/hub/committer.py) on a real database: what is queued while a batch waits for the
ledger lock joins that batch, in order, up to `max_batch`.

Another connection holds the ledger's size row, as another gateway process's batch would. Each work returns the id of
the transaction it ran in, so the test reads which works shared a commit.
"""

from __future__ import annotations

import asyncio

import asyncpg

from gateway.hub.committer import GroupCommitter
from gateway.store.migrate import migrate
from tests.delivery.test_faults import until

_WAITING = (
    "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
    " AND query LIKE '%ledger_size%'"
)


async def _transaction_id(connection: asyncpg.Connection, appender) -> int:
    return await connection.fetchval("SELECT txid_current()")


async def _batches_while_another_holds_the_lock(database_url: str, max_batch: int, later: int) -> list[int]:
    """Submit one work, wait until its batch waits for the ledger lock, submit `later` more, release: the transaction
    id each work ran in, in submission order."""
    setup = await asyncpg.connect(database_url)
    try:
        await migrate(setup)
    finally:
        await setup.close()
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    committer = GroupCommitter(pool, max_batch=max_batch)
    committer.start()
    holder = await asyncpg.connect(database_url)
    try:
        holding = holder.transaction()
        await holding.start()
        await holder.execute("SELECT size FROM ledger_size FOR UPDATE")
        first = committer.submit(_transaction_id)
        await until(database_url, _WAITING)
        queued = [committer.submit(_transaction_id) for _ in range(later)]
        await holding.rollback()
        return list(await asyncio.gather(first, *queued))
    finally:
        await holder.close()
        await committer.close()
        await pool.close()


def test_what_is_queued_while_a_batch_waits_for_the_ledger_lock_joins_that_batch(database_url):
    ids = asyncio.run(_batches_while_another_holds_the_lock(database_url, max_batch=256, later=3))
    assert len(set(ids)) == 1, f"one commit for all four, not {ids}"


def test_the_batch_that_waited_grows_only_up_to_max_batch_and_keeps_the_order(database_url):
    ids = asyncio.run(_batches_while_another_holds_the_lock(database_url, max_batch=2, later=3))
    assert ids[0] == ids[1] != ids[2] == ids[3], f"the first two together, the next two in the next batch: {ids}"
