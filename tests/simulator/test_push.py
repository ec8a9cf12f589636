"""A pushed delivery, as the hub sends it (docs/protocol.md §9.2-§9.4, §12.5)."""

from __future__ import annotations

import asyncio
import json

from gateway.protocol import jws
from gateway.protocol.message import sign_message, verify_message
from gateway.protocol.timestamps import utc_now
from gateway.simulator.rules import rules_from_document
from tests.simulator.conftest import push
from tests.simulator.deliveries import attested, delivery_of, example_payload, with_new_key
from tests.simulator.fake_hub import FakeHub


def _receipt(body: bytes, trust, schemas):
    return verify_message(body, trust, schemas, utc_now())


def test_a_pushed_referral_gets_an_accepted_receipt_naming_its_digest(running_simulator, fake_hub, test_key, hub_key, trust, schemas):
    submit = example_payload("referral.submit", "CN-GD", "HK")
    compact = sign_message(submit, test_key("test-cn-gd-message-1"))

    async def scenario():
        async with fake_hub() as hub, running_simulator(hub.url) as simulator:
            status, content_type, body = await push(simulator, attested(compact, submit, hub_key).to_json())
            assert (status, content_type) == (200, "application/jose")
            receipt = _receipt(body, trust, schemas)
            assert (receipt.type, receipt.sender, receipt.receiver, receipt.case) == ("receipt", "HK", "CN-GD", submit["case"])
            assert receipt.reply_to == submit["id"]
            assert receipt.body == {"message_id": submit["id"], "message_digest": jws.digest(compact), "status": "accepted"}
            assert receipt.purpose == "delivery_receipt"
            assert simulator.application_deliveries(submit["id"]) == 1
            # The default rules accept the referral, then close it granted: sent in that order.
            await simulator.wait_for(lambda: len(hub.messages()) == 2, timeout=10)
            accept, close = hub.messages()
            assert (accept.type, accept.reply_to, accept.case) == ("referral.accept", submit["id"], submit["case"])
            assert close.type == "referral.close" and close.body["outcome"] == "granted"
            assert close.body["awards"][0]["amount"]["currency"] == "HKD"
            await simulator.wait_for(lambda: simulator.outgoing(close.id).hub_status == "accepted", timeout=10)
            case = simulator.case(submit["case"])
            assert (case.role, case.peer, case.state, case.outcome) == ("responder", "CN-GD", "closed", "granted")
            assert case.messages == (submit["id"], accept.id, close.id)

    asyncio.run(scenario())


def test_a_redelivery_gets_the_same_receipt_bytes_and_is_not_handed_over_again_even_after_a_restart(
    running_simulator, fake_hub, test_key, hub_key
):
    submit = example_payload("referral.submit", "CN-GD", "HK")
    delivery = delivery_of(submit, test_key("test-cn-gd-message-1"), hub_key)

    async def scenario():
        async with fake_hub() as hub:
            async with running_simulator(hub.url) as simulator:
                first = await push(simulator, delivery)
                second = await push(simulator, delivery)
                assert first == second and first[0] == 200
                assert simulator.wire_deliveries(submit["id"]) == 2
                assert simulator.application_deliveries(submit["id"]) == 1
            async with running_simulator(hub.url) as restarted:
                third = await push(restarted, delivery)
                assert third == first
                assert restarted.wire_deliveries(submit["id"]) == 3
                assert restarted.application_deliveries(submit["id"]) == 1
                await restarted.wait_for(lambda: len(hub.messages()) == 2, timeout=10)
                assert [m.type for m in hub.messages()] == ["referral.accept", "referral.close"]

    asyncio.run(scenario())


def test_concurrent_deliveries_of_one_message_reach_the_application_once(running_simulator, fake_hub, test_key, hub_key):
    submit = example_payload("referral.submit", "CN-GD", "HK")
    delivery = delivery_of(submit, test_key("test-cn-gd-message-1"), hub_key)

    async def scenario():
        async with fake_hub() as hub, running_simulator(hub.url) as simulator:
            arrived, release = asyncio.Event(), asyncio.Event()

            async def stall_first(message_id: str) -> None:
                if not arrived.is_set():
                    arrived.set()
                    await release.wait()

            simulator.on_delivery = stall_first
            first = asyncio.create_task(push(simulator, delivery))
            await arrived.wait()
            second = await push(simulator, delivery)
            release.set()
            assert await first == second
            assert simulator.wire_deliveries(submit["id"]) == 2
            assert simulator.application_deliveries(submit["id"]) == 1

    asyncio.run(scenario())


