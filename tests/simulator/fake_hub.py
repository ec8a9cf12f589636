"""A tiny stand-in hub on a real socket: the trust list, message and receipt intake, and an inbox.

It signs what a hub signs (trust list, hub receipts) with the published test hub key,
records what the simulator sends, can be told to fail the next requests, and serves
inbox pages the test queues. It checks nothing a real hub checks beyond signatures:
the real hub's own behaviour is tested against `running_hub`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from dataclasses import dataclass, field

from aiohttp import web

from gateway.protocol import jws
from gateway.protocol.keys import PrivateKey
from gateway.protocol.message import Message, verify_message
from gateway.protocol.schema import MessageSchemas
from gateway.protocol.statements import HubReceipt, sign_hub_receipt
from gateway.protocol.timestamps import utc_now
from gateway.protocol.trust import TrustList, sign_trust_list


@dataclass
class Received:
    """One request the simulator made to the fake hub."""

    path: str
    body: bytes
    proof: str | None
    query: dict[str, str] = field(default_factory=dict)


class FakeHub:
    def __init__(self, trust: TrustList, hub_key: PrivateKey, schemas: MessageSchemas) -> None:
        self.trust = trust
        self.hub_key = hub_key
        self.schemas = schemas
        self.requests: list[Received] = []
        self.failures: list[tuple] = []
        """(status, code) or (status, code, headers) to answer the next message posts with, first first."""
        self.lost_answers = 0
        """How many of the next message posts to accept and then answer 503, as if the answer was lost on the way."""
        self.accepted: dict[str, dict] = {}
        """Each accepted message's id -> its 202 answer (`GET /v1/messages/{id}` answers from it)."""
        self.offered_again: dict | None = None
        """An inbox answer served to every inbox request while set: deliveries the hub offers again after their lease,
        whatever `after` says (a message is acknowledged by its receipt, not by the cursor, PROTO-12.6-1)."""
        self.long_poll_limit: int | None = None
        """When set, an inbox request whose `wait` is above it is refused `query-invalid` (§12.6)."""
        self.trust_list_failures = 0
        """How many of the next trust-list requests to answer 503."""
        self.inbox_pages: list[dict] = []
        self.raw_inbox_answers: list[bytes] = []
        """Bodies served, one each, to the next inbox requests, before any queued page."""
        self.changed = asyncio.Event()
        self._ledger = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.url = ""

    def messages(self, path: str = "/v1/messages") -> list[Message]:
        """The verified messages posted to `path`, in order."""
        return [verify_message(r.body, self.trust, self.schemas, utc_now()) for r in self.requests if r.path == path]

    async def wait_for(self, condition, timeout: float) -> None:
        """Return once `condition()` holds, re-checked after every request the hub receives."""
        async with asyncio.timeout(timeout):
            while not condition():
                await self.changed.wait()

    def queue_page(self, deliveries: list[bytes], cursor: int) -> None:
        """Serve `deliveries` with `cursor` to every inbox request whose `after` is below it."""
        self.inbox_pages.append({"deliveries": [json.loads(d) for d in deliveries], "cursor": cursor})
        self._notify()

    async def __aenter__(self) -> FakeHub:
        app = web.Application()
        app.router.add_get("/v1/trust-list", self._trust_list)
        app.router.add_post("/v1/messages", self._intake)
        app.router.add_post("/v1/receipts", self._intake)
        app.router.add_get("/v1/inbox", self._inbox)
        app.router.add_get("/v1/messages/{message_id}", self._sent_message)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    def _notify(self) -> None:
        changed, self.changed = self.changed, asyncio.Event()
        changed.set()

    async def _trust_list(self, request: web.Request) -> web.Response:
        self.requests.append(Received(request.path, b"", None))
        self._notify()
        if self.trust_list_failures:
            self.trust_list_failures -= 1
            return web.json_response({"code": "unavailable", "status": 503}, status=503, content_type="application/problem+json")
        return web.Response(body=sign_trust_list(self.trust, self.hub_key), content_type="application/jose")

    async def _intake(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append(Received(request.path, body, request.headers.get("GBA-Request-Proof")))
        self._notify()
        if self.failures and not self.lost_answers:
            status, code, *headers = self.failures.pop(0)
            return web.json_response({"code": code, "status": status}, status=status, content_type="application/problem+json",
                                     headers=headers[0] if headers else None)
        message = verify_message(body, self.trust, self.schemas, utc_now())
        receipt = HubReceipt(message_id=message.id, message_digest=jws.digest(body), ledger_index=next(self._ledger), accepted_at=utc_now())
        document = {"message_id": message.id, "hub_receipt": sign_hub_receipt(receipt, self.hub_key).decode("ascii"), "replayed": False}
        self.accepted[message.id] = document
        if self.lost_answers:  # before any queued failure: accepted, and the answer lost
            self.lost_answers -= 1
            return web.json_response({"code": "unavailable", "status": 503}, status=503, content_type="application/problem+json")
        return web.json_response(document, status=202)

    async def _sent_message(self, request: web.Request) -> web.Response:
        self.requests.append(Received(request.path, b"", request.headers.get("GBA-Request-Proof")))
        self._notify()
        document = self.accepted.get(request.match_info["message_id"])
        if document is None:
            return web.json_response({"code": "not-found", "status": 404}, status=404, content_type="application/problem+json")
        return web.json_response({"message_id": document["message_id"], "hub_receipt": document["hub_receipt"]})

    async def _inbox(self, request: web.Request) -> web.Response:
        self.requests.append(Received(request.path, b"", request.headers.get("GBA-Request-Proof"), dict(request.query)))
        self._notify()
        after = int(request.query["after"])
        if self.long_poll_limit is not None and int(request.query.get("wait", "0")) > self.long_poll_limit:
            return web.json_response({"code": "query-invalid", "status": 400}, status=400, content_type="application/problem+json")
        if self.raw_inbox_answers:
            return web.Response(body=self.raw_inbox_answers.pop(0), content_type="application/json")
        if self.offered_again is not None:
            return web.json_response(self.offered_again)
        if self._page_after(after) is None:
            try:
                await asyncio.wait_for(self.changed.wait(), float(request.query.get("wait", "0")))
            except TimeoutError:
                pass
        return web.json_response(self._page_after(after) or {"deliveries": [], "cursor": after})

    def _page_after(self, after: int) -> dict | None:
        """The first queued page past `after`: pages stay queued, so an abandoned long poll takes nothing away."""
        return next((page for page in self.inbox_pages if page["cursor"] > after), None)
