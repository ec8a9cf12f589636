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
    # while. The message is not rejected (a receipt the hub would never deliver it again after): it is left
    # unanswered, the hub offers it again once its lease ends, and it is taken in once the list can be fetched.
    newer, new_key = with_new_key(trust, "CN-GD", "test-cn-gd-message-2")
    submit = example_payload("referral.submit", "CN-GD", "HK")
    delivery = delivery_of(submit, new_key, hub_key)

    async def scenario():
        async with FakeHub(newer, hub_key, schemas) as hub:
            hub.trust_list_failures = 2  # at the simulator's start, and when the delivery names the new key
            hub.queue_page([delivery], cursor=_index(delivery))
            async with running_simulator(hub.url, mode="pull", poll_wait_seconds=1, anchor=trust) as simulator:
                await simulator.wait_for(lambda: simulator.wire_deliveries(submit["id"]) == 1, timeout=30)
                assert simulator.application_deliveries(submit["id"]) == 0 and not hub.messages("/v1/receipts")
                hub.offered_again = {"deliveries": [json.loads(delivery)], "cursor": _index(delivery)}  # lease over
                await simulator.wait_for(lambda: simulator.application_deliveries(submit["id"]) == 1, timeout=30)
                await hub.wait_for(lambda: bool(hub.messages("/v1/receipts")), timeout=30)
                receipts = hub.messages("/v1/receipts")
                assert [receipt.body["status"] for receipt in receipts] == ["accepted"], "never rejected for the outage"

    asyncio.run(scenario())


def _index(delivery: bytes) -> int:
    return json.loads(jws.parse_compact(json.loads(delivery)["attestation"], "gba-attestation+jws").payload)["ledger_index"]


def test_the_cursor_never_passes_a_delivery_answered_later_even_when_newer_ones_arrive(
        running_simulator, trust, hub_key, schemas, test_key):
    # The hub leases what it returned, so the next answer brings newer deliveries and a larger cursor; a request's
    # `after` acknowledges every receipt up to it (PROTO-12.6-2), the held-back one included, which the hub would
    # then never deliver again. The cursor stops short of it until it is taken in.
    newer, new_key = with_new_key(trust, "CN-GD", "test-cn-gd-message-2")
    shipped = example_payload("receipt", "CN-GD", "HK")
    receipt = example_payload("receipt", "CN-GD", "HK", reply_to=shipped["body"]["message_id"])
    held_back = delivery_of(receipt, new_key, hub_key)
    submit = example_payload("referral.submit", "MO", "HK")
    later = delivery_of(submit, test_key("test-mo-message-1"), hub_key)
    first, last = _index(held_back), _index(later)
    assert first < last

    async def scenario():
        async with FakeHub(newer, hub_key, schemas) as hub:
            hub.trust_list_failures = 10**6  # the hub's list cannot be fetched for now
            hub.raw_inbox_answers.append(json.dumps({"deliveries": [json.loads(held_back)], "cursor": first}).encode())
            hub.queue_page([later], cursor=last)  # what the hub offers while the first is leased
            async with running_simulator(hub.url, mode="pull", poll_wait_seconds=1, anchor=trust) as simulator:
                inbox_after = lambda: [int(r.query["after"]) for r in hub.requests if r.path == "/v1/inbox"]  # noqa: E731
                await hub.wait_for(lambda: simulator.application_deliveries(submit["id"]) == 1 and len(inbox_after()) >= 4,
                                   timeout=30)
                assert max(inbox_after()) < first, "no request acknowledged the held-back receipt"
                hub.trust_list_failures = 0  # the list can be fetched again, and the lease ended: offered again
                hub.inbox_pages.insert(0, {"deliveries": [json.loads(held_back)], "cursor": first})
                await hub.wait_for(lambda: last in inbox_after(), timeout=30)
                assert simulator.application_deliveries(receipt["id"]) == 1, "stored before the cursor passed it"

    asyncio.run(scenario())


def _receipt_payload() -> dict:
    shipped = example_payload("receipt", "CN-GD", "HK")
    return example_payload("receipt", "CN-GD", "HK", reply_to=shipped["body"]["message_id"])