def test_a_delivery_of_other_bytes_than_attested_gets_a_rejected_receipt(running_simulator, fake_hub, test_key, hub_key, trust, schemas):
    submit = example_payload("referral.submit", "CN-GD", "HK")
    key = test_key("test-cn-gd-message-1")
    genuine = sign_message(submit, key)
    tampered = sign_message({**submit, "body": {**submit["body"], "urgency": "emergency"}}, key)
    delivery = attested(genuine, submit, hub_key)
    forged = type(delivery)(tampered, delivery.attestation, delivery.local_view)

    async def scenario():
        async with fake_hub() as hub, running_simulator(hub.url) as simulator:
            status, content_type, body = await push(simulator, forged.to_json())
            assert (status, content_type) == (200, "application/jose")
            receipt = _receipt(body, trust, schemas)
            assert receipt.body["status"] == "rejected" and receipt.body["code"] == "attestation-mismatch"
            assert (receipt.receiver, receipt.case, receipt.reply_to) == ("CN-GD", submit["case"], submit["id"])
            assert receipt.body["message_digest"] == jws.digest(genuine)
            assert simulator.application_deliveries(submit["id"]) == 0
            assert simulator.case(submit["case"]) is None

    asyncio.run(scenario())


def test_a_delivery_whose_attestation_does_not_verify_is_answered_with_a_problem(running_simulator, fake_hub, test_key):
    submit = example_payload("referral.submit", "CN-GD", "HK")
    not_the_hub = test_key("test-cn-gd-message-1")
    delivery = delivery_of(submit, not_the_hub, test_key("test-hk-message-1"))

    async def scenario():
        async with fake_hub() as hub, running_simulator(hub.url) as simulator:
            status, content_type, body = await push(simulator, delivery)
            assert (status, content_type) == (400, "application/problem+json")
            assert json.loads(body)["code"] == "key-use-mismatch"

    asyncio.run(scenario())


def test_a_delivered_receipt_is_recorded_with_204_and_never_answered_with_a_receipt(running_simulator, fake_hub, test_key, hub_key):
    async def scenario():
        async with fake_hub() as hub, running_simulator(hub.url) as simulator:
            case, message_id = await simulator.start_referral("CN-GD")
            await simulator.wait_for(lambda: simulator.outgoing(message_id).hub_status == "accepted", timeout=10)
            sent = hub.messages()[0]
            receipt = example_payload("receipt", "CN-GD", "HK", case=case, reply_to=message_id)
            receipt["body"] = {"message_id": message_id, "message_digest": sent.digest, "status": "accepted"}
            status, _, body = await push(simulator, delivery_of(receipt, test_key("test-cn-gd-message-1"), hub_key))
            assert (status, body) == (204, b"")
            outgoing = simulator.outgoing(message_id)
            assert outgoing.receiver_receipt_status == "accepted" and outgoing.ledger_index is not None
            assert simulator.application_deliveries(receipt["id"]) == 1
            assert len(hub.messages()) == 1  # nothing sent back

    asyncio.run(scenario())


def test_the_rules_can_decline_a_referral(running_simulator, fake_hub, test_key, hub_key):
    rules = rules_from_document({"referral": {"decision": "decline", "decline_reason": "not_within_competence"}})
    submit = example_payload("referral.submit", "CN-GD", "HK")

    async def scenario():
        async with fake_hub() as hub, running_simulator(hub.url, rules=rules) as simulator:
            await push(simulator, delivery_of(submit, test_key("test-cn-gd-message-1"), hub_key))
            await simulator.wait_for(lambda: len(hub.messages()) == 1, timeout=10)
            (decline,) = hub.messages()
            assert (decline.type, decline.reply_to, decline.body) == ("referral.decline", submit["id"], {"reason": "not_within_competence"})
            assert simulator.case(submit["case"]).state == "declined"

    asyncio.run(scenario())


