"""Delivery: the push worker, the sweeper, and what a delivery is made of (docs/protocol.md §9.2, §9.3, §12.4-§12.7).

    claim (a committed lease)  ->  attestation + local view  ->  POST to the receiver, no lock held
        200 + receipt  -> Hub.accept(receipt, receipt_from=receiver): ledgers it, ends the delivery
        204 (a receipt delivered)  -> acknowledged, ledgered `delivered`
        anything else  -> retry after backoff with jitter, or dead-letter once the window passed

Each gateway process runs one `Deliverer`; they share the work through the outbox's
leases. A process killed mid-delivery leaves a lease that expires, and the delivery is
made again: receivers de-duplicate by id and answer with the same receipt (PROTO-9.4-3),
whose identical bytes the hub takes as a resend (§8.2). The `Sweeper` dead-letters what
no failed attempt did (receivers that never pull) and expires verification deadlines.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

import aiohttp
import asyncpg
import structlog

from gateway.hub import outbox
from gateway.hub.acceptance import Hub, deadline_entry
from gateway.hub.committer import GroupCommitter
from gateway.ledger.append import LedgerAppender
from gateway.ledger.entries import LedgerEntry
from gateway.protocol.errors import ProtocolError
from gateway.protocol.keys import PrivateKey
from gateway.protocol.statements import Attestation, Delivery, LocalView, sign_attestation
from gateway.protocol.timestamps import format_timestamp

MISSING_KEY_CHECK_SECONDS = 60.0
"""How often the push worker looks for queued pushes sealed under a payload key this process lacks."""

OUTBOX_CHANNEL = "gateway_outbox"
"""NOTIFY channel: the payload is the receiver whose outbox got work (gateway/hub/store.py)."""

_log = structlog.get_logger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    """Leases and retries (docs/configuration.md, [delivery])."""

    lease_seconds: float = 30.0
    retry_initial_seconds: float = 1.0
    retry_max_seconds: float = 300.0
    retry_window_seconds: float = 72 * 3600.0
    concurrency: int = 8
    push_timeout_seconds: float = 20.0
    sweep_seconds: float = 10.0

    def backoff(self, attempt: int, draw: Callable[[], float] = random.random) -> float:
        """Seconds to wait after failed attempt number `attempt` (1, 2, ...): half to all of the capped doubling (PROTO-12.4-3)."""
        ceiling = min(self.retry_max_seconds, self.retry_initial_seconds * 2.0 ** min(attempt - 1, 60))
        return ceiling * (0.5 + 0.5 * draw())

    def next_attempt(self, attempt: int, now: datetime, queued_at: datetime,
                     draw: Callable[[], float] = random.random) -> datetime | None:
        """When to try again after failed attempt number `attempt`, or None: dead-letter it now (PROTO-12.4-4).

        A retry whose backoff would land after the window closes is made once, `retry_initial_seconds` before it
        closes, so that a delivery is dead-lettered once its window has passed, not up to `retry_max_seconds` early.
        When that last attempt fails (it is made at or after that time), the delivery is dead-lettered.
        """
        closes = queued_at + timedelta(seconds=self.retry_window_seconds)
        due = now + timedelta(seconds=self.backoff(attempt, draw))
        if due <= closes:
            return due
        last_call = closes - timedelta(seconds=self.retry_initial_seconds)
        return last_call if now < last_call else None


def delivery_of(claimed: outbox.ClaimedDelivery, receipt_key: PrivateKey, local_view: LocalView | None = None) -> Delivery:
    """The delivery object of a claimed message (§9.3), with a fresh attestation (§9.2).

    The local view is empty until the receiver's adapter converts free text (adapters issue).
    """
    view = local_view or LocalView()
    attestation = Attestation(
        message_id=claimed.message_id,
        message_digest=claimed.digest,
        ledger_index=claimed.ledger_index,
        accepted_at=claimed.accepted_at,
        type=claimed.type,
        sender=claimed.sender,
        receiver=claimed.receiver,
        case=claimed.case,
        local_view_digest=view.digest,
    )
    return Delivery(claimed.compact, sign_attestation(attestation, receipt_key), view)


class Wakeups:
    """Wakes waiters when an outbox gets work (NOTIFY on OUTBOX_CHANNEL) or the process shuts down.

    A long poll (`long_poll`) watches its receiver from before each claim, so a notification that arrives while
    the claim runs ends its next wait at once instead of being lost. (Before, it registered only after an empty
    claim, and such a delivery waited for the next notification or the one-second re-check.) Every waiter also
    re-checks on a timer.
    """

    def __init__(self) -> None:
        self._waiting: dict[str, set[asyncio.Event]] = {}
        self._anything = asyncio.Event()
        self.closing = False

    def notified(self, connection: Any, pid: int, channel: str, receiver: str) -> None:
        for event in self._waiting.get(receiver, ()):
            event.set()
        self._anything.set()

    def close(self) -> None:
        self.closing = True
        for events in self._waiting.values():
            for event in events:
                event.set()
        self._anything.set()

    async def long_poll(
        self,
        receiver: str,
        look: Callable[[], Awaitable[list[T]]],
        seconds: float,
        *,
        stop: Callable[[], bool] = lambda: False,
        recheck_seconds: float = 1.0,
    ) -> list[T]:
        """`look()` until it finds something, `seconds` pass, `stop()` is true or the process shuts down.

        The receiver is watched from before each look: work committed while a look runs (and so not in what it
        found) ends the next wait at once, instead of waiting for the next notification or re-check. Without a
        notification it looks again every `recheck_seconds`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        found: list[T] = []
        woken = asyncio.Event()
        self._waiting.setdefault(receiver, set()).add(woken)
        try:
            while not stop():
                woken.clear()
                found = await look()
                remaining = deadline - loop.time()
                if found or remaining <= 0 or self.closing:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken.wait(), min(remaining, recheck_seconds))
        finally:
            waiting = self._waiting.get(receiver)
            if waiting is not None:
                waiting.discard(woken)
                if not waiting:
                    del self._waiting[receiver]
        return found

    async def for_anything(self, timeout: float) -> None:
        """Return when any outbox gets work, at shutdown, or after `timeout` seconds."""
        if self.closing:
            return
        try:
            await asyncio.wait_for(self._anything.wait(), timeout)
        except TimeoutError:
            pass
        self._anything.clear()


