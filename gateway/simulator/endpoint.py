"""The simulator's HTTP server: the push endpoint (§12.5) and the loopback control API (docs/simulator.md).

- `POST /v1/deliveries`: a pushed delivery (`application/json`); `200` with the receipt
  (`application/jose`), `204` for a delivered receipt, `400` problem when not even the
  attestation verifies (PROTO-12.5-1); `503` problem (`unavailable`) when a key is
  unknown while the hub's trust list cannot be fetched, so that the hub delivers again.
- `POST /v1/simulator/flows` `{"kind": "referral"|"verification", "to": CODE}`: opens a
  case; `201 {"case", "message_id"}`.
- `GET /v1/simulator/state`: ids, states and counts.
- `POST /witness/add-checkpoint`: C2SP tlog-witness, when the simulator is a witness
  (gateway/simulator/witnessing.py).

The control API answers loopback callers only. Handlers are thin: the simulator passes
in what they call.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from aiohttp import web

from gateway.protocol.errors import ProtocolError
from gateway.simulator.reception import Answer

DELIVERIES_PATH = "/v1/deliveries"
WITNESS_PATH = "/witness"
"""The witness's URL prefix (C2SP tlog-witness): the hub POSTs to WITNESS_PATH + "/add-checkpoint"."""
FLOW_KINDS = ("referral", "verification")


@dataclass(frozen=True, slots=True)
class EndpointActions:
    """What the endpoint's handlers do, supplied by the simulator."""

    receive_push: Callable[[bytes], Awaitable[Answer]]
    start_flow: Callable[[str, str], Awaitable[tuple[str, str]]]
    summary: Callable[[], dict[str, Any]]
    peers: frozenset[str]
    add_checkpoint: Callable[[bytes], tuple[int, bytes, str]] | None = None
    """The witness (C2SP tlog-witness): request body -> (status, body, content type); None when not a witness."""


def build_endpoint(actions: EndpointActions) -> web.Application:
    app = web.Application(client_max_size=4 * 1024 * 1024)

    async def post_delivery(request: web.Request) -> web.Response:
        if request.content_type != "application/json":
            return _problem(ProtocolError("media-type-unsupported", "A delivery is application/json").problem(), 415)
        answer = await actions.receive_push(await request.read())
        if answer.problem is not None:
            return _problem(answer.problem, 503 if answer.retry else 400)
        if answer.receipt is None:
            return web.Response(status=204)
        return web.Response(status=200, body=answer.receipt, content_type="application/jose")

    async def post_flow(request: web.Request) -> web.Response:
        if not _loopback(request):
            return _control_problem(403, "The control API answers loopback callers only")
        try:
            document = json.loads(await request.read())
            kind, to = document["kind"], document["to"]
        except (ValueError, KeyError, TypeError):
            return _control_problem(400, 'The body is {"kind": "referral"|"verification", "to": CODE}')
        if type(kind) is not str or type(to) is not str or kind not in FLOW_KINDS or to not in actions.peers:
            return _control_problem(400, f"kind is one of {', '.join(FLOW_KINDS)}; to is one of {', '.join(sorted(actions.peers))}")
        case, message_id = await actions.start_flow(kind, to)
        return web.json_response({"case": case, "message_id": message_id}, status=201)

    async def get_state(request: web.Request) -> web.Response:
        if not _loopback(request):
            return _control_problem(403, "The control API answers loopback callers only")
        return web.json_response(actions.summary())

    async def add_checkpoint(request: web.Request) -> web.Response:
        if actions.add_checkpoint is None:
            return _control_problem(404, "This simulator is not a witness (start it with --witness-key)")
        status, body, content_type = actions.add_checkpoint(await request.read())
        return web.Response(status=status, body=body, headers={"Content-Type": content_type})

    app.router.add_post(DELIVERIES_PATH, post_delivery)
    app.router.add_post(WITNESS_PATH + "/add-checkpoint", add_checkpoint)
    app.router.add_post("/v1/simulator/flows", post_flow)
    app.router.add_get("/v1/simulator/state", get_state)
    return app


def _loopback(request: web.Request) -> bool:
    try:
        return request.remote is not None and ipaddress.ip_address(request.remote).is_loopback
    except ValueError:
        return False


def _problem(problem: dict[str, Any], status: int) -> web.Response:
    return web.Response(status=status, body=json.dumps(problem).encode("utf-8"), content_type="application/problem+json")


def _control_problem(status: int, detail: str) -> web.Response:
    return _problem({"type": "about:blank", "title": "Simulator control request refused", "status": status, "detail": detail}, status)
