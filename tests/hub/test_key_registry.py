"""The key registry (DESIGN.md, "Keys and trust"): `gateway keys add|import|rotate|revoke|list`
on a real database, seen by hubs running on real sockets.

Two hubs on one database stand for two gateway processes. The tests check order, not
time: a change's command returns only after every live process acknowledged it, so the
next request to either hub already sees the change.
"""

from __future__ import annotations

import hashlib

import asyncio
import contextlib
import json
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from structlog.testing import capture_logs

from gateway.hub.registry import ModeConflict, Registry, read_trust_list, settle_mode
from gateway.keyfiles import read_private_key
from gateway.protocol.ids import new_uuid7
from gateway.protocol.keys import PrivateKey
from gateway.protocol.message import sign_message
from gateway.protocol.timestamps import format_timestamp, parse_timestamp, utc_now
from tests.cli_runner import CliResult, assert_refused, run_cli
from tests.conftest import TRUST_LIST
from tests.hub.harness import query, running_hub

GD = "test-cn-gd-message-1"


def keys(database_url: str, *arguments: str) -> CliResult:
    """`gateway keys ARGUMENTS... --database-url URL`."""
    return run_cli("keys", *arguments, "--database-url", database_url)


def ledger(database_url: str) -> list[dict]:
    return [json.loads(row["entry"]) for row in query(database_url, "SELECT entry FROM ledger_entries ORDER BY idx")]


def registry_document(database_url: str) -> dict:
    """The registry as a trust-list document, as every process reads it."""
    async def read():
        connection = await asyncpg.connect(database_url)
        try:
            return await read_trust_list(connection, "test")
        finally:
            await connection.close()

    return asyncio.run(read())[1].to_document()


def verify_with_registry(database_url: str, tmp_path: Path, compact: bytes, at: datetime) -> CliResult:
    """`gateway message verify --at AT` of `compact` against the trust list the registry holds now (an audit)."""
    message_file, trust_file = tmp_path / "audited.jws", tmp_path / "registry.json"
    message_file.write_bytes(compact)
    trust_file.write_text(json.dumps(registry_document(database_url)))
    return run_cli("message", "verify", "--trust", str(trust_file), "--at", format_timestamp(at), str(message_file))


def import_test_trust_list(database_url: str) -> None:
    result = keys(database_url, "import", "--trust-list", str(TRUST_LIST))
    assert result.status == 0, result.stderr


def new_key(tmp_path: Path, *options: str) -> tuple[Path, dict, PrivateKey]:
    """A key made by `gateway keys generate`: its entry file, the entry, the private key."""
    folder = tmp_path / "keys"
    result = run_cli("keys", "generate", "--out", str(folder), *options)
    assert result.status == 0, result.stderr
    entry = json.loads(result.stdout)
    entry_file = tmp_path / f"{entry['kid']}.entry.json"
    entry_file.write_text(result.stdout)
    return entry_file, entry, read_private_key(folder / f"{entry['kid']}.key.jwk")


@pytest.fixture
def referral(example):
    """A new referral from CN-GD to HK, created now, to be signed by a CN-GD message key."""

    def make() -> dict:
        created = format_timestamp(utc_now().replace(microsecond=0))
        return dict(example("referral.submit"), id=new_uuid7(), case=new_uuid7(), created=created)

    return make


@contextlib.contextmanager
def idle_gateway_process(database_url: str, process_id: str) -> Iterator[None]:
    """A live gateway process that never acknowledges: a connection named `process_id` and its row."""
    loop = asyncio.new_event_loop()
    connection = loop.run_until_complete(asyncpg.connect(database_url, server_settings={"application_name": process_id}))
    try:
        loop.run_until_complete(connection.execute("INSERT INTO gateway_processes (process_id) VALUES ($1)", process_id))
        yield
    finally:
        loop.run_until_complete(connection.close())
        loop.close()


def test_after_keys_revoke_returns_both_running_hubs_refuse_the_revoked_key(database_url, referral, test_key):
    with running_hub(database_url) as first, running_hub(database_url) as second:
        for hub in (first, second):
            assert hub.post_message(sign_message(referral(), test_key(GD))).status == 202
        result = keys(database_url, "revoke", GD)
        assert result.status == 0, result.stderr
        for hub in (first, second):
            assert_refused(hub.post_message(sign_message(referral(), test_key(GD))), "key-revoked")
        processes = query(database_url, "SELECT registry_version FROM gateway_processes")
    (version,) = query(database_url, "SELECT version FROM registry_version")
    assert len(processes) == 2 and all(row["registry_version"] == version["version"] for row in processes)
    assert "acknowledged by every live gateway process (2)" in result.stderr


