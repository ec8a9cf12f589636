"""The hub's trust list as the simulator holds it (docs/protocol.md §10.3, §12.1 `GET /v1/trust-list`).

The list starts as the anchor (by default the shipped `keys/trust-list.json`); the
hub's signed list replaces it once it verifies against the list held
(`verify_signed_trust_list`: a hub receipt key of the held list, never going back).
It is fetched at start, every `TRUST_REFRESH_SECONDS` after (PROTO-10.3-6: consumers
fetch at least hourly; a consumer that misses the lists of a hub receipt key's rotation
can install no later one, §10.3), and again when a statement names a key the held list
does not know, at most once per `refresh_interval` seconds, so a flood of forged kids
cannot make the simulator hammer the hub (after a fetch that found no hub, at most
once per `FAILED_FETCH_SECONDS`, or the hub's Retry-After, bar one spare fetch when the
hub is first found missing). While the hub's list cannot be fetched, an unknown key is
not a verdict: `verify` raises `TrustListUnreachable`, and the delivery is taken in
later rather than refused.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Callable, TypeVar

import structlog

from gateway.protocol.errors import ProtocolError
from gateway.protocol.trust import TrustList, verify_signed_trust_list
from gateway.simulator.hub_client import HubClient, HubRefused, HubUnavailable

_log = structlog.get_logger("gateway.simulator")
_Verified = TypeVar("_Verified")


TRUST_REFRESH_SECONDS = 3600.0
FAILED_FETCH_SECONDS = 0.5
"""The least pause after a fetch that found no hub."""
UNREACHABLE_REFRESH_SECONDS = 60.0
"""The scheduled refresh's period while the hub cannot be reached."""


class TrustListUnreachable(Exception):
    """A statement names a key the held list does not know, and the hub's list could not be fetched to learn it:
    the delivery is to be taken in later (answered 503 to a push, left before the cursor in pull mode), never
    refused or rejected for it."""


class HubTrust:
    """The trust list held now, and its refresh from the hub."""

    def __init__(self, anchor: TrustList, hub: HubClient, clock: Callable[[], datetime], refresh_interval: float = 3.0) -> None:
        self.current = anchor
        self._hub = hub
        self._clock = clock
        self._interval = refresh_interval
        self._next_fetch = 0.0
        """time.monotonic() before which no fetch goes (the first goes at once)."""
        self._unreachable = False
        """Whether the last fetch failed for want of the hub (not for a list that did not verify)."""
        self._spare_fetch = False
        """One fetch that may go at once, granted when the hub was first found missing: an endpoint often starts
        before its hub, and the hub's first delivery shows it is up."""
        self._lock = asyncio.Lock()

    async def refresh(self) -> bool:
        """Fetch and verify the hub's list unless a fetch went too recently; True if a list was fetched and held.

        After a fetch the hub answered, the next waits `refresh_interval`; after one that found no hub, only
        FAILED_FETCH_SECONDS (or the hub's Retry-After), so a delivery is not deferred long for an outage that has
        ended, and forged kids still cannot make the simulator hammer a hub that is struggling."""
        async with self._lock:
            now = time.monotonic()
            if now < self._next_fetch:
                if not self._spare_fetch:
                    return False
                self._spare_fetch = False
            self._next_fetch = now + self._interval
            try:
                signed = await self._hub.trust_list()
                self._unreachable = False
                self.current = verify_signed_trust_list(signed, self.current, self._clock())
            except (HubUnavailable, HubRefused) as error:
                self._spare_fetch = not self._unreachable  # on the first failure only: a flood gets one, not one each
                self._unreachable = True  # counted from the answer: a fetch that took its whole timeout to fail
                self._next_fetch = time.monotonic() + max(FAILED_FETCH_SECONDS, getattr(error, "retry_after", None) or 0.0)
                _log.warning("simulator.trust_list.unavailable", reason=type(error).__name__)
                return False
            except ProtocolError as refusal:
                _log.warning("simulator.trust_list.refused", code=refusal.code)
                return False
            _log.info("simulator.trust_list.held", sequence=self.current.sequence)
            return True

    async def keep_fresh(self, every: float = TRUST_REFRESH_SECONDS) -> None:
        """Fetch the hub's list now and every `every` seconds (every minute while the hub cannot be reached), until
        cancelled."""
        while True:
            await self.refresh()
            await asyncio.sleep(min(every, UNREACHABLE_REFRESH_SECONDS) if self._unreachable else every)

    async def verify(self, check: Callable[[TrustList], _Verified]) -> _Verified:
        """`check` against the held list; once more after a refresh if it names a key the list does not know.

        Raises TrustListUnreachable rather than `key-unknown` while the hub's list cannot be fetched.
        """
        held = self.current
        try:
            return check(held)
        except ProtocolError as refusal:
            if refusal.code != "key-unknown":
                raise
            await self.refresh()
            if self.current is held:
                if self._unreachable:
                    raise TrustListUnreachable() from refusal
                raise
        return check(self.current)
