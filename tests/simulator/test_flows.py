"""Flows the simulator opens, and how it sends them to a hub (docs/protocol.md §8.1, §9.1, §12.1)."""

from __future__ import annotations

import asyncio
import json
import sqlite3

import aiohttp
import pytest
from structlog.testing import capture_logs

from gateway.protocol import base64url
from gateway.protocol.timestamps import utc_now
from gateway.simulator.hub_client import RETRY_AFTER_MAX_SECONDS, HubClient, HubUnavailable
from gateway.simulator.sender import retry_delay
from gateway.simulator.simulator import _report_end
from gateway.simulator.state import STATE_FILE, SimulatorState
from tests.hub.harness import running_hub


def test_a_referral_sent_to_a_real_hub_gets_a_verified_hub_receipt(running_simulator, database_url, trust):
    with running_hub(database_url) as hub:

        async def scenario():
            async with running_simulator(hub.base_url, jurisdiction="CN-GD") as simulator:
                case, message_id = await simulator.start_referral("HK")
                await simulator.wait_for(lambda: simulator.outgoing(message_id).hub_status != "queued", timeout=20)
                sent = simulator.outgoing(message_id)
                assert (sent.hub_status, sent.refusal_code, sent.type, sent.case) == ("accepted", None, "referral.submit", case)
                assert sent.ledger_index is not None
                case_id, verification_id = await simulator.start_verification("MO")
                await simulator.wait_for(lambda: simulator.outgoing(verification_id).hub_status != "queued", timeout=20)
                assert simulator.outgoing(verification_id).hub_status == "accepted"
                assert simulator.case(case_id).state == "requested"

        asyncio.run(scenario())


def test_a_message_is_resent_with_identical_bytes_after_503_and_a_4xx_problem_is_final(running_simulator, fake_hub):
    async def scenario():
        async with fake_hub() as hub, running_simulator(hub.url) as simulator:
            hub.failures = [(503, "unavailable"), (500, "internal-error")]
            _, first = await simulator.start_referral("CN-GD")
            await simulator.wait_for(lambda: simulator.outgoing(first).hub_status == "accepted", timeout=20)
            posts = [r.body for r in hub.requests if r.path == "/v1/messages"]
            assert len(posts) == 3 and len(set(posts)) == 1
            assert simulator.outgoing(first).attempts == 3

            hub.failures = [(409, "case-state-conflict")]
            _, second = await simulator.start_verification("MO")
            await simulator.wait_for(lambda: simulator.outgoing(second).hub_status != "queued", timeout=10)
            refused = simulator.outgoing(second)
            assert (refused.hub_status, refused.refusal_code) == ("refused", "case-state-conflict")

    asyncio.run(scenario())


def test_the_control_api_opens_flows_and_shows_ids_states_and_counts(running_simulator, fake_hub):
    async def scenario():
        async with fake_hub() as hub, running_simulator(hub.url, jurisdiction="MO") as simulator:
            base = simulator.endpoint_url.removesuffix("/v1/deliveries")
            async with aiohttp.ClientSession() as session:
                async with session.post(base + "/v1/simulator/flows", json={"kind": "verification", "to": "HK"}) as response:
                    assert response.status == 201
                    opened = await response.json()
                async with session.post(base + "/v1/simulator/flows", json={"kind": "gossip", "to": "HK"}) as response:
                    assert response.status == 400
                for odd in ({"kind": "referral", "to": ["HK"]}, {"kind": {"a": 1}, "to": "HK"}):
                    async with session.post(base + "/v1/simulator/flows", json=odd) as response:
                        assert response.status == 400 and response.content_type == "application/problem+json", odd
                await simulator.wait_for(lambda: simulator.outgoing(opened["message_id"]).hub_status == "accepted", timeout=10)
                async with session.get(base + "/v1/simulator/state") as response:
                    state = await response.json()
            assert state["cases"] == [
                {"id": opened["case"], "kind": "verification", "peer": "HK", "role": "opener", "state": "requested", "outcome": None}
            ]
            assert state["outgoing"] == {"queued": 0, "accepted": 1, "refused": 0}
            assert hub.messages()[0].type == "verification.request"

    asyncio.run(scenario())


def _payload(compact: bytes) -> dict:
    return json.loads(base64url.decode(compact.split(b".")[1]))


