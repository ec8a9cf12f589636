"""The hub an endpoint fetches its trust list from, played by the suite (endpoint role, `--serve-hub HOST:PORT`).

It answers `GET /v1/trust-list` with the list a case serves (gateway/conformance/trust_lists.py)
and `GET /v1/about` with the mode of those lists, and counts the fetches of each list, so a
case knows when the endpoint has read the list it served. Every other request is answered
`404`: the suite plays only this part of a hub.
"""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

JOSE = "application/jose"


class ServedHub:
    """An aiohttp server on `host:port` serving one signed trust list at a time."""

    def __init__(self, host: str, port: int, mode: str) -> None:
        self.host, self.port, self.mode = host, port, mode
        self._list = b""
        self._fetches = 0
        self._fetched = asyncio.Event()
        self._runner: web.AppRunner | None = None

    def serve(self, signed_list: bytes) -> None:
        """Serve `signed_list` from now on, with its fetch count at zero."""
        self._list, self._fetches = signed_list, 0
        self._fetched.clear()

    @property
    def fetches(self) -> int:
        """How many times the list served now was fetched."""
        return self._fetches

    async def wait_for_fetch(self, seconds: float) -> bool:
        """True once the list served now has been fetched, False when `seconds` pass first."""
        try:
            await asyncio.wait_for(self._fetched.wait(), seconds)
        except TimeoutError:
            return False
        return True

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/v1/trust-list", self._trust_list)
        app.router.add_get("/v1/about", self._about)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _trust_list(self, request: web.Request) -> web.Response:
        if not self._list:
            return web.Response(status=503, headers={"Retry-After": "1"})
        self._fetches += 1
        self._fetched.set()
        return web.Response(body=self._list, content_type=JOSE)

    async def _about(self, request: web.Request) -> web.Response:
        return web.Response(body=json.dumps({"name": "GBA conformance suite (as the hub)", "protocol": 1, "mode": self.mode}).encode(),
                            content_type="application/json")
