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


_REMEMBERED = 4096
"""At most this many answers of `find_route` are kept: a policy meets a few hundred keys at most (three jurisdictions
each way, the types and purposes the schemas allow), so the bound only guards against a schema that stops fixing them."""


class RoutePolicy:
    """The configured routes, checked for every message after its envelope."""

    def __init__(self, routes: Sequence[Route]) -> None:
        self._routes = tuple(routes)
        self._found: dict[tuple[str, str, str, str], Route | None] = {}

    def route(self, message: Message) -> Route | None:
        """The route that allows `message`, or None: `find_route`, remembered. A policy's routes never change, and the
        scan, asked twice a message, was 0.7 % of the hub's instructions an accepted message (docs/performance.md,
        "Fourteenth pass")."""
        key = (message.sender, message.receiver, message.type, message.purpose)
        try:
            return self._found[key]
        except KeyError:
            route = find_route(self._routes, *key)
            if len(self._found) < _REMEMBERED:
                self._found[key] = route
            return route

    def retention_days(self, message: Message) -> int | None:
        """How long the route of an accepted `message` keeps its payload after the case ends (docs/data-protection.md)."""
        route = self.route(message)
        return route.retention_days if route is not None else None

    def check(self, message: Message) -> None:
        route = self.route(message)
        if route is None:
            raise ProtocolError("route-refused", where="/to")
        where = route.legal_basis_refusal(message.legal_basis, message.body)
        if where is not None:
            raise ProtocolError("legal-basis-refused", where=where)
