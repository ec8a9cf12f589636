"""The route policy's memory of `find_route` (gateway/hub/policy.py): the same answers as the scan, asked again."""

from __future__ import annotations

from types import SimpleNamespace

from gateway.config import PURPOSES, Route, find_route
from gateway.hub import policy
from gateway.hub.policy import RoutePolicy
from gateway.protocol.cases import MESSAGE_TYPES

ROUTES = (
    Route("CN-GD", "HK", ("referral.*",), ("referral",), retention_days=30),
    Route("CN-GD", "HK", ("verification.request",), ("economic_verification",), retention_days=60),
    Route("HK", "CN-GD", ("verification.*", "receipt"), ("economic_verification", "delivery_receipt"), retention_days=90),
    Route("MO", "HK", ("referral.submit",), ("referral", "assistance_feedback")),
)


def _message(sender: str, receiver: str, message_type: str, purpose: str) -> SimpleNamespace:
    return SimpleNamespace(sender=sender, receiver=receiver, type=message_type, purpose=purpose)


def _every_key():
    for sender in ("CN-GD", "HK", "MO"):
        for receiver in ("CN-GD", "HK", "MO"):
            for message_type in MESSAGE_TYPES:
                for purpose in PURPOSES:
                    yield sender, receiver, message_type, purpose


def test_a_remembered_route_is_the_scans_answer_the_first_time_and_every_time_after():
    routes = RoutePolicy(ROUTES)
    for ask in range(2):
        for key in _every_key():
            expected = find_route(ROUTES, *key)
            assert routes.route(_message(*key)) is expected, (ask, key)
            assert routes.retention_days(_message(*key)) == (expected.retention_days if expected else None)
    allowed = {key for key in _every_key() if find_route(ROUTES, *key) is not None}
    assert ("CN-GD", "HK", "verification.request", "economic_verification") in allowed
    assert ("CN-GD", "HK", "verification.response", "economic_verification") not in allowed, "deny by default"


def test_what_is_remembered_is_bounded_and_what_is_not_is_still_answered(monkeypatch):
    monkeypatch.setattr(policy, "_REMEMBERED", 2)
    routes = RoutePolicy(ROUTES)
    keys = list(_every_key())[:5]
    for key in keys * 2:
        assert routes.route(_message(*key)) is find_route(ROUTES, *key)
    assert len(routes._found) == 2
