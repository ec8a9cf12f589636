"""Delivery across crashes, outages and several processes (docs/protocol.md §12.4, §12.5, PROTO-9.4-3).

Real sockets and a real PostgreSQL throughout: the hub runs as `gateway serve` OS
processes (killed at deterministic kill points, gateway.hub.faults) or in a thread; Hong
Kong is a simulator in the test's event loop, counting **wire** deliveries (every push
that reached it) and **application** deliveries (what its application took in: exactly
once, whatever the wire did).
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import signal
import time
from pathlib import Path

import asyncpg
import pytest

from gateway.demo.exchange import free_port, key_path
from gateway.hub.delivery import DeliveryPolicy
from gateway.keyfiles import read_private_key
from gateway.protocol.ids import new_uuid7
from gateway.protocol.message import sign_message
from gateway.protocol.timestamps import format_timestamp, utc_now
from gateway.simulator import Simulator
from tests.cli_runner import run_cli
from tests.hub.harness import SERVE_CONFIG, running_hub, serve_process

def push_config(hk_port: int, *, concurrency: int = 8, lease_seconds: int = 1) -> str:
    """The crash tests' hub (tests/hub/harness.py), pushing to Hong Kong at `hk_port`; quick leases and retries."""
    push = f'[jurisdictions.HK]\ndelivery = "push"\nendpoint = "http://127.0.0.1:{hk_port}/v1/deliveries"\n'
    delivery = (
        f"[delivery]\nlease_seconds = {lease_seconds}\nretry_initial_seconds = 0.05\n"
        f"retry_max_seconds = 0.2\nconcurrency = {concurrency}\n"
    )
    assert "[jurisdictions.HK]\n" in SERVE_CONFIG
    return SERVE_CONFIG.replace("[jurisdictions.HK]\n", push).replace("[jurisdictions.CN-GD]\n", delivery + "[jurisdictions.CN-GD]\n")


def hong_kong(hub_url: str, state_dir: Path, port: int) -> Simulator:
    return Simulator(jurisdiction="HK", key=read_private_key(key_path("HK")), hub_url=hub_url, mode="push", state_dir=state_dir, port=port)


def referral(example) -> tuple[str, bytes]:
    payload = dict(example("referral.submit"), id=new_uuid7(), case=new_uuid7(), created=format_timestamp(utc_now()))
    return payload["id"], sign_message(payload, read_private_key(key_path("CN-GD")))


def post(hub_url: str, compact: bytes) -> int:
    host, port = hub_url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request("POST", "/v1/messages", compact, {"Content-Type": "application/jose"})
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


async def until(database_url: str, sql: str, *args, timeout: float = 60.0):
    """The first row of `sql` once there is one: polls the database for a condition, bounded by `timeout`."""
    connection = await asyncpg.connect(database_url)
    try:
        deadline = time.monotonic() + timeout
        while True:
            row = await connection.fetchrow(sql, *args)
            if row is not None:
                return row
            assert time.monotonic() < deadline, f"no row within {timeout} s for: {sql}"
            await asyncio.sleep(0.02)  # a poll for a condition the hub writes, bounded by the deadline
    finally:
        await connection.close()


async def fetch(database_url: str, sql: str, *args) -> list:
    connection = await asyncpg.connect(database_url)
    try:
        return await connection.fetch(sql, *args)
    finally:
        await connection.close()


def receipted(message_id: str) -> tuple[str, str]:
    return "SELECT receiver_receipt FROM messages WHERE id = $1::uuid AND status = 'receipted'", message_id


@contextlib.asynccontextmanager
async def serving(tmp_path: Path, database_url: str, config_text: str, port: int, environment=None, name: str = "serve"):
    """`gateway serve` in a thread-free way: started and stopped off the event loop, so the simulator keeps serving."""
    manager = serve_process(tmp_path, database_url, environment, name=name, config_text=config_text, port=port)
    process, hub = await asyncio.to_thread(manager.__enter__)
    try:
        yield process, hub
    finally:
        await asyncio.to_thread(manager.__exit__, None, None, None)