def test_a_held_receipt_below_the_cursor_brings_it_down_and_a_restart_keeps_it_held(
        running_simulator, trust, hub_key, schemas, test_key, tmp_path):
    # PROTO-12.4-2 lets the hub offer a receipt after deliveries with higher indexes; and a restart must not forget
    # what it held: either way the next `after` would acknowledge a receipt that was never stored.
    newer, new_key = with_new_key(trust, "CN-GD", "test-cn-gd-message-2")
    known = test_key("test-cn-gd-message-1")
    message = delivery_of(example_payload("referral.submit", "CN-GD", "HK"), known, hub_key)
    held = _receipt_payload()
    held_back = delivery_of(held, new_key, hub_key)
    later = delivery_of(_receipt_payload(), known, hub_key)
    a, b, c = map(_index, (message, held_back, later))
    assert a < b < c
    state = tmp_path / "state"

    async def scenario():
        async with FakeHub(newer, hub_key, schemas) as hub:
            hub.trust_list_failures = 10**6
            inbox_after = lambda: [int(r.query["after"]) for r in hub.requests if r.path == "/v1/inbox"]  # noqa: E731
            hub.queue_page([message, later], cursor=c)
            async with running_simulator(hub.url, mode="pull", poll_wait_seconds=1, anchor=trust, state_dir=state):
                await hub.wait_for(lambda: c in inbox_after(), timeout=30)
                hub.raw_inbox_answers.append(json.dumps({"deliveries": [json.loads(held_back)], "cursor": b}).encode())
                await hub.wait_for(lambda: b - 1 in inbox_after(), timeout=30)
            asked = len(inbox_after())
            async with running_simulator(hub.url, mode="pull", poll_wait_seconds=1, anchor=trust, state_dir=state) as simulator:
                await hub.wait_for(lambda: len(inbox_after()) >= asked + 3, timeout=30)
                assert max(inbox_after()[asked:]) == b - 1, "after a restart too, nothing at or past the held receipt"
                hub.trust_list_failures = 0
                hub.offered_again = {"deliveries": [json.loads(held_back)], "cursor": b}
                await simulator.wait_for(lambda: simulator.application_deliveries(held["id"]) == 1, timeout=30)
                await hub.wait_for(lambda: b in inbox_after(), timeout=30)

    asyncio.run(scenario())


def test_a_delivery_whose_attestation_is_not_a_string_is_refused_and_the_poller_goes_on(
        running_simulator, fake_hub, test_key, hub_key):
    submit = example_payload("referral.submit", "CN-GD", "HK")
    good = delivery_of(submit, test_key("test-cn-gd-message-1"), hub_key)
    odd = dict(json.loads(good), attestation=[])

    async def scenario():
        async with fake_hub() as hub:
            hub.raw_inbox_answers.append(json.dumps({"deliveries": [odd], "cursor": 1}).encode())
            hub.queue_page([good], cursor=_index(good))
            async with running_simulator(hub.url, mode="pull", poll_wait_seconds=1) as simulator:
                await simulator.wait_for(lambda: simulator.application_deliveries(submit["id"]) == 1, timeout=30)

    asyncio.run(scenario())


def test_against_a_hub_that_does_not_long_poll_the_inbox_is_asked_with_no_wait(running_simulator, fake_hub, test_key, hub_key):
    # §12.6 lets a hub's long-poll limit be 0: every wait above it is refused, down to 0, which it takes.
    submit = example_payload("referral.submit", "CN-GD", "HK")
    delivery = delivery_of(submit, test_key("test-cn-gd-message-1"), hub_key)

    async def scenario():
        async with fake_hub() as hub:
            hub.long_poll_limit = 0
            hub.queue_page([delivery], cursor=_index(delivery))
            async with running_simulator(hub.url, mode="pull", poll_wait_seconds=30) as simulator:
                await simulator.wait_for(lambda: simulator.application_deliveries(submit["id"]) == 1, timeout=20)
                waits = [r.query["wait"] for r in hub.requests if r.path == "/v1/inbox"]
                assert waits[:6] == ["30", "15", "7", "3", "1", "0"]

    asyncio.run(scenario())


def delivery_of_message(delivery: bytes) -> bytes:
    return json.loads(delivery)["message"].encode("ascii")
