"""Ingress policy: freshness (docs/protocol.md §8.4) and route policy (§5.4, §5.5). Pure functions.

Route policy is deny by default: a message passes only if a configured route allows
its `from`, `to`, `type` and `purpose`, and its legal basis meets that route's
formal requirements (`Route.legal_basis_refusal`: consent as the basis, a transfer
mechanism of the route's kinds).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from gateway.config import Route, find_route
from gateway.protocol.errors import ProtocolError
from gateway.protocol.message import Message
from gateway.protocol.timestamps import parse_timestamp


def check_freshness(created: str, message_type: object, now: datetime, window_seconds: int) -> None:
    """Refuse a `created` outside now ± window (PROTO-8.4-1/2); receipts are exempt (PROTO-8.4-3).

    A `created` that is not a timestamp is left for the schema to refuse.
    """
    if message_type == "receipt":
        return
    try:
        moment = parse_timestamp(created)
    except ValueError:
        return
    window = timedelta(seconds=window_seconds)
    if moment < now - window:
        raise ProtocolError("message-stale", where="/created")
    if moment > now + window:
        raise ProtocolError("message-from-future", where="/created")


class RoutePolicy:
    """The configured routes, checked for every message after its envelope."""

    def __init__(self, routes: Sequence[Route]) -> None:
        self._routes = tuple(routes)

    def retention_days(self, message: Message) -> int | None:
        """How long the route of an accepted `message` keeps its payload after the case ends (docs/data-protection.md)."""
        route = find_route(self._routes, message.sender, message.receiver, message.type, message.purpose)
        return route.retention_days if route is not None else None

    def check(self, message: Message) -> None:
        route = find_route(self._routes, message.sender, message.receiver, message.type, message.purpose)
        if route is None:
            raise ProtocolError("route-refused", where="/to")
        where = route.legal_basis_refusal(message.legal_basis, message.body)
        if where is not None:
            raise ProtocolError("legal-basis-refused", where=where)