@pytest.mark.parametrize("kill_point, wire_before_crash", [("after-push-answer", 1), ("during-lease", 0)])
def test_a_hub_killed_mid_delivery_delivers_after_restart_and_the_application_sees_it_once(
    database_url, tmp_path, example, kill_point, wire_before_crash
):
    hub_port, hk_port = free_port(), free_port()
    hub_url = f"http://127.0.0.1:{hub_port}"
    message_id, compact = referral(example)

    async def run():
        hk = hong_kong(hub_url, tmp_path / "hk", hk_port)
        await hk.start()
        try:
            async with serving(tmp_path, database_url, push_config(hk_port), hub_port, {"GATEWAY_KILL_POINT": f"{kill_point}:1"}, "crashing") as (process, _):
                assert await asyncio.to_thread(post, hub_url, compact) == 202
                assert await asyncio.to_thread(process.wait, 60) == -signal.SIGKILL
            assert hk.wire_deliveries(message_id) == wire_before_crash
            assert (await fetch(database_url, "SELECT status FROM messages WHERE id = $1::uuid", message_id))[0]["status"] == "accepted"
            async with serving(tmp_path, database_url, push_config(hk_port), hub_port, name="restarted"):
                row = await until(database_url, *receipted(message_id))
            return hk.wire_deliveries(message_id), hk.application_deliveries(message_id), row["receiver_receipt"]
        finally:
            await hk.stop()

    wire, application, receipt = asyncio.run(run())
    assert wire == wire_before_crash + 1, "a duplicate really crossed the wire" if wire_before_crash else "delivered once after the restart"
    assert application == 1
    entries = [json.loads(row["entry"]) for row in asyncio.run(fetch(database_url, "SELECT entry FROM ledger_entries ORDER BY idx"))]
    received = [e for e in entries if e["kind"] == "receipt-received" and e["message_id"] == message_id]
    assert len(received) == 1 and received[0]["attempts"] == 2
    assert receipt is not None


def test_a_receiver_down_for_a_while_gets_everything_once_it_returns(database_url, tmp_path, example):
    hk_port = free_port()
    endpoint = f"http://127.0.0.1:{hk_port}/v1/deliveries"
    ids, compacts = zip(*(referral(example) for _ in range(3)))
    policy = DeliveryPolicy(lease_seconds=5, retry_initial_seconds=0.05, retry_max_seconds=0.2)
    with running_hub(database_url, push_endpoints={"HK": endpoint}, delivery=policy) as hub:

        async def run():
            for compact in compacts:
                assert await asyncio.to_thread(post, hub.base_url, compact) == 202
            failed = await until(database_url, "SELECT attempts, last_error FROM outbox WHERE attempts >= 3 LIMIT 1")
            assert failed["last_error"] == "unreachable"
            hk = hong_kong(hub.base_url, tmp_path / "hk", hk_port)
            await hk.start()
            try:
                for message_id in ids:
                    await until(database_url, *receipted(message_id))
                return [(hk.wire_deliveries(m), hk.application_deliveries(m)) for m in ids]
            finally:
                await hk.stop()

        assert asyncio.run(run()) == [(1, 1)] * 3


def test_a_receiver_that_never_returns_is_dead_lettered_and_an_operator_retry_delivers_it_once(database_url, tmp_path, example):
    hk_port = free_port()
    endpoint = f"http://127.0.0.1:{hk_port}/v1/deliveries"
    message_id, compact = referral(example)
    # A window of several idle polls (1 s each, gateway/hub/delivery.py): a retry is claimed at the next poll after it
    # is due, and no claim takes a row past its window (PROTO-12.4-4); the sweeper then dead-letters it.
    policy = DeliveryPolicy(lease_seconds=5, retry_initial_seconds=0.05, retry_max_seconds=0.1, retry_window_seconds=3.0,
                            sweep_seconds=0.1)
    with running_hub(database_url, push_endpoints={"HK": endpoint}, delivery=policy) as hub:
        assert post(hub.base_url, compact) == 202
        asyncio.run(until(database_url, "SELECT 1 FROM outbox WHERE state = 'dead'"))
        listed = run_cli("outbox", "list", "--state", "dead", "--database-url", database_url)
        assert listed.status == 0 and message_id in listed.stdout and "unreachable" in listed.stdout
        shown = json.loads(run_cli("outbox", "show", message_id, "--database-url", database_url).stdout)
        assert shown["state"] == "dead" and shown["to"] == "HK" and shown["attempts"] >= 2
        metrics = hub.request("GET", "/metrics").body.decode()
        assert "gateway_dead_letters 1" in metrics

        async def run():
            hk = hong_kong(hub.base_url, tmp_path / "hk", hk_port)
            await hk.start()
            try:
                retried = await asyncio.to_thread(run_cli, "outbox", "retry", message_id, "--database-url", database_url)
                assert retried.status == 0, retried.stderr
                await until(database_url, *receipted(message_id))
                return hk.wire_deliveries(message_id), hk.application_deliveries(message_id)
            finally:
                await hk.stop()

        assert asyncio.run(run()) == (1, 1)
        assert "gateway_dead_letters 0" in hub.request("GET", "/metrics").body.decode()
    kinds = [json.loads(row["entry"])["kind"] for row in asyncio.run(fetch(database_url, "SELECT entry FROM ledger_entries ORDER BY idx"))]
    assert kinds.count("dead-lettered") == 1 and kinds.count("retried") == 1 and kinds.count("receipt-received") == 1