def test_a_message_refused_as_stale_is_sent_again_as_a_new_message_once_the_hub_says_it_holds_none(running_simulator, fake_hub):
    """The hub was down longer than the freshness window (§8.4): the sender asks whether the hub accepted it
    (PROTO-8.1-3), then sends its content under a new id and `created`, never new bytes under the old id (PROTO-8.1-2)."""

    async def scenario():
        async with fake_hub() as hub, running_simulator(hub.url) as simulator:
            hub.failures = [(422, "message-stale")] * 3  # and twice more: a clock behind the hub's
            case, first = await simulator.start_referral("CN-GD")
            await simulator.wait_for(lambda: simulator.outgoing(first).hub_status == "accepted", timeout=30)
            posts = [r.body for r in hub.requests if r.path == "/v1/messages"]
            asked = [r.path for r in hub.requests if r.path.startswith("/v1/messages/")]
            ids = [_payload(post)["id"] for post in posts]
            assert len(posts) == 4 and len(set(ids)) == 4 and ids[0] == first, "each renewal is a new message"
            assert asked == [f"/v1/messages/{message_id}" for message_id in ids[:3]], "asked before each renewal"
            assert {_payload(post)["body"] == _payload(posts[0])["body"] for post in posts} == {True}
            sent = simulator.outgoing(first)
            assert sent.id == ids[-1] and sent.compact == posts[-1] and sent.attempts == 4
            assert simulator.case(case).messages == (ids[-1],)

    asyncio.run(scenario())


def test_a_message_refused_as_stale_that_the_hub_had_accepted_is_not_sent_again(running_simulator, fake_hub):
    """The hub's answer to the first post was lost; the retry is refused as stale: the hub receipt it holds ends it."""

    async def scenario():
        async with fake_hub() as hub, running_simulator(hub.url) as simulator:
            hub.lost_answers = 1
            hub.failures = [(422, "message-stale")]
            _, first = await simulator.start_referral("CN-GD")
            await simulator.wait_for(lambda: simulator.outgoing(first).hub_status == "accepted", timeout=30)
            posts = [r.body for r in hub.requests if r.path == "/v1/messages"]
            assert len(posts) == 2 and posts[0] == posts[1], "the identical bytes, then nothing new"
            assert simulator.outgoing(first).id == first and list(hub.accepted) == [first]

    asyncio.run(scenario())


def test_the_trust_list_is_fetched_again_on_schedule_not_only_at_start(running_simulator, fake_hub):
    # PROTO-10.3-6: at least hourly. A consumer that misses the lists of a hub receipt key's rotation can install
    # no later list (§10.3), and one that fetched only at start or on an unknown kid would miss them.
    async def scenario():
        async with fake_hub() as hub, running_simulator(hub.url, trust_refresh_seconds=0.05):
            await hub.wait_for(lambda: sum(r.path == "/v1/trust-list" for r in hub.requests) >= 3, timeout=20)

    asyncio.run(scenario())


def test_a_loop_that_ends_other_than_by_stop_is_reported_by_its_type():
    async def scenario():
        async def fails() -> None:
            raise sqlite3.OperationalError("disk I/O error at 陳大文")

        task = asyncio.get_running_loop().create_task(fails(), name="simulator-inbox")
        await asyncio.wait([task])
        with capture_logs() as lines:
            _report_end(task)
        return lines

    assert asyncio.run(scenario()) == [
        {"event": "simulator.loop_ended", "loop": "simulator-inbox", "error": "OperationalError", "log_level": "error"}
    ]


def test_the_hubs_retry_after_sets_the_least_wait_before_a_retry(fake_hub, test_key):
    # §12.1: a 429 or 503 may say when to come back; the backoff alone (0.25 s doubling) would come back sooner.
    async def scenario():
        async with fake_hub() as hub:
            hub.failures = [(429, "rate-limited", {"Retry-After": "7"}), (503, "unavailable", {"Retry-After": "86400"}),
                            (503, "unavailable"), (503, "unavailable", {"Retry-After": "²"})]
            client = HubClient(hub.url, test_key("test-cn-gd-message-1"), utc_now)
            try:
                said = []
                for _ in range(4):
                    with pytest.raises(HubUnavailable) as failure:
                        await client.post_message(b"x.y.z")
                    said.append(failure.value.retry_after)
            finally:
                await client.close()
            return said

    first, capped, none, odd = asyncio.run(scenario())
    assert (first, capped, none, odd) == (7.0, RETRY_AFTER_MAX_SECONDS, None, None), "a digit Python reads but float() refuses"
    assert retry_delay(1, HubUnavailable("429", first)) >= 7.0 and retry_delay(1, HubUnavailable("503")) <= 0.25


def test_a_state_file_with_the_earlier_renewals_table_is_carried_over(tmp_path):
    # The first renewals table had new_id UNIQUE, which links that all point at the newest id break.
    folder = tmp_path / "state"
    folder.mkdir()
    with sqlite3.connect(folder / STATE_FILE) as db:
        db.execute("CREATE TABLE renewals (old_id TEXT PRIMARY KEY, new_id TEXT NOT NULL UNIQUE)")
        db.execute("INSERT INTO renewals VALUES ('first', 'second')")
    state = SimulatorState.open(folder)
    try:
        assert state._db.execute("SELECT old_id, new_id FROM renewal_links").fetchall() == [("first", "second")]
        assert state._db.execute("SELECT name FROM sqlite_master WHERE name = 'renewals'").fetchall() == []
    finally:
        state.close()
