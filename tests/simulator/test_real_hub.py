"""The simulator against a real hub: where it depends on what the hub answers, not on the fake hub's stand-in."""

from __future__ import annotations

import asyncio
import json

from gateway.demo.exchange import free_port
from gateway.protocol import jws
from gateway.protocol.ids import new_uuid7
from gateway.protocol.timestamps import utc_now
from gateway.simulator.hub_client import HubClient
from tests.hub.harness import running_hub
from tests.hub.test_transport_security import referral


def test_the_client_learns_whether_the_hub_accepted_a_message_it_sent(database_url, example, test_key):
    compact = referral(example, test_key("test-cn-gd-message-1"))
    message_id = json.loads(jws.parse_compact(compact, "gba-case+jws").payload)["id"]

    async def scenario(url: str) -> None:
        sender = HubClient(url, test_key("test-cn-gd-message-1"), utc_now)
        other = HubClient(url, test_key("test-hk-message-1"), utc_now)
        try:
            assert await sender.sent_message(message_id) is None, "not accepted yet"
            posted = await sender.post_message(compact)
            held = await sender.sent_message(message_id)
            assert held is not None and (held.message_id, held.hub_receipt) == (message_id, posted.hub_receipt)
            assert await other.sent_message(message_id) is None, "only its sender learns of it"
            assert await sender.sent_message(new_uuid7()) is None
        finally:
            await sender.close()
            await other.close()

    port = free_port()  # a request proof names the hub's public URL (§9.5)
    with running_hub(database_url, port=port, public_base_url=f"http://127.0.0.1:{port}") as hub:
        asyncio.run(scenario(hub.base_url))


def test_pull_mode_works_with_a_hub_whose_long_poll_limit_is_below_the_wait_it_asks(database_url, example, test_key,
                                                                                  running_simulator):
    # `wait` runs from 0 to the hub's limit (§12.6), which a client cannot read: a wait above it is `query-invalid`.
    compact = referral(example, test_key("test-cn-gd-message-1"))
    message_id = json.loads(jws.parse_compact(compact, "gba-case+jws").payload)["id"]
    port = free_port()

    async def scenario(url: str) -> None:
        sender = HubClient(url, test_key("test-cn-gd-message-1"), utc_now)
        try:
            await sender.post_message(compact)
        finally:
            await sender.close()
        async with running_simulator(url, mode="pull", poll_wait_seconds=30) as simulator:
            await simulator.wait_for(lambda: simulator.application_deliveries(message_id) == 1, timeout=30)

    with running_hub(database_url, port=port, public_base_url=f"http://127.0.0.1:{port}", long_poll_seconds=4) as hub:
        asyncio.run(scenario(hub.base_url))
