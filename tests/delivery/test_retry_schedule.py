"""When a failed push is tried again (docs/protocol.md PROTO-12.4-3, PROTO-12.4-4): the backoff's doubling with jitter,
and the window's end, which dead-letters a delivery once it has passed and not before."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gateway.hub.delivery import DeliveryPolicy

POLICY = DeliveryPolicy(retry_initial_seconds=1.0, retry_max_seconds=300.0, retry_window_seconds=3600.0)
QUEUED = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)


def test_a_retry_waits_between_half_and_all_of_the_capped_doubling():
    for attempt, ceiling in ((1, 1.0), (2, 2.0), (5, 16.0), (9, 256.0), (10, 300.0), (40, 300.0)):
        now = QUEUED + timedelta(seconds=10)
        assert POLICY.next_attempt(attempt, now, QUEUED, draw=lambda: 0.0) == now + timedelta(seconds=ceiling / 2)
        assert POLICY.next_attempt(attempt, now, QUEUED, draw=lambda: 1.0) == now + timedelta(seconds=ceiling)


def test_a_retry_that_would_fall_past_the_window_is_made_once_as_it_closes_then_the_delivery_is_dead_lettered():
    closes = QUEUED + timedelta(seconds=3600)
    two_minutes_before = closes - timedelta(seconds=120)
    # The capped backoff (150 to 300 s) would land after the window: one last attempt, a second before it closes.
    last = POLICY.next_attempt(20, two_minutes_before, QUEUED, draw=lambda: 0.0)
    assert last == closes - timedelta(seconds=1)
    # That attempt failed too: now it is dead-lettered (None), never tried again in a loop.
    assert POLICY.next_attempt(21, last, QUEUED, draw=lambda: 0.0) is None
    assert POLICY.next_attempt(21, closes + timedelta(seconds=5), QUEUED) is None
    # A backoff that still fits keeps its time.
    assert POLICY.next_attempt(1, two_minutes_before, QUEUED, draw=lambda: 1.0) == two_minutes_before + timedelta(seconds=1)