def test_a_verification_request_is_answered_item_by_item(running_simulator, fake_hub, test_key, hub_key, trust, schemas):
    request = example_payload("verification.request", "CN-GD", "MO")
    pairs = {(m["ref"], item) for m in request["body"]["members"] for item in request["body"]["items"]}

    async def scenario():
        async with fake_hub() as hub, running_simulator(hub.url, jurisdiction="MO") as simulator:
            await push(simulator, delivery_of(request, test_key("test-cn-gd-message-1"), hub_key))
            await simulator.wait_for(lambda: len(hub.messages()) == 1, timeout=10)
            (response,) = hub.messages()
            verify_message(response.compact, trust, schemas, utc_now())
            assert (response.type, response.reply_to, response.case) == ("verification.response", request["id"], request["case"])
            results = response.body["results"]
            assert {(r["member"], r["item"]) for r in results} == pairs and len(results) == len(pairs)
            for result in results:
                for amount in result.get("amounts", []):
                    assert amount["money"]["currency"] == "MOP"
            assert simulator.case(request["case"]).state == "answered"

    asyncio.run(scenario())


def test_a_withdrawal_of_an_unknown_case_is_accepted(running_simulator, fake_hub, test_key, hub_key, trust, schemas):
    withdraw = example_payload("referral.withdraw", "CN-GD", "HK")

    async def scenario():
        async with fake_hub() as hub, running_simulator(hub.url) as simulator:
            status, _, body = await push(simulator, delivery_of(withdraw, test_key("test-cn-gd-message-1"), hub_key))
            assert status == 200 and _receipt(body, trust, schemas).body["status"] == "accepted"
            assert simulator.case(withdraw["case"]).state == "withdrawn"

    asyncio.run(scenario())


def test_a_push_naming_a_key_unknown_while_the_trust_list_is_unreachable_is_answered_503(running_simulator, trust, hub_key, schemas):
    # Not a `rejected` receipt, which the hub would never redeliver after, but 503: the hub delivers again later.
    newer, new_key = with_new_key(trust, "CN-GD", "test-cn-gd-message-2")
    submit = example_payload("referral.submit", "CN-GD", "HK")

    async def scenario():
        async with FakeHub(newer, hub_key, schemas) as hub:
            hub.trust_list_failures = 2  # at the simulator's start, and when the delivery names the new key
            async with running_simulator(hub.url, anchor=trust) as simulator:
                await hub.wait_for(lambda: any(r.path == "/v1/trust-list" for r in hub.requests), timeout=20)
                status, content_type, body = await push(simulator, delivery_of(submit, new_key, hub_key))
                assert (status, content_type) == (503, "application/problem+json")
                assert json.loads(body)["code"] == "unavailable"
                assert simulator.wire_deliveries(submit["id"]) == 1 and simulator.application_deliveries(submit["id"]) == 0

    asyncio.run(scenario())


def test_forged_kids_while_the_hub_is_failing_do_not_make_the_simulator_hammer_it(running_simulator, trust, hub_key, schemas):
    # Each delivery naming an unknown kid asks for the hub's list, but not more often than a failing hub allows.
    newer, _ = with_new_key(trust, "CN-GD", "test-cn-gd-message-2")

    async def scenario():
        async with FakeHub(newer, hub_key, schemas) as hub:
            hub.trust_list_failures = 10**6
            async with running_simulator(hub.url, anchor=trust) as simulator:
                await hub.wait_for(lambda: any(r.path == "/v1/trust-list" for r in hub.requests), timeout=20)
                for _ in range(20):
                    _, forged_key = with_new_key(trust, "CN-GD", "test-cn-gd-forged-1")
                    status, _, _ = await push(simulator, delivery_of(example_payload("referral.submit", "CN-GD", "HK"), forged_key, hub_key))
                    assert status == 503
            return sum(r.path == "/v1/trust-list" for r in hub.requests)

    assert asyncio.run(scenario()) <= 10, "20 forged deliveries in well under 5 s: at most one fetch per half second"