def test_a_key_added_with_keys_add_is_accepted_by_both_hubs(database_url, referral, tmp_path):
    entry_file, entry, key = new_key(tmp_path, "--jurisdiction", "CN-GD", "--use", "message", "--test-key")
    with running_hub(database_url) as first, running_hub(database_url) as second:
        assert_refused(first.post_message(sign_message(referral(), key)), "key-unknown")
        result = keys(database_url, "add", "--entry", str(entry_file))
        assert result.status == 0, result.stderr
        for hub in (first, second):
            answer = hub.post_message(sign_message(referral(), key))
            assert answer.status == 202, answer.body
    assert f"added key {entry['kid']}" in result.stderr


def test_keys_add_refuses_an_entry_that_breaks_the_trust_list_rules(database_url, tmp_path):
    import_test_trust_list(database_url)
    entry_file, entry, _ = new_key(tmp_path, "--jurisdiction", "CN-GD", "--use", "message")
    twin = tmp_path / "twin.json"
    twin.write_text(json.dumps(dict(entry, kid=GD, jwk=dict(entry["jwk"], kid=GD))))
    assert_refused(keys(database_url, "add", "--entry", str(twin)), "kid-duplicate")
    foreign = tmp_path / "foreign.json"
    foreign.write_text(json.dumps(dict(entry, owner="TW")))
    refused = keys(database_url, "add", "--entry", str(foreign))
    assert_refused(refused, "trust-list-invalid")
    assert f"is the entry of kid {entry['kid']!r}" in refused.stderr
    assert not query(database_url, "SELECT 1 FROM keys WHERE kid = $1", entry["kid"])


def test_production_mode_refuses_a_test_key(database_url, tmp_path):
    owners_and_uses = (("CN-GD", "message"), ("hub", "receipt"))
    registered = [new_key(tmp_path, "--jurisdiction", owner, "--use", use)[1] for owner, use in owners_and_uses]
    production_list = tmp_path / "production-trust-list.json"
    document = json.loads(TRUST_LIST.read_text())
    production_list.write_text(json.dumps(dict(document, mode="production", keys=registered)))
    assert keys(database_url, "import", "--mode", "production", "--trust-list", str(production_list)).status == 0
    test_entry_file, test_entry, _ = new_key(tmp_path, "--jurisdiction", "HK", "--use", "message", "--test-key")

    refused = keys(database_url, "add", "--mode", "production", "--entry", str(test_entry_file))

    assert_refused(refused, "trust-list-invalid")
    assert "/keys/2/test_key" in refused.stderr and test_entry["kid"] in refused.stderr
    assert_refused(keys(database_url, "import", "--mode", "production", "--trust-list", str(TRUST_LIST)), "trust-list-invalid")
    assert {row["kid"] for row in query(database_url, "SELECT kid FROM keys")} == {entry["kid"] for entry in registered}


def test_a_registry_keeps_the_mode_it_was_recorded_in(database_url, tmp_path):
    # Without --mode or --config the CLI used to take any registry for a test one: a test key could be added
    # to a production registry, whose hub then could not load it.
    registered = [new_key(tmp_path, "--jurisdiction", owner, "--use", use)[1]
                  for owner, use in (("CN-GD", "message"), ("hub", "receipt"))]
    production_list = tmp_path / "production-trust-list.json"
    production_list.write_text(json.dumps(dict(json.loads(TRUST_LIST.read_text()), mode="production", keys=registered)))
    assert keys(database_url, "import", "--mode", "production", "--trust-list", str(production_list)).status == 0
    assert query(database_url, "SELECT mode FROM registry_version")[0]["mode"] == "production"
    test_entry_file, _, _ = new_key(tmp_path, "--jurisdiction", "HK", "--use", "message", "--test-key")

    assert_refused(keys(database_url, "add", "--entry", str(test_entry_file)), "trust-list-invalid")
    stated_test = keys(database_url, "add", "--mode", "test", "--entry", str(test_entry_file))
    assert stated_test.status == 1 and "a production registry, and this is a test gateway" in stated_test.stderr
    assert {row["kid"] for row in query(database_url, "SELECT kid FROM keys")} == {entry["kid"] for entry in registered}
    production_key_file, production_entry, _ = new_key(tmp_path, "--jurisdiction", "HK", "--use", "message")
    assert keys(database_url, "add", "--entry", str(production_key_file)).status == 0, "the recorded mode serves"
    assert production_entry["kid"] in {row["kid"] for row in query(database_url, "SELECT kid FROM keys")}

    # A database from before migration 0012 records no mode: with no test key in it, it may be a production one.
    query(database_url, "UPDATE registry_version SET mode = NULL")
    unstated = keys(database_url, "add", "--entry", str(test_entry_file))
    assert unstated.status == 1 and "records no mode yet" in unstated.stderr and "--config" in unstated.stderr
    assert query(database_url, "SELECT mode FROM registry_version")[0]["mode"] is None
    revoked = keys(database_url, "revoke", production_entry["kid"])  # urgent, and the same in both modes
    assert revoked.status == 0, revoked.stderr