KillPoint = Callable[[str], Awaitable[None]]


class Deliverer:
    """Pushes deliveries to the push receivers, `policy.concurrency` at a time (PROTO-12.4-3, PROTO-12.5)."""

    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        committer: GroupCommitter,
        hub: Hub,
        receipt_key: PrivateKey,
        endpoints: dict[str, str],
        policy: DeliveryPolicy,
        process_id: str,
        clock: Callable[[], datetime],
        wakeups: Wakeups,
        kill_point: KillPoint | None = None,
        idle_poll_seconds: float = 1.0,
        ssl_context: Any = None,
    ) -> None:
        self._pool = pool
        self._committer = committer
        self._hub = hub
        self._receipt_key = receipt_key
        self._endpoints = dict(endpoints)
        self._policy = policy
        self._process_id = process_id
        self._clock = clock
        self._wakeups = wakeups
        self._kill_point = kill_point
        self._idle_poll = idle_poll_seconds
        self._in_flight: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None
        self._ssl = ssl_context if ssl_context is not None else True

    async def run(self) -> None:
        """Claim and push until cancelled."""
        if not self._endpoints:
            return
        timeout = aiohttp.ClientTimeout(total=self._policy.push_timeout_seconds, connect=min(10.0, self._policy.push_timeout_seconds))
        connector = aiohttp.TCPConnector(ssl=self._ssl)
        async with aiohttp.ClientSession(timeout=timeout, raise_for_status=False, connector=connector) as session:
            self._session = session
            next_key_check = 0.0
            try:
                while not self._wakeups.closing:
                    if time.monotonic() >= next_key_check:
                        next_key_check = time.monotonic() + MISSING_KEY_CHECK_SECONDS
                        await self._report_missing_keys()
                    free = self._policy.concurrency - len(self._in_flight)
                    claimed: list[outbox.ClaimedDelivery] = []
                    if free > 0:
                        try:
                            claimed = await outbox.claim_for_push(
                                self._pool, list(self._endpoints), self._process_id, self._clock(), self._policy.lease_seconds, free,
                                self._hub.payload_keys, self._policy.retry_window_seconds,
                            )
                        except Exception as error:  # noqa: BLE001 - the worker outlives any one claim; it tries again when woken
                            _log.warning("outbox_claim_failed", error=type(error).__name__)
                    for item in claimed:
                        task = asyncio.get_running_loop().create_task(self._deliver(item))
                        self._in_flight.add(task)
                        task.add_done_callback(self._in_flight.discard)
                    if not claimed:
                        await self._wakeups.for_anything(self._idle_poll)
                    elif len(self._in_flight) >= self._policy.concurrency:
                        await asyncio.wait(self._in_flight, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in list(self._in_flight):
                    task.cancel()
                await asyncio.gather(*self._in_flight, return_exceptions=True)
                self._session = None

    async def _report_missing_keys(self) -> None:
        """Log the payload keys this process lacks for queued pushes: it leaves those to processes that have them."""
        try:
            missing = await outbox.sealed_under_missing_keys(self._pool, list(self._endpoints), self._hub.payload_keys)
        except Exception as error:  # noqa: BLE001 - a check, never a reason to stop pushing
            _log.warning("payload_key_check_failed", error=type(error).__name__)
            return
        if missing:
            _log.error("payload_keys_missing", keys=sorted(missing), deliveries=sum(missing.values()),
                       hint="copy the payload keys to this host (docs/operations.md, Payload keys)")

    async def _deliver(self, item: outbox.ClaimedDelivery) -> None:
        try:
            await self._attempt(item)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 - one delivery's fault never stops the worker; its lease expires
            _log.error("delivery_failed_unexpectedly", message_id=item.message_id, error=type(error).__name__)

    async def _attempt(self, item: outbox.ClaimedDelivery) -> None:
        assert self._session is not None
        if self._kill_point is not None:
            await self._kill_point("during-lease")
        delivery = delivery_of(item, self._receipt_key, self._hub.local_view(item.receiver, item.compact))
        endpoint = self._endpoints[item.receiver]
        try:
            async with self._session.post(
                endpoint, data=delivery.to_json(), headers={"Content-Type": "application/json"}
            ) as response:
                status, media_type = response.status, response.content_type
                body = await response.read()
        except TimeoutError:
            return await self._failed(item, "timeout")
        except (aiohttp.ClientError, OSError):
            return await self._failed(item, "unreachable")
        if self._kill_point is not None:
            await self._kill_point("after-push-answer")
        if item.is_receipt:
            if status != 204:
                return await self._failed(item, f"http-{status}")
            await self._committer.run(lambda connection, appender: self._acknowledged_receipt(connection, appender, item))
            return
        if status != 200 or media_type != "application/jose":
            return await self._failed(item, f"http-{status}" if status != 200 else "answer-invalid")
        try:
            await self._hub.accept(body, receipt_from=item.receiver)
        except ProtocolError as refusal:
            return await self._failed(item, f"receipt-{refusal.code}")
        # The receipt was accepted; it ended this delivery only if it names this message.
        if not await outbox.is_receipted(self._pool, item.message_id):
            return await self._failed(item, "answer-invalid")
        _log.info("delivered", message_id=item.message_id, to=item.receiver, attempts=item.attempts)

    async def _acknowledged_receipt(self, connection: asyncpg.Connection, appender: LedgerAppender, item: outbox.ClaimedDelivery) -> None:
        attempts = await outbox.acknowledge_pushed_receipt(connection, item.message_id)
        if attempts is not None:
            await appender.add(delivered_entry(item.message_id, item.receiver, attempts, self._clock()))
            _log.info("delivered", message_id=item.message_id, to=item.receiver, attempts=attempts)

    async def _failed(self, item: outbox.ClaimedDelivery, reason: str) -> None:
        now = self._clock()
        due = self._policy.next_attempt(item.attempts, now, item.queued_at)
        if due is not None:
            await outbox.retry_later(self._pool, item.message_id, self._process_id, due, reason)
            _log.info("delivery_retry_scheduled", message_id=item.message_id, to=item.receiver, attempts=item.attempts, reason=reason)
            return

        async def work(connection: asyncpg.Connection, appender: LedgerAppender) -> None:
            dead = await outbox.dead_letter(connection, item.message_id, self._process_id, reason)
            if dead is not None:
                await appender.add(dead_letter_entry(item.message_id, dead[0], dead[1], reason, now))

        await self._committer.run(work)
        _log.warning("dead_lettered", message_id=item.message_id, to=item.receiver, attempts=item.attempts, reason=reason)


class Sweeper:
    """Every `policy.sweep_seconds`: dead-letter what outlived its window unleased (PROTO-12.4-4) and expire
    verification deadlines (PROTO-7.5-3). Idempotent, so any number of processes may run it."""

    def __init__(self, *, committer: GroupCommitter, policy: DeliveryPolicy, clock: Callable[[], datetime]) -> None:
        self._committer = committer
        self._policy = policy
        self._clock = clock

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._policy.sweep_seconds)  # a period, not synchronisation
            try:
                await self.sweep()
            except Exception as error:  # noqa: BLE001 - the next sweep tries again
                _log.warning("sweep_failed", error=type(error).__name__)

    async def sweep(self) -> tuple[int, int]:
        """One pass: (dead letters made, cases expired)."""
        now = self._clock()

        async def work(connection: asyncpg.Connection, appender: LedgerAppender) -> tuple[int, int]:
            dead = await outbox.dead_letter_expired(connection, now, self._policy.retry_window_seconds)
            for message_id, receiver, attempts, reason in dead:
                await appender.add(dead_letter_entry(message_id, receiver, attempts, reason, now))
            expired = await outbox.expire_due_cases(connection, now)
            for case, respond_by in expired:
                await appender.add(deadline_entry(case, respond_by, now))
            return len(dead), len(expired)

        made, expired = await self._committer.run(work)
        if made or expired:
            _log.info("swept", dead_lettered=made, deadlines_passed=expired)
        return made, expired


def delivered_entry(message_id: str, receiver: str, attempts: int, at: datetime) -> LedgerEntry:
    return LedgerEntry("delivered", format_timestamp(at), {"message_id": message_id, "to": receiver, "attempts": attempts})


def dead_letter_entry(message_id: str, receiver: str, attempts: int, reason: str, at: datetime) -> LedgerEntry:
    return LedgerEntry(
        "dead-lettered", format_timestamp(at), {"message_id": message_id, "to": receiver, "attempts": attempts, "last_error": reason}
    )


def retried_entry(message_id: str, receiver: str, at: datetime) -> LedgerEntry:
    return LedgerEntry("retried", format_timestamp(at), {"message_id": message_id, "to": receiver})


def push_endpoints(jurisdictions: Iterable[Any]) -> dict[str, str]:
    """Receiver code -> endpoint URL of every jurisdiction configured for push."""
    return {j.code: j.endpoint for j in jurisdictions if j.delivery == "push" and j.endpoint}
