"""Sending the jurisdiction's messages to the hub: stored first, then sent in order (docs/protocol.md §8.1, §9.1).

Outgoing messages are written to the state before the first attempt (in the
transaction that decided them) and sent one at a time in the order they were
written, so a case's messages reach the hub in the order its state machine needs
(`referral.accept` before `referral.close`, §7.3). A message is resent with identical
bytes after a network error or a 5xx, with exponential backoff and jitter; a 4xx
problem is final and its code recorded — except `message-stale` (it waited longer than
the freshness window, §8.4). Then, as PROTO-8.1-3 requires, the sender first asks the
hub whether it accepted the message after all (`GET /v1/messages/{id}`, an answer lost
on the way); only if it did not is the content sent again as a new message, with a new
`id` and `created`, after the same backoff (a clock behind the hub's makes every renewal
stale too). A message counts as accepted only with a hub receipt that verifies and names
its id and digest (PROTO-9.1-2).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

import structlog

from gateway.protocol import jws
from gateway.protocol.errors import ProtocolError
from gateway.protocol.statements import HubReceipt, verify_hub_receipt
from gateway.simulator.hub_client import HubAcceptance, HubClient, HubRefused, HubUnavailable
from gateway.simulator.state import QueuedMessage, SimulatorState
from gateway.simulator.trust_source import HubTrust

_log = structlog.get_logger("gateway.simulator")

RETRY_INITIAL_SECONDS = 0.25
RETRY_MAX_SECONDS = 10.0


class HubReceiptMismatch(Exception):
    """A hub receipt that verifies but names another message id or digest."""


def retry_delay(attempt: int, failure: BaseException | None = None) -> float:
    """Attempt `attempt` (from 1) waits between half of and all of min(max, initial × 2^(attempt−1)) seconds, and
    at least as long as the hub's Retry-After on `failure` (a 429 or 503, §12.1)."""
    ceiling = min(RETRY_MAX_SECONDS, RETRY_INITIAL_SECONDS * 2 ** min(attempt - 1, 16))
    return max(random.uniform(ceiling / 2, ceiling), getattr(failure, "retry_after", None) or 0.0)


async def checked_hub_receipt(trust: HubTrust, acceptance: HubAcceptance, message_id: str, digest: str) -> HubReceipt:
    """The hub receipt of `acceptance`, verified and naming `message_id` and `digest` (PROTO-9.1-2)."""
    receipt = await trust.verify(lambda held: verify_hub_receipt(acceptance.hub_receipt, held))
    if receipt.message_id != message_id or receipt.message_digest != digest:
        raise HubReceiptMismatch("the hub receipt names another message")
    return receipt


class Sender:
    """The background task that sends queued messages until cancelled."""

    def __init__(self, state: SimulatorState, hub: HubClient, trust: HubTrust, renew: Callable[[bytes], tuple[str, bytes]]) -> None:
        """`renew` makes a message's content a new message, (new id, bytes) (Application.renewed)."""
        self._renew = renew
        self._state = state
        self._hub = hub
        self._trust = trust
        self._queued = asyncio.Event()
        self._last_failure: BaseException | None = None

    def wake(self) -> None:
        """Something may have been queued."""
        self._queued.set()

    async def run(self) -> None:
        while True:
            self._queued.clear()
            queued = self._state.next_queued()
            if queued is None:
                await self._queued.wait()
                continue
            self._last_failure = None
            if not await self._send(queued):
                await asyncio.sleep(retry_delay(queued.attempts + 1, self._last_failure))

    async def _send(self, queued: QueuedMessage) -> bool:
        """One attempt; False when it must be retried later."""
        try:
            acceptance = await self._hub.post_message(queued.compact)
            receipt = await checked_hub_receipt(self._trust, acceptance, queued.id, queued.digest)
        except HubRefused as refusal:
            if refusal.code == "message-stale":
                return await self._reconcile_stale(queued)
            self._state.mark_refused(queued.id, refusal.code)
            _log.warning("simulator.message.refused", message_id=queued.id, type=queued.type, code=refusal.code)
            return True
        except (HubUnavailable, ProtocolError, HubReceiptMismatch) as failure:
            self._last_failure = failure
            self._state.note_attempt(queued.id)
            reason = failure.code if isinstance(failure, ProtocolError) else type(failure).__name__
            _log.info("simulator.message.retry", message_id=queued.id, type=queued.type, reason=reason, attempt=queued.attempts + 1)
            return False
        self._state.mark_accepted(queued.id, receipt.ledger_index, acceptance.hub_receipt)
        _log.info("simulator.message.accepted", message_id=queued.id, type=queued.type, ledger_index=receipt.ledger_index)
        return True

    async def _reconcile_stale(self, queued: QueuedMessage) -> bool:
        """A message refused as stale (§8.4): accepted after all (an answer lost), or renewed under a new id
        (PROTO-8.1-3). False, so that the next attempt waits: a renewal that is stale again must not spin."""
        try:
            earlier = await self._hub.sent_message(queued.id)
            if earlier is not None:
                receipt = await checked_hub_receipt(self._trust, earlier, queued.id, queued.digest)
                self._state.mark_accepted(queued.id, receipt.ledger_index, earlier.hub_receipt)
                _log.info("simulator.message.accepted", message_id=queued.id, type=queued.type, ledger_index=receipt.ledger_index)
                return True
        except HubReceiptMismatch:
            # The hub holds other bytes under this id: never sent by this sender as written (PROTO-8.1-2).
            self._state.mark_refused(queued.id, "id-conflict")
            _log.warning("simulator.message.refused", message_id=queued.id, type=queued.type, code="id-conflict")
            return True
        except (HubUnavailable, HubRefused, ProtocolError) as failure:
            self._last_failure = failure
            self._state.note_attempt(queued.id)
            reason = failure.code if isinstance(failure, (ProtocolError, HubRefused)) else type(failure).__name__
            _log.info("simulator.message.retry", message_id=queued.id, type=queued.type, reason=reason, attempt=queued.attempts + 1)
            return False
        new_id, compact = self._renew(queued.compact)
        self._state.renew_unaccepted(queued.id, new_id, compact, jws.digest(compact))
        _log.warning("simulator.message.renewed", message_id=queued.id, new_message_id=new_id, type=queued.type,
                     attempt=queued.attempts + 1)
        return False