def test_a_registry_holding_test_keys_is_never_taken_for_a_production_one(database_url, tmp_path):
    import_test_trust_list(database_url)  # no mode stated: test, not recorded
    entry_file, _, _ = new_key(tmp_path, "--jurisdiction", "HK", "--use", "message")
    refused = keys(database_url, "add", "--mode", "production", "--entry", str(entry_file))
    assert refused.status == 1 and "holds test keys, so it is a test registry" in refused.stderr
    assert keys(database_url, "add", "--entry", str(entry_file)).status == 0, "taken as the test registry it is"


def test_a_refused_change_records_no_mode(database_url, tmp_path):
    entry_file, _, _ = new_key(tmp_path, "--jurisdiction", "HK", "--use", "message")
    refused = keys(database_url, "add", "--mode", "production", "--entry", str(entry_file))
    assert refused.status == 1 and "the key registry is empty" in refused.stderr, refused.stderr
    assert query(database_url, "SELECT mode FROM registry_version")[0]["mode"] is None
    import_test_trust_list(database_url)  # no mode stated: test, and not recorded (the hub's start records it)
    assert query(database_url, "SELECT mode FROM registry_version")[0]["mode"] is None


def test_keys_list_prints_the_registry_and_marks_keys_expiring_within_30_days(database_url, tmp_path):
    import_test_trust_list(database_url)
    entry_file, entry, _ = new_key(tmp_path, "--jurisdiction", "MO", "--use", "message", "--valid-days", "10")
    assert keys(database_url, "add", "--entry", str(entry_file)).status == 0

    table = keys(database_url, "list")
    listed = keys(database_url, "list", "--json")

    assert table.status == listed.status == 0
    header, *rows = table.stdout.splitlines()
    assert header.split()[:4] == ["KID", "OWNER", "USE", "ALG"]
    by_kid = {row.split()[0]: row for row in rows}
    assert set(by_kid) == {key["kid"] for key in json.loads(TRUST_LIST.read_text())["keys"]} | {entry["kid"]}
    assert by_kid[entry["kid"]].endswith("active EXPIRES SOON")
    assert [kid for kid, row in by_kid.items() if "EXPIRES SOON" in row] == [entry["kid"]]
    assert f"warning: key {entry['kid']} (MO, message) expires at {entry['not_after']}, in 9 day(s)" in table.stderr
    status = {key["kid"]: (key["status"], key["expires_soon"]) for key in json.loads(listed.stdout)["keys"]}
    assert status[entry["kid"]] == ("active", True)
    assert status["test-hk-message-revoked"] == ("revoked", False)
    assert status["test-mo-message-expired"] == ("expired", False)
    assert status["test-cn-gd-message-future"] == ("not yet valid", False)
    assert status[GD] == ("active", False)