def test_two_gateway_processes_share_the_deliveries_and_each_reaches_the_application_once(database_url, tmp_path, example):
    """Each process pushes one delivery at a time; Hong Kong holds the first delivery it gets until another
    message has reached its application. That can only happen if the *other* process delivered it meanwhile:
    overlapping work, proven rather than hoped for."""
    ports, hk_port = (free_port(), free_port()), free_port()
    messages = [referral(example) for _ in range(6)]
    config = push_config(hk_port, concurrency=1, lease_seconds=60)

    async def run():
        hk = hong_kong(f"http://127.0.0.1:{ports[0]}", tmp_path / "hk", hk_port)
        held: list[str] = []
        overlapped: list[str] = []

        async def hold_the_first(message_id: str) -> None:
            if held:
                return
            held.append(message_id)
            others = [m for m, _ in messages if m != message_id]
            await hk.wait_for(lambda: any(hk.application_deliveries(m) for m in others), 60)
            overlapped.extend(m for m in others if hk.application_deliveries(m))

        hk.on_delivery = hold_the_first
        await hk.start()
        try:
            async with serving(tmp_path, database_url, config, ports[0], name="first"), serving(tmp_path, database_url, config, ports[1], name="second"):
                for index, (_, compact) in enumerate(messages):
                    assert await asyncio.to_thread(post, f"http://127.0.0.1:{ports[index % 2]}", compact) == 202
                for message_id, _ in messages:
                    await until(database_url, *receipted(message_id))
            counts = [(hk.wire_deliveries(m), hk.application_deliveries(m)) for m, _ in messages]
            return held, overlapped, counts
        finally:
            await hk.stop()

    held, overlapped, counts = asyncio.run(run())
    assert held and overlapped, "another delivery completed while the first was held"
    assert [application for _, application in counts] == [1] * 6
    by = asyncio.run(fetch(database_url, "SELECT DISTINCT delivered_by FROM messages WHERE type = 'referral.submit'"))
    assert len({row["delivered_by"] for row in by}) == 2, "both processes delivered"


def test_a_process_without_a_payload_key_leaves_those_pushes_to_one_that_has_it_and_goes_on_pushing(database_url, tmp_path, example):
    """A payload key rotated on one host and not yet copied to another (docs/operations.md): the process that lacks it
    never claims a push sealed under it, says so in its log, and goes on pushing what it can open; a process with the
    key delivers the rest."""
    import secrets

    from tests.hub.harness import payload_keys_variable

    def ring(**keys: bytes) -> dict[str, str]:
        return payload_keys_variable(keys)

    k1 = secrets.token_bytes(32)
    rotated, behind = ring(k1=k1, k2=secrets.token_bytes(32)), ring(k1=k1)
    ports, hk_port = (free_port(), free_port()), free_port()
    config = push_config(hk_port)
    under_k2, under_k1 = referral(example), referral(example)

    async def run() -> int:
        # Hong Kong is not up yet: the rotated process accepts a message, sealed under k2, and stops before it can push.
        async with serving(tmp_path, database_url, config, ports[0], rotated, name="rotated"):
            assert await asyncio.to_thread(post, f"http://127.0.0.1:{ports[0]}", under_k2[1]) == 202
        await until(database_url, "SELECT 1 FROM outbox WHERE message_id = $1::uuid AND state = 'queued'"
                                  " AND due_at <= now() AND (lease_until IS NULL OR lease_until <= now())", under_k2[0])  # due
        hk = hong_kong(f"http://127.0.0.1:{ports[1]}", tmp_path / "hk", hk_port)
        await hk.start()
        try:
            async with serving(tmp_path, database_url, config, ports[1], behind, name="behind"):
                assert await asyncio.to_thread(post, f"http://127.0.0.1:{ports[1]}", under_k1[1]) == 202
                await until(database_url, *receipted(under_k1[0]))  # pushed after the k2 message came due
                left = hk.wire_deliveries(under_k2[0])
            async with serving(tmp_path, database_url, config, ports[0], rotated, name="rotated-again"):
                await until(database_url, *receipted(under_k2[0]))
            return left
        finally:
            await hk.stop()

    assert asyncio.run(run()) == 0, "the process without k2 left its message alone"
    log = (tmp_path / "behind.log").read_text("utf-8")
    assert '"payload_keys_missing"' in log and '"k2"' in log, "and said which key it lacks"
