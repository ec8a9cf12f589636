"""When the database fails, the hub answers with a problem and leaves nothing half-written."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import asyncpg

from gateway.protocol.ids import new_uuid7
from gateway.protocol.message import sign_message
from gateway.protocol.timestamps import format_timestamp, utc_now
from tests.cli_runner import assert_refused
from tests.hub.harness import running_hub


def _referral(example, test_key) -> bytes:
    payload = dict(example("referral.submit"), id=new_uuid7(), case=new_uuid7(), created=format_timestamp(utc_now().replace(microsecond=0)))
    return sign_message(payload, test_key("test-cn-gd-message-1"))


def _execute(url: str, *statements: str) -> list:
    async def run():
        connection = await asyncpg.connect(url)
        try:
            return [await connection.fetch(statement) for statement in statements]
        finally:
            await connection.close()

    return asyncio.run(run())


def test_a_failure_inside_the_transaction_is_an_internal_error_and_records_nothing(database_url, example, test_key):
    with running_hub(database_url) as hub:
        size_before = _execute(database_url, "SELECT size FROM ledger_size")[0][0]["size"]
        _execute(database_url, "DROP TABLE outbox")  # the insert after the message row now fails
        answer = hub.post_message(_referral(example, test_key))
    assert_refused(answer, "internal-error")
    messages, size = _execute(database_url, "SELECT count(*) FROM messages", "SELECT size FROM ledger_size")
    assert messages[0]["count"] == 0
    assert size[0]["size"] == size_before


def test_a_database_that_refuses_connections_makes_the_hub_unavailable(database_url, example, test_key):
    name = urlsplit(database_url).path.lstrip("/")
    admin = database_url.replace(f"/{name}", "/postgres", 1)
    with running_hub(database_url) as hub:
        _execute(
            admin,
            f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false',
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()",
        )
        try:
            answer = hub.post_message(_referral(example, test_key))
            ready = hub.request("GET", "/readyz")
        finally:
            _execute(admin, f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    assert_refused(answer, "unavailable")
    assert_refused(ready, "unavailable")


def test_a_batch_that_fails_unexpectedly_answers_its_waiters_and_the_next_batch_commits(database_url, example, test_key):
    failures = {"left": 0}  # armed once the hub has started (its first batch imports the trust list)

    async def fail_once(batch_size: int) -> None:
        if failures["left"]:
            failures["left"] -= 1
            raise ValueError("an unexpected fault inside the batch")

    with running_hub(database_url, before_commit=fail_once) as hub:
        failures["left"] = 1
        assert_refused(hub.post_message(_referral(example, test_key)), "internal-error")
        assert hub.post_message(_referral(example, test_key)).status == 202
    (messages,) = _execute(database_url, "SELECT count(*) FROM messages")
    assert messages[0]["count"] == 1


def test_errors_of_a_connection_cut_mid_operation_mean_unavailable_not_internal_error():
    import asyncpg

    from gateway.hub.http import database_unavailable

    assert database_unavailable(asyncpg.InternalClientError("cannot switch to state 15; another operation is in progress"))
    assert database_unavailable(ConnectionResetError())
    assert not database_unavailable(ValueError("a bug in the hub"))


def test_a_write_refused_by_a_read_only_standby_means_unavailable(database_url):
    """During a failover the hub may reach a standby: a write refused there (25006) is 503, not 500 (docs/operations.md)."""
    import asyncio

    import asyncpg

    from gateway.hub.http import database_unavailable

    async def write_in_a_read_only_transaction() -> BaseException:
        connection = await asyncpg.connect(database_url)
        try:
            async with connection.transaction(readonly=True):
                await connection.execute("CREATE TEMPORARY TABLE t (x int)")
        except asyncpg.PostgresError as error:
            return error
        finally:
            await connection.close()
        raise AssertionError("a write in a read-only transaction was not refused")

    error = asyncio.run(write_in_a_read_only_transaction())
    assert error.sqlstate == "25006"
    assert database_unavailable(error)
