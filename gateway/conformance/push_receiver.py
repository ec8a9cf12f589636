"""The suite as a jurisdiction's push endpoint, for the hub role (`--receive-at HOST:PORT`; docs/protocol.md §12.5).

The hub pushes `--to`'s deliveries here (its configuration names http://HOST:PORT/v1/deliveries).
Each push waits, its connection open, until a case answers it (`next_push`), so a case decides
the answer: a good receipt, or a bad answer whose effect (the hub pushing the message again,
PROTO-12.5-2) it then watches for. Pushes of messages no case is waiting for are answered `503`:
a failed attempt the hub retries later.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

from aiohttp import web

DELIVERIES_PATH = "/v1/deliveries"


@dataclass
class Push:
    """One push the hub made: the delivery object's bytes, and the answer the case gives it."""

    body: bytes
    answer: asyncio.Future[web.Response] = field(repr=False)

    @property
    def message(self) -> str | None:
        try:
            delivery = json.loads(self.body)
        except ValueError:
            return None
        return delivery.get("message") if isinstance(delivery, dict) else None


class PushReceiver:
    """An aiohttp server on `host:port` that hands each push to the case waiting for its message."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._pushes: asyncio.Queue[Push] = asyncio.Queue()
        self._runner: web.AppRunner | None = None

    async def next_push(self, message: bytes, seconds: float) -> Push | None:
        """The next push of `message` (its compact JWS) within `seconds`, or None; pushes of others are answered 503."""
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                push = await asyncio.wait_for(self._pushes.get(), remaining)
            except TimeoutError:
                return None
            if push.message == message.decode("ascii"):
                return push
            push.answer.set_result(web.Response(status=503, headers={"Retry-After": "1"}))
        return None

    async def start(self) -> None:
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_post(DELIVERIES_PATH, self._delivery)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()

    async def stop(self) -> None:
        while not self._pushes.empty():
            self._pushes.get_nowait().answer.set_result(web.Response(status=503))
        if self._runner is not None:
            await self._runner.cleanup()

    async def _delivery(self, request: web.Request) -> web.Response:
        push = Push(await request.read(), asyncio.get_running_loop().create_future())
        await self._pushes.put(push)
        return await push.answer