def test_every_change_is_ledgered_with_metadata_only(database_url, tmp_path):
    import_test_trust_list(database_url)
    added_file, added, _ = new_key(tmp_path, "--jurisdiction", "HK", "--use", "message")
    successor_file, successor, _ = new_key(tmp_path, "--jurisdiction", "CN-GD", "--use", "message")
    before = len(ledger(database_url))
    assert keys(database_url, "add", "--entry", str(added_file)).status == 0
    assert keys(database_url, "rotate", GD, "--entry", str(successor_file)).status == 0
    assert keys(database_url, "revoke", added["kid"]).status == 0

    imported, (add, rotate, revoke) = ledger(database_url)[:before], ledger(database_url)[before:]

    assert [entry["kind"] for entry in imported] == ["key-added"] * 11 + ["trust-list-imported"]
    assert imported[-1]["keys_added"] == 11 and imported[-1]["jurisdictions_added"] == 3
    assert add["kind"] == "key-added" and add["kid"] == added["kid"] and add["owner"] == "HK" and add["alg"] == "Ed25519"
    assert (add["not_before"], add["not_after"]) == (added["not_before"], added["not_after"])
    assert rotate["kind"] == "key-rotated" and rotate["kid"] == successor["kid"] and rotate["replaces"] == GD
    assert revoke["kind"] == "key-revoked" and revoke["kid"] == added["kid"] and revoke["revoked_at"]
    for entry in ledger(database_url):
        assert not {"jwk", "x", "y", "d"} & set(entry), entry


def test_a_rotation_keeps_the_old_key_so_messages_accepted_before_still_verify(database_url, referral, test_key, tmp_path):
    successor_file, successor, successor_key = new_key(tmp_path, "--jurisdiction", "CN-GD", "--use", "message")
    with running_hub(database_url) as first, running_hub(database_url) as second:
        before = sign_message(referral(), test_key(GD))
        assert first.post_message(before).status == 202
        result = keys(database_url, "rotate", GD, "--entry", str(successor_file))
        assert result.status == 0, result.stderr
        for hub, key in ((first, successor_key), (second, test_key(GD))):  # the overlap: both keys sign
            assert hub.post_message(sign_message(referral(), key)).status == 202

    (old,) = query(database_url, "SELECT not_after FROM keys WHERE kid = $1", GD)
    assert old["not_after"] == parse_timestamp(successor["not_before"]) + timedelta(days=7)
    (accepted,) = query(database_url, "SELECT accepted_at FROM messages WHERE digest = $1", hashlib.sha256(before).digest())
    at_acceptance = verify_with_registry(database_url, tmp_path, before, accepted["accepted_at"])
    assert at_acceptance.status == 0, at_acceptance.stderr
    after_retirement = verify_with_registry(database_url, tmp_path, before, old["not_after"] + timedelta(seconds=1))
    assert_refused(after_retirement, "key-expired")
    listed = keys(database_url, "list")
    assert f"warning: key {GD} (CN-GD, message) expires at {format_timestamp(old['not_after'])}" in listed.stderr
    assert "successor: " in listed.stderr  # a rotated-out key: the warning says a successor exists


def test_revoking_from_an_earlier_time_disowns_what_the_key_signed_since(database_url, referral, test_key, tmp_path):
    with running_hub(database_url) as hub:
        compact = sign_message(referral(), test_key(GD))
        assert hub.post_message(compact).status == 202
    (accepted,) = query(database_url, "SELECT accepted_at FROM messages")
    compromised_from = format_timestamp(accepted["accepted_at"] - timedelta(seconds=1))
    future = format_timestamp(utc_now() + timedelta(hours=1))

    assert "in the future" in keys(database_url, "revoke", GD, "--at", future).stderr
    assert keys(database_url, "revoke", GD).status == 0
    assert keys(database_url, "revoke", GD, "--at", compromised_from).status == 0  # moved earlier: allowed
    assert "already revoked" in keys(database_url, "revoke", GD).stderr  # later: refused

    assert_refused(verify_with_registry(database_url, tmp_path, compact, accepted["accepted_at"]), "key-revoked")


def test_rotation_refuses_an_unknown_key_and_a_successor_of_another_owner(database_url, tmp_path):
    import_test_trust_list(database_url)
    entry_file, _, _ = new_key(tmp_path, "--jurisdiction", "HK", "--use", "message")
    unknown = keys(database_url, "rotate", "test-nobody-1", "--entry", str(entry_file))
    other_owner = keys(database_url, "rotate", GD, "--entry", str(entry_file))
    assert unknown.status == other_owner.status == 1
    assert "no key 'test-nobody-1' is registered" in unknown.stderr
    assert "a successor serves its predecessor's owner and use (CN-GD, message)" in other_owner.stderr


