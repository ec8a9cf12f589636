"""Pull delivery: the simulator's inbox loop (docs/protocol.md §12.6).

`GET /v1/inbox?after=CURSOR&wait=S&limit=N`, starting from `after=-1`. Every delivery
of an answer goes through the same reception as a push; each receipt it yields is
sent with `POST /v1/receipts` (for a redelivery, the stored receipt again: the hub
offers a message again only while it holds no receipt of it) and resent, identical
bytes, until the hub answers `202`. Only then, with every delivery of the answer
stored and acknowledged, is the answer's cursor stored (PROTO-12.6-2); the next
request's `after` also acknowledges the receipts delivered so far. A delivery that
cannot be taken in now (a key unknown while the hub's trust list cannot be fetched)
is left unanswered, and the hub offers it again once its lease ends; if it may be a
receipt, its ledger index is kept in the state and the cursor stays below it (lower than
before, if need be), since a request's `after` acknowledges every delivered receipt up to
it; the rest of the page is taken in, and the inbox asked again after a backoff. A hub whose
long-poll limit is below the `wait` asked refuses it (`query-invalid`, PROTO-12.6-4):
the poller then halves its `wait` (down to 0) and asks again. The loop runs until
cancelled.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import structlog

from gateway.protocol import jws
from gateway.protocol.errors import ProtocolError
from gateway.simulator.hub_client import HubClient, HubRefused, HubUnavailable
from gateway.simulator.reception import Answer, Reception, claimed
from gateway.simulator.sender import HubReceiptMismatch, checked_hub_receipt, retry_delay
from gateway.simulator.state import SimulatorState
from gateway.simulator.trust_source import HubTrust

_log = structlog.get_logger("gateway.simulator")

INBOX_LIMIT = 50
EMPTY_POLL_SECONDS = 1.0
"""The pause after an empty answer when the hub takes no `wait` (a long-poll limit of 0)."""
HELD_RECEIPT_SECONDS = 72 * 3600.0
"""How long a delivered receipt answered "later" may stop the cursor: the hub's default retry window
(`delivery.retry_window_hours`), after which it dead-letters what was not acknowledged."""


class InboxPoller:
    """The background task that pulls the jurisdiction's inbox until cancelled."""

    def __init__(self, state: SimulatorState, hub: HubClient, trust: HubTrust, reception: Reception, wait_seconds: int) -> None:
        self._state = state
        self._hub = hub
        self._trust = trust
        self._reception = reception
        self._wait = wait_seconds

    async def run(self) -> None:
        cursor = self._state.cursor()
        failures = deferrals = 0
        while True:
            try:
                page = await self._hub.inbox(after=cursor, wait=self._wait, limit=INBOX_LIMIT)
            except (HubUnavailable, HubRefused) as failure:
                code = getattr(failure, "code", None)
                if code == "query-invalid" and self._wait > 0:
                    self._wait //= 2  # above the hub's long-poll limit (§12.6), which a client cannot read
                    _log.warning("simulator.inbox.wait_lowered", wait=self._wait)
                    continue
                failures += 1
                _log.info("simulator.inbox.retry", reason=code or type(failure).__name__, attempt=failures)
                await asyncio.sleep(retry_delay(failures, failure))
                continue
            failures = 0
            deferred, unplaced = await self._take_in(page.deliveries)
            # A request's `after` acknowledges every delivered receipt up to it (PROTO-12.6-2): never one held.
            target = max(cursor, page.cursor)
            held = self._held()
            if held:
                target = min(target, min(held) - 1)  # lower than before, if a held receipt lies below it
            if unplaced:
                target = min(target, cursor)
            if target != cursor:
                self._state.set_cursor(target)
                cursor = target
            if deferred:
                deferrals += 1
                await asyncio.sleep(retry_delay(deferrals))
            else:
                deferrals = 0
                if not page.deliveries and self._wait == 0:
                    await asyncio.sleep(EMPTY_POLL_SECONDS)  # a hub that does not long-poll: not a busy loop

    async def _take_in(self, deliveries: tuple[Any, ...]) -> tuple[bool, bool]:
        """Receive and acknowledge each delivery in order; (whether one was answered "later", whether such a one
        may be a receipt whose index cannot be read). Held receipts are kept in the state, for restarts too."""
        deferred = unplaced = False
        for delivery in deliveries:
            index, kind = claimed(delivery)
            answer = await self._reception.receive(delivery)
            if answer.retry:
                deferred = True
                if kind in (None, "receipt"):  # only receipts are acknowledged by the cursor
                    if index is None:
                        unplaced = True
                    else:
                        self._state.hold_receipt(index, time.time())
                continue
            if index is not None:
                self._state.release_receipt(index)
            if answer.receipt is not None:
                await self._acknowledge(answer)
        return deferred, unplaced

    def _held(self) -> set[int]:
        """The held receipts' indexes; one held longer than HELD_RECEIPT_SECONDS is let go (the hub has dead-lettered
        it by then, and it would stop the cursor for good), with a warning."""
        now = time.time()
        held = set()
        for index, since in self._state.held_receipts().items():
            if now - since > HELD_RECEIPT_SECONDS:
                self._state.release_receipt(index)
                _log.warning("simulator.inbox.held_receipt_released", ledger_index=index)
            else:
                held.add(index)
        return held

    async def _acknowledge(self, answer: Answer) -> None:
        """`POST /v1/receipts` until `202` with a hub receipt that names it; a 4xx refusal is final."""
        assert answer.receipt is not None
        receipt_id = _receipt_id(answer.receipt)
        attempt = 0
        while True:
            attempt += 1
            try:
                acceptance = await self._hub.post_receipt(answer.receipt)
                await checked_hub_receipt(self._trust, acceptance, receipt_id, jws.digest(answer.receipt))
            except HubRefused as refusal:
                _log.warning("simulator.receipt.refused", message_id=answer.message_id, code=refusal.code)
                return
            except (HubUnavailable, ProtocolError, HubReceiptMismatch) as failure:
                reason = failure.code if isinstance(failure, ProtocolError) else type(failure).__name__
                _log.info("simulator.receipt.retry", message_id=answer.message_id, reason=reason, attempt=attempt)
                await asyncio.sleep(retry_delay(attempt, failure))
                continue
            return


def _receipt_id(receipt: bytes) -> str:
    """The id of a receipt this jurisdiction signed (its own bytes: no verification needed)."""
    return json.loads(jws.parse_compact(receipt, "gba-case+jws").payload)["id"]
