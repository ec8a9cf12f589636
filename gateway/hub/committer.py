"""Group commit: concurrent acceptances share one transaction (DESIGN.md, "The hub pipeline").

Requests hand their in-transaction work to `GroupCommitter.run` and wait. One loop per
process takes everything queued (up to `max_batch`, waiting at most `max_wait_ms` for
more), runs each piece of work inside its own savepoint of one transaction — so one failing message never aborts its
neighbours — with the ledger's size row locked once for the whole batch, commits, and
only then answers every waiter. Nobody is answered before the commit is durable. What is
queued while the batch waits for that lock (another process holds it) joins the batch.

With `max_wait_ms = 0` a lone message is committed at once, and under load the messages
that arrive while a batch commits form the next one; a few milliseconds of wait let
more requests share one commit when commits are quick.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
import structlog

from gateway.hub.stages import STAGE_TIMES
from gateway.ledger.append import LedgerAppender

T = TypeVar("T")
Work = Callable[[asyncpg.Connection, LedgerAppender], Awaitable[Any]]

_log = structlog.get_logger(__name__)


class GroupCommitter:
    """Batches work into shared transactions on `pool`. Start with `start()`, end with `close()`."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        max_batch: int = 256,
        max_wait_ms: float = 0.0,
        before_commit: Callable[[int], Awaitable[None]] | None = None,
        after_commit: Callable[[int], Awaitable[None]] | None = None,
    ) -> None:
        self._pool = pool
        self._max_batch = max_batch
        self._max_wait = max_wait_ms / 1000
        self._queue: asyncio.Queue[tuple[Work, asyncio.Future[Any], bool]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        # Test hooks, awaited with the batch size: after the work ran but before COMMIT,
        # and after COMMIT but before anyone is answered (gateway.hub.faults).
        self._before_commit = before_commit
        self._after_commit = after_commit

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="group-commit")

    async def close(self) -> None:
        """Finish what is queued, then stop."""
        if self._task is None:
            return
        await self._queue.join()
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        self._task = None

    async def run(self, work: Work, *, savepoint: bool = True) -> Any:
        """Run `work(connection, appender)` in the next batch; return its result once committed.

        The work runs in a savepoint of its own unless it says (`savepoint=False`) that it reports its
        refusals as values and writes nothing it would have to undo: then it runs bare, and only if it raises
        is the batch run again with a savepoint around every work.
        """
        return await self.submit(work, savepoint=savepoint)

    def submit(self, work: Work, *, savepoint: bool = True) -> asyncio.Future[Any]:
        """Queue `work` now and return the future of its result: works submitted one after another run in
        that order (a bulk body's lines, docs/protocol.md PROTO-12.9-1)."""
        if self._task is None:
            raise RuntimeError("the committer is not running")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((work, future, savepoint))
        return future

    async def _loop(self) -> None:
        while True:
            batch = [await self._queue.get()]
            deadline = asyncio.get_running_loop().time() + self._max_wait
            while len(batch) < self._max_batch:
                if not self._queue.empty():
                    batch.append(self._queue.get_nowait())
                    continue
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), remaining))
                except TimeoutError:
                    break
            try:
                await self._commit(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _commit(self, batch: list[tuple[Work, asyncio.Future[Any], bool]]) -> None:
        try:
            try:
                outcomes = await self._run(batch, isolated=False)
            except _BareWorkFailed:
                # A work run without a savepoint failed, and the transaction may hold part of it: roll back (done)
                # and run the batch again with every work in its own savepoint, so the fault stays its own.
                outcomes = await self._run(batch, isolated=True)
        except Exception as failure:  # noqa: BLE001 - the loop must survive, and every waiter must be answered
            _log.error("batch_commit_failed", batch=len(batch), error=type(failure).__name__)
            unavailable = isinstance(failure, (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError,
                                               asyncio.TimeoutError))
            for _, future, _ in batch:
                if not future.done():
                    future.set_exception(CommitFailed(type(failure).__name__) if unavailable else failure)
            return
        if self._after_commit is not None:
            try:
                await self._after_commit(len(batch))
            except Exception as error:  # noqa: BLE001 - a test hook must not stop the loop
                _log.error("after_commit_hook_failed", error=type(error).__name__)
        for future, result, error in outcomes:
            if future.done():
                continue
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)

    async def _run(
        self, batch: list[tuple[Work, asyncio.Future[Any], bool]], *, isolated: bool
    ) -> list[tuple[asyncio.Future[Any], Any, BaseException | None]]:
        """One transaction for the batch. Works that asked for a savepoint get one; the others (the acceptance of one
        message, which reports its refusals as values and writes nothing before it is sure) run bare — two round trips
        a message less — unless `isolated`. A bare work that raises aborts this attempt with `_BareWorkFailed`."""
        outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        async with self._pool.acquire() as connection:
            transaction = connection.transaction()
            await transaction.start()
            try:
                started = time.perf_counter()
                appender = LedgerAppender(connection)
                await appender.reserve()
                ledger_seconds = time.perf_counter() - started
                self._take_queued(batch)
                position = 0
                while position < len(batch):
                    work, future, savepoint = batch[position]
                    position += 1
                    mark = appender.next_index
                    many = getattr(work, "run_many", None)
                    if many is not None and not (savepoint or isolated):
                        # Consecutive works that can run together (the acceptances of messages) run as one call.
                        group = [(work, future)]
                        while position < len(batch) and not batch[position][2] and getattr(batch[position][0], "run_many", None) == many:
                            group.append(batch[position][:2])
                            position += 1
                        try:
                            results = await many(connection, appender, [item for item, _ in group])
                        except Exception as error:
                            if _unavailable(error):
                                raise
                            raise _BareWorkFailed() from error
                        outcomes += [(waiter, result, None) for (_, waiter), result in zip(group, results, strict=True)]
                        continue
                    if not (savepoint or isolated):
                        try:
                            outcomes.append((future, await work(connection, appender), None))
                        except Exception as error:
                            if _unavailable(error):
                                raise
                            raise _BareWorkFailed() from error
                        continue
                    try:
                        async with connection.transaction():  # a savepoint per piece of work
                            outcomes.append((future, await work(connection, appender), None))
                    except Exception as error:  # noqa: BLE001 - one message's fault stays its own
                        if _unavailable(error):
                            raise
                        appender.rewind(mark)
                        outcomes.append((future, None, error))
                started = time.perf_counter()
                await appender.finish()
                STAGE_TIMES.add("ledger_write", ledger_seconds + time.perf_counter() - started)
                if self._before_commit is not None:
                    await self._before_commit(len(batch))
            except BaseException:
                # A lost connection cannot roll back; PostgreSQL ends its transaction when it drops the session.
                with contextlib.suppress(Exception):
                    await transaction.rollback()
                raise
            with STAGE_TIMES.timed("commit"):
                await transaction.commit()
        return outcomes

    def _take_queued(self, batch: list[tuple[Work, asyncio.Future[Any], bool]]) -> None:
        """Add to `batch` what was queued while it waited for the ledger lock, up to `max_batch`.

        Another process held the lock meanwhile (several processes on one database). What arrived in that wait would
        otherwise wait for this batch to commit, then for the lock again; taken now, it shares this commit. That is
        the group commit the wait for the lock allows: the longer the wait, the larger the batch, and the fewer commits
        the processes take turns on (docs/performance.md, "Ninth pass"). `batch` grows in place, so the loop counts
        every work it took off the queue, and a batch run again (`isolated`) keeps its works.
        """
        while len(batch) < self._max_batch and not self._queue.empty():
            batch.append(self._queue.get_nowait())


