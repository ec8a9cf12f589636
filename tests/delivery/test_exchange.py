"""The demo's flows end to end, over real sockets and a real PostgreSQL, in push, pull and mixed delivery.

A hub and three simulators (gateway.demo.exchange) run in the test's event loop; the
story (gateway.demo.story) is the one `gateway demo` prints. Beyond the story's own
checks, these tests look at both ends: the ledger, the hub's rows, and each simulator's
counts of wire and application deliveries.
"""

from __future__ import annotations

import asyncio
import json

import asyncpg
import pytest

from gateway.demo.exchange import running_exchange
from gateway.demo.story import tell
from tests.hub.harness import query

MODES = {
    "push": {"CN-GD": "push", "HK": "push", "MO": "push"},
    "pull": {"CN-GD": "pull", "HK": "pull", "MO": "pull"},
    "mixed": {"CN-GD": "pull", "HK": "push", "MO": "pull"},
}


@pytest.mark.parametrize("mode", sorted(MODES))
def test_every_demo_flow_ends_as_the_protocol_requires(database_url, tmp_path, mode):
    async def run():
        async with running_exchange(database_url, tmp_path, MODES[mode], poll_wait_seconds=2) as exchange:
            story = await tell(exchange)
            # Every message that reached a simulator reached its application exactly once.
            connection = await asyncpg.connect(database_url)
            try:
                messages = await connection.fetch("SELECT id, receiver, type, status FROM messages ORDER BY ledger_index")
            finally:
                await connection.close()
            counts = {
                str(row["id"]): (exchange[row["receiver"]].wire_deliveries(str(row["id"])), exchange[row["receiver"]].application_deliveries(str(row["id"])))
                for row in messages
            }
            return story, messages, counts

    story, messages, counts = asyncio.run(run())
    assert story.ok, [(step.label, step.happened) for step in story.steps if not step.ok]
    assert [step.label for step in story.steps][:5] == [
        "Referral CN-GD -> HK", "Hong Kong's local view of the referral", "Guangdong's local view of the closure",
        "Verification CN-GD -> HK", "Verification CN-GD -> MO",
    ]
    statuses = {(row["type"], row["status"]) for row in messages}
    assert statuses <= {(t, "receipted") for t in ("referral.submit", "referral.accept", "referral.close", "verification.request", "verification.response")} | {("receipt", "delivered")}, statuses
    assert all(application == 1 for _, application in counts.values()), counts
    assert query(database_url, "SELECT count(*) AS n FROM outbox")[0]["n"] == 0, "everything acknowledged"
    kinds = [json.loads(row["entry"])["kind"] for row in query(database_url, "SELECT entry FROM ledger_entries ORDER BY idx")]
    receipts = sum(1 for row in messages if row["type"] == "receipt")
    assert kinds.count("receipt-received") == receipts, "one receipt-received entry per receipt"
    assert kinds.count("delivered") == receipts, "every receipt acknowledged by its receiver"
    assert kinds.count("refused") == 3, "route-refused, message-stale and id-conflict are ledgered; the forgery is not"
