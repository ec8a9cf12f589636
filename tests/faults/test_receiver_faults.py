"""A receiver that answers garbage, answers too slowly, fails, or is gone — and then comes back (issue 11).

Hong Kong's endpoint is a proxy of this test in front of Hong Kong's simulator. The proxy
misbehaves in turn — garbage bodies, answers slower than the hub's push timeout, HTTP
500, a closed port — while the hub keeps retrying each delivery and records why in the
outbox; then it passes deliveries through. Every message reaches the application exactly
once, the hub never stopped, and the ledger verifies.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
from aiohttp import web

from gateway.demo.exchange import free_port
from gateway.hub.delivery import DeliveryPolicy
from tests.cli_runner import run_cli
from tests.delivery.test_faults import fetch, hong_kong, post, referral
from tests.faults.report import record
from tests.hub.harness import running_hub

BEHAVIOURS = ("garbage", "slow", "error", "gone")
PUSH_TIMEOUT_SECONDS = 1.0


class MisbehavingEndpoint:
    """Hong Kong's endpoint as the hub sees it: `behaviour` decides each answer; `pass` forwards to the simulator."""

    def __init__(self, port: int, simulator_url: str) -> None:
        self.port, self.simulator_url = port, simulator_url
        self.behaviour = "garbage"
        self.seen: dict[str, int] = {}
        self._runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.seen[self.behaviour] = self.seen.get(self.behaviour, 0) + 1
        if self.behaviour == "garbage":
            return web.Response(status=200, body=b"\x00not a receipt\xff", content_type="application/jose")
        if self.behaviour == "slow":
            await asyncio.sleep(PUSH_TIMEOUT_SECONDS * 3)  # slower than the hub waits: the fault under test
            return web.Response(status=200)
        if self.behaviour == "error":
            return web.Response(status=500, text="boom")
        async with aiohttp.ClientSession() as session:
            async with session.post(self.simulator_url, data=body, headers={"Content-Type": request.content_type}) as answer:
                return web.Response(status=answer.status, body=await answer.read(), content_type=answer.content_type)

    async def up(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/deliveries", self.handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def down(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def test_garbage_slow_failing_and_missing_receivers_are_retried_until_the_receiver_is_back(database_url, tmp_path, example):
    proxy_port, sim_port = free_port(), free_port()
    policy = DeliveryPolicy(lease_seconds=5, retry_initial_seconds=0.05, retry_max_seconds=0.2, push_timeout_seconds=PUSH_TIMEOUT_SECONDS)
    ids, compacts = zip(*(referral(example) for _ in range(5)))
    with running_hub(database_url, push_endpoints={"HK": f"http://127.0.0.1:{proxy_port}/v1/deliveries"}, delivery=policy) as hub:

        async def scenario() -> tuple[dict[str, int], dict[str, int], set[str]]:
            hk = hong_kong(hub.base_url, tmp_path / "hk", sim_port)
            await hk.start()
            endpoint = MisbehavingEndpoint(proxy_port, hk.endpoint_url)
            await endpoint.up()
            errors: set[str] = set()
            try:
                for compact in compacts:
                    assert await asyncio.to_thread(post, hub.base_url, compact) == 202
                for behaviour in BEHAVIOURS:
                    if behaviour == "gone":
                        await endpoint.down()
                    else:
                        endpoint.behaviour = behaviour
                    errors |= await _until_the_hub_records_a_new_error(database_url, errors)
                await endpoint.up()  # back after "gone", the last fault
                endpoint.behaviour = "pass"
                deadline = time.monotonic() + 60
                while any(hk.application_deliveries(message_id) == 0 for message_id in ids):
                    assert time.monotonic() < deadline, "not every message was delivered once the receiver was back"
                    await asyncio.sleep(0.05)  # a bounded poll of the simulator's state
                return {m: hk.application_deliveries(m) for m in ids}, dict(endpoint.seen), errors
            finally:
                await endpoint.down()
                await hk.stop()

        application, seen, errors = asyncio.run(scenario())
        assert hub.request("GET", "/readyz").status == 200
    assert set(application.values()) == {1}, "each message reached the application exactly once"
    assert {"garbage", "slow", "error"} <= set(seen), f"every fault was met: {seen}"
    assert {"receipt-jws-malformed", "timeout", "http-500", "unreachable"} <= errors, f"the outbox said why: {errors}"
    verified = run_cli("ledger", "verify", "--database-url", database_url)
    assert verified.status == 0, verified.stdout + verified.stderr
    record("receiver-faults", "a receiver answering garbage, too slowly, 500, then gone, then back", accepted=len(ids), lost=0,
           pushes_refused_by_fault=sum(count for behaviour, count in seen.items() if behaviour != "pass"), application_duplicates=0)


async def _until_the_hub_records_a_new_error(database_url: str, known: set[str]) -> set[str]:
    """The delivery errors the outbox records once one it had not recorded before appears (bounded)."""
    deadline = time.monotonic() + 30
    while True:
        rows = await fetch(database_url, "SELECT DISTINCT last_error FROM outbox WHERE last_error IS NOT NULL")
        found = {row["last_error"] for row in rows} | known
        if found - known:
            return found
        assert time.monotonic() < deadline, f"no new delivery error recorded after {known}"
        await asyncio.sleep(0.05)  # a bounded poll of the database (the hub's deliverer writes it)