def test_importing_a_list_again_adds_nothing_and_a_changed_key_is_a_kid_duplicate(database_url, tmp_path):
    import_test_trust_list(database_url)
    again = keys(database_url, "import", "--trust-list", str(TRUST_LIST))
    assert again.status == 0 and "new keys: none" in again.stderr
    _, entry, _ = new_key(tmp_path, "--jurisdiction", "CN-GD", "--use", "message")
    document = json.loads(TRUST_LIST.read_text())
    document["keys"][0] = dict(entry, kid=GD, jwk=dict(entry["jwk"], kid=GD))
    changed = tmp_path / "changed.json"
    changed.write_text(json.dumps(document))
    assert_refused(keys(database_url, "import", "--trust-list", str(changed)), "kid-duplicate")


@pytest.mark.parametrize("sequence", [1, 5])
def test_the_list_published_after_an_import_supersedes_the_imported_one(database_url, tmp_path, sequence):
    """PROTO-10.3-3, -4: a receiver anchored on the imported list must accept what the hub publishes next, so its
    sequence is higher, on an empty registry (the CLI's own advice before a first start) as on a used one."""
    document = dict(json.loads(TRUST_LIST.read_text()), sequence=sequence)
    imported = tmp_path / "imported.json"
    imported.write_text(json.dumps(document))
    assert keys(database_url, "import", "--trust-list", str(imported)).status == 0
    assert registry_document(database_url)["sequence"] > sequence
    _, entry, _ = new_key(tmp_path, "--jurisdiction", "HK", "--use", "message")
    later = dict(document, sequence=sequence + 10, keys=[*document["keys"], entry])
    imported.write_text(json.dumps(later))
    assert keys(database_url, "import", "--trust-list", str(imported)).status == 0
    assert registry_document(database_url)["sequence"] > sequence + 10


def test_the_wait_ends_with_an_error_naming_a_live_process_that_never_acknowledges(database_url):
    import_test_trust_list(database_url)
    with idle_gateway_process(database_url, "gateway:fake"):
        result = keys(database_url, "revoke", GD, "--wait", "0.2")
    assert result.status == 1
    assert "did not acknowledge it within 0.2 s" in result.stderr and "gateway:fake (holds version 0)" in result.stderr
    (row,) = query(database_url, "SELECT revoked_at FROM keys WHERE kid = $1", GD)
    assert row["revoked_at"] is not None  # committed all the same; the operator learns who lags


def test_a_registered_process_without_a_connection_is_not_waited_for(database_url):
    import_test_trust_list(database_url)
    query(database_url, "INSERT INTO gateway_processes (process_id) VALUES ('gateway:gone')")
    result = keys(database_url, "revoke", GD, "--wait", "30")
    assert result.status == 0, result.stderr
    assert "acknowledged by every live gateway process (0)" in result.stderr


def test_a_registry_reload_that_fails_logs_why_without_withheld_fields(database_url):
    # The copy held stays and the change's command times out naming this process; the operator reads the why here.
    import_test_trust_list(database_url)
    query(database_url, "INSERT INTO keys (kid, owner, use, alg, jwk, not_before, not_after, test_key)"
          " SELECT 'test-xx-message-1', 'XX', use, alg, jwk, not_before, not_after, test_key FROM keys"
          " WHERE kid = 'test-hk-message-1'")

    async def reload() -> list[dict]:
        pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
        try:
            with capture_logs() as lines:
                await Registry(pool, "test", "gateway:test-reload")._reload_logging_failure()
            return lines
        finally:
            await pool.close()

    [line] = [line for line in asyncio.run(reload()) if line["event"] == "registry_reload_failed"]
    assert (line["error"], line["code"]) == ("ProtocolError", "trust-list-invalid") and line["where"].startswith("/keys/")
    assert "detail" not in line


def test_two_first_uses_in_different_modes_cannot_both_settle(database_url):
    # A change records `test` in its open transaction; a production start reads no mode meanwhile and its UPDATE
    # waits for that transaction. Once it commits, the start must see `test` and be refused, not serve production.
    assert keys(database_url, "list").status == 0  # the schema, and an empty registry

    async def race() -> None:
        change, start, watch = [await asyncpg.connect(database_url) for _ in range(3)]
        try:
            transaction = change.transaction()
            await transaction.start()
            assert await settle_mode(change, "test") == "test"
            starting = asyncio.create_task(settle_mode(start, "production"))
            start_pid = start.get_server_pid()
            # Polled with a deadline, one query after another, until the start waits on the row lock the change holds.
            waiting = "SELECT count(*) FROM pg_locks WHERE pid = $1 AND NOT granted"
            async with asyncio.timeout(30):
                while not await watch.fetchval(waiting, start_pid):
                    pass
            await transaction.commit()
            with pytest.raises(ModeConflict, match="a test registry, and this is a production gateway"):
                await starting
        finally:
            for connection in (change, start, watch):
                await connection.close()

    asyncio.run(race())
    assert query(database_url, "SELECT mode FROM registry_version")[0]["mode"] == "test"


