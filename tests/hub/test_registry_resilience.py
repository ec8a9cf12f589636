"""Key changes reach every acceptance, and nothing waits for ever (review findings, issue 3)."""

from __future__ import annotations

import asyncio

import asyncpg

from gateway.protocol.ids import new_uuid7
from gateway.protocol.message import sign_message
from gateway.protocol.timestamps import format_timestamp, utc_now
from tests.cli_runner import assert_refused, run_cli
from tests.hub.harness import running_hub

GD = "test-cn-gd-message-1"


def _referral(example, test_key, **changes) -> tuple[dict, bytes]:
    payload = dict(example("referral.submit"), id=new_uuid7(), case=new_uuid7(), created=format_timestamp(utc_now().replace(microsecond=0)))
    payload.update(changes)
    return payload, sign_message(payload, test_key(GD))


def _sql(database_url: str, *statements: str) -> None:
    async def run():
        connection = await asyncpg.connect(database_url)
        try:
            for statement in statements:
                await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(run())


def test_a_key_revoked_after_a_requests_signature_check_is_refused_in_the_batch(database_url, example, test_key):
    with running_hub(database_url) as hub:
        # Revoked in the database without telling the hub: its in-memory list still says active,
        # as it would for a request whose signature was checked just before a revocation.
        _sql(database_url, f"UPDATE keys SET revoked_at = now() - interval '1 second' WHERE kid = '{GD}'")
        assert_refused(hub.post_message(_referral(example, test_key)[1]), "key-revoked")


def test_a_stalled_transaction_holding_the_ledger_gives_503_not_a_hang(database_url, example, test_key):
    async def scenario(hub):
        holder = await asyncpg.connect(database_url)
        try:
            async with holder.transaction():
                await holder.execute("SELECT size FROM ledger_size FOR UPDATE")
                blocked = await asyncio.to_thread(hub.post_message, _referral(example, test_key)[1])
        finally:
            await holder.close()
        return blocked

    with running_hub(database_url, lock_timeout_ms=300) as hub:
        blocked = asyncio.run(scenario(hub))
        after = hub.post_message(_referral(example, test_key)[1])
    assert_refused(blocked, "unavailable")
    assert after.status == 202


def test_a_hub_that_lost_its_listen_connection_listens_again_and_takes_the_next_revocation(database_url, example, test_key):
    with running_hub(database_url) as hub:
        _sql(database_url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = 'LISTEN \"gba_registry\"'")
        revoked = run_cli("keys", "revoke", GD, "--database-url", database_url, "--wait", "30")
        assert revoked.status == 0, revoked.stderr
        assert_refused(hub.post_message(_referral(example, test_key)[1]), "key-revoked")
        assert hub.request("GET", "/readyz").status == 200


def test_an_id_in_another_spelling_of_an_accepted_uuid_is_a_schema_fault_not_a_conflict(database_url, example, test_key):
    payload, compact = _referral(example, test_key)
    with running_hub(database_url) as hub:
        assert hub.post_message(compact).status == 202
        answer = hub.post_message(_referral(example, test_key, id=payload["id"].upper())[1])
    assert_refused(answer, "schema-violation")
    assert answer.json()["where"] == "/id"


def test_two_losses_reported_at_once_take_one_listen_connection_and_the_pool_still_closes(database_url):
    """A connection that dies while the registry opens its new LISTEN connection reports its loss too. Two rounds of
    listening again at once each took a connection from the pool and one was never given back, so `pool.close()`
    (and SIGTERM) waited for ever (seen once in a dozen runs of tests/faults/test_failover.py). Now one round runs;
    the other finds the listener up and ends."""
    from gateway.hub.registry import Registry

    with running_hub(database_url):  # migrations and the trust list
        pass

    async def scenario() -> tuple[int, int]:
        pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
        registry = Registry(pool, "test", "test-registry-losses")
        await registry.start()
        lost = registry._listener
        lost.terminate()  # the termination listener starts a round of listening again...
        registry._on_lost(lost)  # ...and a second report of a loss arrives meanwhile
        while registry._reloads:
            await asyncio.gather(*list(registry._reloads))
        held = pool.get_size() - pool.get_idle_size()
        replaced = 1 if registry._listener is not lost and registry.listening else 0
        await registry.close()
        await asyncio.wait_for(pool.close(), 20)  # before the fix: a connection never released, and this waits
        return held, replaced

    held, replaced = asyncio.run(scenario())
    assert (held, replaced) == (1, 1), "one LISTEN connection, a new one, is all the registry holds"