def _unavailable(error: BaseException) -> bool:
    """The database is out of reach: nothing of the batch is durable, and retrying it at once would not help."""
    return isinstance(error, (OSError, asyncpg.InterfaceError, asyncpg.InternalClientError, asyncio.TimeoutError)) or (
        isinstance(error, asyncpg.PostgresError) and (getattr(error, "sqlstate", "") or "")[:2] in ("08", "57", "53")
    )


class _BareWorkFailed(Exception):
    """A work run without a savepoint raised: the batch is run again with a savepoint per work."""


class CommitFailed(Exception):
    """The batch's transaction did not commit: nothing of it is durable; the sender may retry."""


# SQLSTATE classes and codes that mean "the database cannot serve now", not "this request is wrong":
# 08 connection exception, 53 insufficient resources, 57 operator intervention (shutdown,
# cannot connect now), 55000 database does not allow connections, 55P03 lock not available
# (lock_timeout: another transaction held the ledger too long), 3D000 database missing, 25006 read-only.
_UNAVAILABLE_CLASSES = frozenset({"08", "53", "57"})
_UNAVAILABLE_STATES = frozenset({"55000", "55P03", "3D000", "25006"})
"""25006 read-only transaction: the hub reached a standby, e.g. during a failover (docs/operations.md)."""


def database_unavailable(error: BaseException) -> bool:
    """True when `error` says the database is out of reach (answer 503), not that the hub is wrong."""
    # asyncpg's InternalClientError is what a connection cut mid-operation can raise (seen when PostgreSQL
    # stopped under load, tests/faults/test_database_restart.py). Committed or not, the identical resend
    # that 503 asks for is answered correctly (§8.2).
    if isinstance(error, (CommitFailed, OSError, asyncpg.InterfaceError, asyncpg.InternalClientError, TimeoutError)):
        return True
    state = getattr(error, "sqlstate", None) or ""
    return isinstance(error, asyncpg.PostgresError) and (state[:2] in _UNAVAILABLE_CLASSES or state in _UNAVAILABLE_STATES)
