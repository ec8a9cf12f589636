"""Abuse limits per caller (docs/protocol.md §12.8): request rate, requests in flight, long polls.

A caller is a jurisdiction once it is authenticated (by its message's signature, its
request proof or its client certificate), so that nobody can spend another
jurisdiction's budget by naming its `kid` in an unsigned header; before that, a caller
is its network address. Each caller has a token bucket (`rate_per_second`, `burst`) and
a cap on requests in flight; a request over either is refused at once with
`rate-limited` and a `Retry-After`, never queued. Limits are per process: with N
processes behind a balancer a caller gets up to N times the budget (docs/operations.md).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from gateway.protocol.errors import ProtocolError


@dataclass(frozen=True, slots=True)
class CallerLimit:
    """One caller kind's budget."""

    rate_per_second: float
    burst: int
    in_flight: int


class _Bucket:
    __slots__ = ("tokens", "updated", "in_flight")

    def __init__(self, burst: int, now: float) -> None:
        self.tokens = float(burst)
        self.updated = now
        self.in_flight = 0


class CallerLimits:
    """Token buckets and in-flight counts keyed by caller (a jurisdiction code or `address:<ip>`)."""

    _MAX_CALLERS = 100_000
    """Idle buckets are forgotten beyond this many callers, so addresses cannot grow memory without bound."""

    def __init__(self, limit: CallerLimit, clock: Callable[[], float] = time.monotonic) -> None:
        self._limit = limit
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    @contextlib.contextmanager
    def admit(self, caller: str) -> Iterator[None]:
        """Hold one of `caller`'s in-flight places for the block; refuse with `rate-limited` when none is free."""
        bucket = self._bucket(caller)
        limit = self._limit
        if bucket.in_flight >= limit.in_flight:
            raise ProtocolError("rate-limited", f"At most {limit.in_flight} requests of one caller at a time", retry_after_seconds=1)
        if bucket.tokens < 1.0:
            wait = math.ceil((1.0 - bucket.tokens) / limit.rate_per_second)
            raise ProtocolError("rate-limited", f"At most {limit.rate_per_second:g} requests a second from one caller",
                                retry_after_seconds=max(1, wait))
        bucket.tokens -= 1.0
        bucket.in_flight += 1
        try:
            yield
        finally:
            bucket.in_flight -= 1

    def take(self, caller: str) -> None:
        """Spend one of `caller`'s tokens for a short request; refuse with `rate-limited` when none is left."""
        with self.admit(caller):
            pass

    def _bucket(self, caller: str) -> _Bucket:
        now = self._clock()
        bucket = self._buckets.get(caller)
        if bucket is None:
            if len(self._buckets) >= self._MAX_CALLERS:
                self._forget_idle()
            bucket = self._buckets[caller] = _Bucket(self._limit.burst, now)
        else:
            bucket.tokens = min(float(self._limit.burst), bucket.tokens + (now - bucket.updated) * self._limit.rate_per_second)
            bucket.updated = now
        return bucket

    def _forget_idle(self) -> None:
        for caller in [caller for caller, bucket in self._buckets.items() if bucket.in_flight == 0]:
            del self._buckets[caller]