def test_a_running_hub_whose_receipt_key_is_revoked_says_so_loudly(database_url):
    # From then on every receipt, attestation and trust list it signs is refused by every consumer.
    with running_hub(database_url):
        with capture_logs() as lines:
            revoked = keys(database_url, "revoke", "test-hub-receipt-1")  # waits for every live process
        assert revoked.status == 0, revoked.stderr
    [line] = [line for line in lines if line["event"] == "hub_receipt_key_unusable"]
    assert line["kid"] == "test-hub-receipt-1" and line["log_level"] == "error" and "as revoked" in line["reason"]


def test_a_running_hub_warns_before_its_receipt_key_runs_out_and_says_so_loudly_once_it_has(database_url):
    # Nothing changes in the registry: the clock alone passes the key's not_after, which only the next start checked.
    from tests.hub.harness import Clock

    clock = Clock()
    with running_hub(database_url, clock=clock, receipt_key_check_seconds=0.05):
        (row,) = query(database_url, "SELECT not_after FROM keys WHERE kid = 'test-hub-receipt-1'")
        heard = _Heard()
        with capture_logs(processors=[heard]) as lines:
            clock.offset = row["not_after"] - timedelta(days=10) - utc_now()
            heard.wait_for("hub_receipt_key_expiring")
            clock.offset = row["not_after"] + timedelta(seconds=1) - utc_now()
            heard.wait_for("hub_receipt_key_unusable")
    [expiring] = [line for line in lines if line["event"] == "hub_receipt_key_expiring"]
    assert expiring["log_level"] == "warning" and expiring["kid"] == "test-hub-receipt-1" and 9.9 <= expiring["days_left"] <= 10.0
    assert expiring["not_after"] == format_timestamp(row["not_after"])
    unusable = [line for line in lines if line["event"] == "hub_receipt_key_unusable"]
    assert unusable[0]["log_level"] == "error" and "as expired" in unusable[0]["reason"]


class _Heard:
    """A structlog processor, run before capture_logs' own, that lets a test wait for an event the hub logs on its own
    thread: woken by the log call itself, not by polling."""

    def __init__(self) -> None:
        self._seen: set[str] = set()
        self._changed = threading.Condition()

    def __call__(self, _logger: object, _method: str, event_dict: dict) -> dict:
        with self._changed:
            self._seen.add(event_dict.get("event"))
            self._changed.notify_all()
        return event_dict

    def wait_for(self, event: str, timeout: float = 30.0) -> None:
        with self._changed:
            assert self._changed.wait_for(lambda: event in self._seen, timeout), f"no {event} within {timeout} s"


def test_the_receipt_key_warning_comes_once_a_day_from_thirty_days_before_it_runs_out():
    from datetime import UTC, time

    from gateway.hub.http import check_receipt_key_in_time
    from gateway.protocol.trust import load_trust_list

    trust = load_trust_list(TRUST_LIST.read_bytes())
    key = read_private_key(TRUST_LIST.parent / "test-hub-receipt-1.key.jwk")
    not_after = trust.keys[key.kid].not_after
    morning = datetime.combine((not_after - timedelta(days=12)).date(), time(0, 10), tzinfo=UTC)
    checks = [not_after - timedelta(days=31), morning, morning + timedelta(hours=12), morning + timedelta(hours=23, minutes=40),
              morning + timedelta(days=1)]
    with capture_logs() as lines:
        warned_on = None
        for now in checks:
            warned_on = check_receipt_key_in_time(trust, key, now, warned_on)
    warnings = [line for line in lines if line["event"] == "hub_receipt_key_expiring"]
    assert len(warnings) == 2, "none 31 days ahead; one on each day within 30 days, not one a check"
    assert warnings[0]["days_left"] - warnings[1]["days_left"] == 1.0
