"""Two hub processes on one database, racing (DESIGN.md: "any number of gateway processes").

Each hub has its own connection pool, committer and registry, as a separate process
would. The overlap is proven, not hoped for: hub A's commit hook holds A's
transaction open until the database shows hub B's transaction waiting for A's locks;
only then does A commit. Without a real overlap the hook would time out and fail.
"""

from __future__ import annotations

import asyncio
import threading

import asyncpg

from gateway.protocol.ids import new_uuid7
from gateway.protocol.message import sign_message
from gateway.protocol.timestamps import format_timestamp, utc_now
from tests.cli_runner import assert_refused
from tests.hub.harness import running_hub, serve_process

GD, HK = "test-cn-gd-message-1", "test-hk-message-1"
WAITING_FOR_A_LOCK = (
    "SELECT count(*) FROM pg_stat_activity"
    " WHERE datname = current_database() AND wait_event_type = 'Lock' AND application_name LIKE 'gateway:%'"
)


class OverlapGate:
    """A commit hook: once armed, it holds the batch until another hub waits on its locks."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.armed = threading.Event()
        self.holding = threading.Event()
        self.overlapped = False

    async def __call__(self, batch_size: int) -> None:
        if not self.armed.is_set():
            return
        self.armed.clear()
        self.holding.set()
        connection = await asyncpg.connect(self.database_url)
        try:
            deadline = asyncio.get_running_loop().time() + 30
            while await connection.fetchval(WAITING_FOR_A_LOCK) == 0:
                if asyncio.get_running_loop().time() > deadline:
                    raise AssertionError("the other hub never waited on this transaction's locks")
                await asyncio.sleep(0.005)  # polling the database for a condition, bounded by the deadline
            self.overlapped = True
        finally:
            await connection.close()


def _payload(example, message_type: str, sender: str, receiver: str, case: str, **changes) -> dict:
    payload = dict(example(message_type), id=new_uuid7(), case=case, created=format_timestamp(utc_now().replace(microsecond=0)))
    payload["from"], payload["to"] = sender, receiver
    payload.update(changes)
    return payload


def _race(first, second):
    """Send `first` (to the gated hub) and, once it holds its transaction, `second`; return both answers."""
    answers = {}
    gate, hub_a, compact_a = first
    hub_b, compact_b = second
    gate.armed.set()
    thread = threading.Thread(target=lambda: answers.__setitem__("a", hub_a.post_message(compact_a)))
    thread.start()
    assert gate.holding.wait(30), "hub A never reached its commit"
    answers["b"] = hub_b.post_message(compact_b)
    thread.join(60)
    return answers["a"], answers["b"]


def test_an_accept_and_a_decline_racing_on_two_processes_one_wins(database_url, example, test_key):
    gate = OverlapGate(database_url)
    with running_hub(database_url, before_commit=gate) as hub_a, running_hub(database_url) as hub_b:
        case = new_uuid7()
        submit = _payload(example, "referral.submit", "CN-GD", "HK", case, reply_to=None)
        assert hub_a.post_message(sign_message(submit, test_key(GD))).status == 202
        accept = sign_message(_payload(example, "referral.accept", "HK", "CN-GD", case, reply_to=submit["id"]), test_key(HK))
        decline = sign_message(_payload(example, "referral.decline", "HK", "CN-GD", case, reply_to=submit["id"]), test_key(HK))
        first, second = _race((gate, hub_a, accept), (hub_b, decline))
    assert gate.overlapped
    assert first.status == 202
    assert_refused(second, "case-state-conflict")


def test_the_same_message_racing_on_two_processes_is_accepted_once_with_one_receipt(database_url, example, test_key):
    gate = OverlapGate(database_url)
    with running_hub(database_url, before_commit=gate) as hub_a, running_hub(database_url) as hub_b:
        compact = sign_message(_payload(example, "referral.submit", "CN-GD", "HK", new_uuid7()), test_key(GD))
        first, second = _race((gate, hub_a, compact), (hub_b, compact))
    assert gate.overlapped
    assert first.status == second.status == 202
    assert first.json()["hub_receipt"] == second.json()["hub_receipt"]
    assert [first.json()["replayed"], second.json()["replayed"]] == [False, True]

    async def count():
        connection = await asyncpg.connect(database_url)
        try:
            return await connection.fetchval("SELECT count(*) FROM messages")
        finally:
            await connection.close()

    assert asyncio.run(count()) == 1


def test_an_accept_and_a_decline_racing_on_two_os_processes_one_wins(tmp_path, database_url, example, test_key):
    """The same race between two `gateway serve` processes; the held one logs when the other waited on it."""
    case = new_uuid7()
    submit = _payload(example, "referral.submit", "CN-GD", "HK", case, reply_to=None)
    accept = sign_message(_payload(example, "referral.accept", "HK", "CN-GD", case, reply_to=submit["id"]), test_key(HK))
    decline = sign_message(_payload(example, "referral.decline", "HK", "CN-GD", case, reply_to=submit["id"]), test_key(HK))
    # Process A's batches: 1 imports the trust list, 2 accepts the submit, 3 is held.
    with serve_process(tmp_path, database_url, {"GATEWAY_HOLD_POINT": "before-commit:3"}, name="a") as (_, hub_a):
        with serve_process(tmp_path, database_url, name="b") as (_, hub_b):
            assert hub_a.post_message(sign_message(submit, test_key(GD))).status == 202
            answers = {}
            thread = threading.Thread(target=lambda: answers.__setitem__("a", hub_a.post_message(accept)))
            thread.start()
            _wait_for_idle_transaction(database_url)
            answers["b"] = hub_b.post_message(decline)
            thread.join(60)
    assert '"hold_released"' in (tmp_path / "a.log").read_text("utf-8"), "process B never waited on A's transaction"
    assert answers["a"].status == 202
    assert_refused(answers["b"], "case-state-conflict")


def _wait_for_idle_transaction(database_url: str) -> None:
    """Until a gateway transaction sits open (process A, held before its commit)."""

    async def poll():
        connection = await asyncpg.connect(database_url)
        try:
            deadline = asyncio.get_running_loop().time() + 30
            while not await connection.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND state = 'idle in transaction' AND application_name LIKE 'gateway:%'"
            ):
                assert asyncio.get_running_loop().time() < deadline, "process A never held its transaction"
                await asyncio.sleep(0.005)  # polling the database for a condition, bounded by the deadline
        finally:
            await connection.close()

    asyncio.run(poll())
