"""Pull delivery: the inbox loop (docs/protocol.md §12.6), against the fake hub's inbox."""

from __future__ import annotations

import asyncio
import json

from gateway.protocol import jws
from tests.simulator.deliveries import delivery_of, example_payload, with_new_key
from tests.simulator.fake_hub import FakeHub


def test_pulled_deliveries_are_receipted_before_the_cursor_moves(running_simulator, fake_hub, test_key, hub_key, trust, schemas):
    submit = example_payload("referral.submit", "CN-GD", "HK")
    delivery = delivery_of(submit, test_key("test-cn-gd-message-1"), hub_key)

    async def scenario():
        async with fake_hub() as hub:
            hub.failures = [(503, "unavailable")]  # the first receipt post fails and is retried
            hub.queue_page([delivery], cursor=7)
            async with running_simulator(hub.url, mode="pull", poll_wait_seconds=1) as simulator:
                inbox_after = lambda: [r.query["after"] for r in hub.requests if r.path == "/v1/inbox"]  # noqa: E731
                await hub.wait_for(lambda: "7" in inbox_after(), timeout=20)
                assert inbox_after()[0] == "-1"
                posts = [r for r in hub.requests if r.path == "/v1/receipts"]
                assert len(posts) == 2 and posts[0].body == posts[1].body
                (receipt,) = hub.messages("/v1/receipts")[-1:]
                assert receipt.body == {"message_id": submit["id"], "message_digest": jws.digest(delivery_of_message(delivery)), "status": "accepted"}
                proof = json.loads(jws.parse_compact(posts[-1].proof, "gba-request+jws").payload)
                assert (proof["htm"], proof["htu"]) == ("POST", hub.url + "/v1/receipts")
                inbox_proof = next(r.proof for r in hub.requests if r.path == "/v1/inbox")
                inbox_payload = json.loads(jws.parse_compact(inbox_proof, "gba-request+jws").payload)
                assert (inbox_payload["htu"], inbox_payload["body_sha256"]) == (hub.url + "/v1/inbox", None)
                assert simulator.application_deliveries(submit["id"]) == 1
            # After a restart the stored cursor is used; a redelivery is receipted with the same bytes.
            polls_before = len(inbox_after())
            receipts_before = len(posts)
            hub.queue_page([delivery], cursor=8)
            async with running_simulator(hub.url, mode="pull", poll_wait_seconds=1) as simulator:
                await hub.wait_for(lambda: "8" in inbox_after(), timeout=20)
                assert inbox_after()[polls_before] == "7"
                assert simulator.wire_deliveries(submit["id"]) == 2
                assert simulator.application_deliveries(submit["id"]) == 1
                again = [r.body for r in hub.requests if r.path == "/v1/receipts"][receipts_before:]
                assert again == [posts[0].body]

    asyncio.run(scenario())


def test_an_inbox_answer_is_read_strictly_and_one_that_is_not_moves_no_cursor(running_simulator, fake_hub, test_key, hub_key):
    submit = example_payload("referral.submit", "CN-GD", "HK")
    delivery = delivery_of(submit, test_key("test-cn-gd-message-1"), hub_key)

    async def scenario():
        async with fake_hub() as hub:
            # Duplicate member names: a lax reader would take the last cursor and skip to 9 (§4: refused).
            hub.raw_inbox_answers = [b'{"deliveries":[],"cursor":5,"cursor":9}', b'{"deliveries":{},"cursor":9}']
            hub.queue_page([delivery], cursor=3)
            async with running_simulator(hub.url, mode="pull", poll_wait_seconds=1) as simulator:
                inbox_after = lambda: [r.query["after"] for r in hub.requests if r.path == "/v1/inbox"]  # noqa: E731
                await hub.wait_for(lambda: "3" in inbox_after(), timeout=20)
                assert inbox_after()[:3] == ["-1", "-1", "-1"], "neither bad answer moved the cursor"
                assert simulator.application_deliveries(submit["id"]) == 1, "the good answer's delivery was taken"

    asyncio.run(scenario())


def test_a_delivery_naming_a_key_unknown_while_the_trust_list_is_unreachable_is_taken_in_later(
        running_simulator, trust, hub_key, schemas):
    # CN-GD signs with a key the hub registered after the simulator's list; the hub's list cannot be fetched for a
    # while. The delivery is neither rejected (a receipt the hub would never redeliver after) nor passed by the
    # cursor (PROTO-12.6-2): the page is asked for again, and taken in once the list can be fetched.
    newer, new_key = with_new_key(trust, "CN-GD", "test-cn-gd-message-2")
    submit = example_payload("referral.submit", "CN-GD", "HK")
    delivery = delivery_of(submit, new_key, hub_key)

    async def scenario():
        async with FakeHub(newer, hub_key, schemas) as hub:
            hub.trust_list_failures = 2  # at the simulator's start, and when the delivery names the new key
            hub.queue_page([delivery], cursor=7)
            async with running_simulator(hub.url, mode="pull", poll_wait_seconds=1, anchor=trust) as simulator:
                inbox_after = lambda: [r.query["after"] for r in hub.requests if r.path == "/v1/inbox"]  # noqa: E731
                await hub.wait_for(lambda: "7" in inbox_after(), timeout=30)
                receipts = hub.messages("/v1/receipts")
                assert [receipt.body["status"] for receipt in receipts] == ["accepted"], "never rejected for the outage"
                assert simulator.application_deliveries(submit["id"]) == 1
                before = inbox_after()[:inbox_after().index("7")]
                assert len(before) >= 2 and set(before) == {"-1"}, "the page was asked for again, the cursor held"
                assert len([r for r in hub.requests if r.path == "/v1/trust-list"]) >= 2

    asyncio.run(scenario())


def delivery_of_message(delivery: bytes) -> bytes:
    return json.loads(delivery)["message"].encode("ascii")
