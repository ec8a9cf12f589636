"""A gateway SIGKILLed under load (issue 11): nothing accepted is lost, nothing reaches the application twice.

Guangdong's senders post referrals without pause to a `gateway serve` process that pushes
them to Hong Kong's simulator; midway the process is killed with SIGKILL (no drain, no
cleanup) and a new one is started on the same port. A sender whose request got no answer
resends the identical bytes until it gets 202 (§8.1). Afterwards every accepted message is
stored once, reached Hong Kong's application exactly once (the wire may have carried a
duplicate: counted), and the ledger verifies.
"""

from __future__ import annotations

import asyncio
import signal
import time

from gateway.demo.exchange import free_port
from tests.cli_runner import run_cli
from tests.delivery.test_faults import fetch, hong_kong, post, push_config, referral, serving
from tests.faults.report import record

SENDERS = 4
RESEND_DEADLINE_SECONDS = 90.0
DELIVERY_DEADLINE_SECONDS = 120.0


async def _send_until_accepted(hub_url: str, compact: bytes) -> None:
    deadline = time.monotonic() + RESEND_DEADLINE_SECONDS
    while True:
        try:
            status = await asyncio.to_thread(post, hub_url, compact)
        except OSError:  # no answer (the process died, or is not up yet): resend the identical bytes
            status = None
        if status == 202:
            return
        assert status in (None, 503), f"answered {status}"
        assert time.monotonic() < deadline, "a message was not accepted within the resend deadline"
        await asyncio.sleep(0.05)  # the client's back-off between resends (not synchronisation)


def test_a_gateway_killed_under_load_loses_nothing_and_the_application_sees_each_message_once(database_url, tmp_path, example):
    hub_port, hk_port = free_port(), free_port()
    hub_url = f"http://127.0.0.1:{hub_port}"
    accepted: dict[str, bytes] = {}

    async def sender(stop: asyncio.Event) -> None:
        while not stop.is_set():
            message_id, compact = referral(example)
            await _send_until_accepted(hub_url, compact)
            accepted[message_id] = compact

    async def run() -> tuple[dict[str, int], dict[str, int], int]:
        hk = hong_kong(hub_url, tmp_path / "hk", hk_port)
        await hk.start()
        stop = asyncio.Event()
        try:
            async with serving(tmp_path, database_url, push_config(hk_port), hub_port, name="killed") as (process, _):
                senders = [asyncio.create_task(sender(stop)) for _ in range(SENDERS)]
                while len(accepted) < 40:  # load is flowing and deliveries are under way
                    await asyncio.sleep(0.05)  # a bounded wait for the load (the senders' own deadline bounds it)
                process.send_signal(signal.SIGKILL)
                assert await asyncio.to_thread(process.wait, 30) == -signal.SIGKILL
            killed_at = len(accepted)
            async with serving(tmp_path, database_url, push_config(hk_port), hub_port, name="restarted"):
                while len(accepted) < killed_at + 40:  # the new process takes the load
                    await asyncio.sleep(0.05)  # bounded by the senders' resend deadline
                stop.set()
                await asyncio.gather(*senders)
                deadline = time.monotonic() + DELIVERY_DEADLINE_SECONDS
                while True:
                    waiting = await fetch(database_url, "SELECT count(*) AS n FROM messages WHERE type = 'referral.submit'"
                                          " AND receiver_receipt IS NULL")
                    if waiting[0]["n"] == 0:
                        break
                    assert time.monotonic() < deadline, f"{waiting[0]['n']} messages never receipted"
                    await asyncio.sleep(0.1)  # a bounded poll of the database (another process delivers)
            wire = {message_id: hk.wire_deliveries(message_id) for message_id in accepted}
            application = {message_id: hk.application_deliveries(message_id) for message_id in accepted}
            stored = (await fetch(database_url, "SELECT count(*) AS n FROM messages WHERE type = 'referral.submit'"))[0]["n"]
            return wire, application, stored
        finally:
            stop.set()
            await hk.stop()

    wire, application, stored = asyncio.run(run())
    assert stored == len(accepted), f"{stored} stored, {len(accepted)} accepted"
    assert set(application.values()) == {1}, "every accepted message reached the application exactly once"
    assert all(count >= 1 for count in wire.values())
    record("kill-under-load", "a gateway SIGKILLed under load, then restarted", accepted=len(accepted), lost=0,
           wire_duplicates=sum(count - 1 for count in wire.values()), application_duplicates=0)
    verified = run_cli("ledger", "verify", "--database-url", database_url)
    assert verified.status == 0, verified.stdout + verified.stderr
