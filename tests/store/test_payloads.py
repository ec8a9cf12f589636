"""Personal data sealed at rest (gateway/store/payloads.py, docs/security.md "Payloads at rest")."""

from __future__ import annotations

import base64
import stat

import pytest

from gateway.store.payloads import KEYS_VARIABLE, PayloadKeyError, PayloadKeys, generate_key, load_keys, new_key_id
from gateway.store.embedded import ensure_embedded_server
from tests.cli_runner import run_cli
from tests.database import temporary_data_dir
from tests.hub.harness import query, running_hub
from tests.hub.test_delivery_pull import GD, HK, Party
from tests.hub.test_transport_security import referral

MESSAGE_ID = "01a2259a-0000-7000-8000-000000000001"
OTHER_ID = "01a2259a-0000-7000-8000-000000000002"


def ring(*ids: str) -> PayloadKeys:
    return PayloadKeys({key_id: bytes([n]) * 32 for n, key_id in enumerate(ids, 1)}, "test ring")


def test_sealed_bytes_open_only_for_their_own_message_and_unaltered():
    keys = ring("p1")
    key_id, sealed = keys.seal(MESSAGE_ID, b"eyJ.payload.sig")
    assert key_id == "p1" and b"payload" not in sealed
    assert keys.open(MESSAGE_ID, key_id, sealed) == b"eyJ.payload.sig"
    with pytest.raises(PayloadKeyError, match="altered or misplaced"):
        keys.open(OTHER_ID, key_id, sealed)
    flipped = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(PayloadKeyError, match="altered or misplaced"):
        keys.open(MESSAGE_ID, key_id, flipped)


def test_the_greatest_key_id_seals_and_older_keys_still_open():
    old = new_key_id()
    keys_before = ring(old)
    _, sealed = keys_before.seal(MESSAGE_ID, b"x")
    new = new_key_id()
    assert new > old, "key ids sort by creation time"
    both = PayloadKeys({**keys_before.keys, new: b"\x07" * 32})
    assert both.current == new and both.seal(MESSAGE_ID, b"x")[0] == new
    assert both.open(MESSAGE_ID, old, sealed) == b"x"
    with pytest.raises(PayloadKeyError, match=f"payload key {old} is not in"):
        ring("p2").open(MESSAGE_ID, old, sealed)


def test_keys_come_from_the_environment_or_a_directory_and_bad_ones_are_named(tmp_path):
    folder = tmp_path / "keys"
    first = generate_key(folder)
    assert stat.S_IMODE((folder / f"{first}.key").stat().st_mode) == 0o600
    second = generate_key(folder)
    assert second > first and load_keys(folder, {}).current == second
    encoded = base64.b64encode(b"\x01" * 32).decode()
    assert load_keys(None, {KEYS_VARIABLE: f"penv={encoded}"}).current == "penv"
    with pytest.raises(PayloadKeyError, match="not base64"):
        load_keys(None, {KEYS_VARIABLE: "penv=***"})
    with pytest.raises(PayloadKeyError, match="16 bytes, want 32"):
        load_keys(None, {KEYS_VARIABLE: "penv=" + base64.b64encode(b"\x01" * 16).decode()})
    with pytest.raises(PayloadKeyError, match="no payload key directory"):
        load_keys(tmp_path / "absent", {})
    with pytest.raises(PayloadKeyError, match="lowercase letters"):
        PayloadKeys({"Bad Id": b"\x01" * 32})


def test_an_accepted_message_is_stored_sealed_and_delivered_as_received(database_url, example, test_key):
    compact = referral(example, test_key(GD))
    keys = ring("pa")
    with running_hub(database_url, payload_keys=keys) as hub:
        assert hub.post_message(compact).status == 202
        row = query(database_url, "SELECT compact, payload_key FROM messages")[0]
        assert row["payload_key"] == "pa"
        assert compact.split(b".")[1] not in bytes(row["compact"]), "the stored bytes do not hold the payload"
        deliveries, _ = Party(hub, test_key(HK)).deliveries()
        assert [d["message"].encode() for d in deliveries] == [compact]


def test_a_sealed_payload_is_stored_uncompressed_out_of_its_row_and_not_copied_by_a_delivery(database_url, example, test_key):
    """Migrations 0008 and 0009: no compression attempt on ciphertext, and the payload kept out of the message's row,
    so that the `delivered` and `receipted` updates copy a small row and point to the same stored payload."""
    compact = referral(example, test_key(GD))
    with running_hub(database_url) as hub:
        assert hub.post_message(compact).status == 202
        (row,) = query(database_url, "SELECT length(compact) AS stored, pg_column_compression(compact) AS compression FROM messages")
        assert row["stored"] > 2100 and row["compression"] is None  # above the default TOAST threshold, not compressed
        (toast,) = query(database_url, "SELECT reltoastrelid::regclass::text AS name FROM pg_class WHERE relname = 'messages'")
        chunks = f"SELECT count(*) AS n FROM {toast['name']}"
        (stored,) = query(database_url, chunks)
        assert stored["n"] > 0, "the sealed payload is out of the row"
        deliveries, _ = Party(hub, test_key(HK)).deliveries()
        assert [d["message"].encode() for d in deliveries] == [compact]
        assert query(database_url, "SELECT status FROM messages")[0]["status"] == "delivered"
        assert query(database_url, chunks)[0]["n"] == stored["n"], "the delivery's update did not copy the payload"


def test_rows_stored_in_clear_are_sealed_at_start(example, test_key):
    # Its own embedded server: the row in clear must not reach the WAL of the session's server, which
    # tests/test_at_rest.py searches for personal data after the run.
    compact = referral(example, test_key(GD))
    with temporary_data_dir() as data_dir:
        database_url = ensure_embedded_server(data_dir).dsn
        with running_hub(database_url, payload_keys=ring("pa")) as hub:
            assert hub.post_message(compact).status == 202
        query(database_url, "UPDATE messages SET compact = $1, payload_key = NULL", compact)  # as before this issue
        with running_hub(database_url, payload_keys=ring("pa")) as hub:
            row = query(database_url, "SELECT compact, payload_key FROM messages")[0]
            assert row["payload_key"] == "pa" and bytes(row["compact"]) != compact
            deliveries, _ = Party(hub, test_key(HK)).deliveries()
            assert [d["message"].encode() for d in deliveries] == [compact]


def test_a_rotation_reseals_every_row_and_the_old_key_can_then_go(database_url, example, test_key, tmp_path):
    folder = tmp_path / "payload-keys"
    generate_key(folder)
    first = referral(example, test_key(GD))
    with running_hub(database_url, payload_keys=load_keys(folder, {})) as hub:
        assert hub.post_message(first).status == 202
    old = load_keys(folder, {}).current
    generated = run_cli("payload-keys", "generate", "--dir", str(folder))
    assert generated.status == 0, generated.stderr
    new = load_keys(folder, {}).current
    assert new != old and new in generated.stdout
    second = referral(example, test_key(GD))
    with running_hub(database_url, payload_keys=load_keys(folder, {})) as hub:
        assert hub.post_message(second).status == 202
    assert sorted(row["payload_key"] for row in query(database_url, "SELECT payload_key FROM messages")) == sorted([old, new])

    listed = run_cli("payload-keys", "list", "--dir", str(folder), "--database-url", database_url)
    assert listed.status == 0 and f"{new}" in listed.stdout and "(current)" in listed.stdout
    done = run_cli("payload-keys", "reencrypt", "--dir", str(folder), "--database-url", database_url)
    assert done.status == 0, done.stderr
    assert "resealed 1 stored messages" in done.stdout and old in done.stdout.splitlines()[-1]
    assert {row["payload_key"] for row in query(database_url, "SELECT payload_key FROM messages")} == {new}

    (folder / f"{old}.key").unlink()
    with running_hub(database_url, payload_keys=load_keys(folder, {})) as hub:
        deliveries, _ = Party(hub, test_key(HK)).deliveries()
        assert sorted(d["message"].encode() for d in deliveries) == sorted([first, second])


@pytest.mark.parametrize("verb", ["generate", "list"])
def test_a_configuration_that_cannot_be_read_is_a_message_not_a_traceback(tmp_path, verb):
    bad = tmp_path / "bad.toml"
    bad.write_text("[hub\n", encoding="utf-8")
    result = run_cli("payload-keys", verb, "--config", str(bad))
    assert result.status == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("gateway: ") and "bad.toml" in result.stderr


def test_generate_refuses_a_key_that_would_not_become_the_current_one(tmp_path, monkeypatch):
    # A rotation away from a leaked key must not silently leave it sealing.
    monkeypatch.delenv(KEYS_VARIABLE, raising=False)
    folder = tmp_path / "payload-keys"
    folder.mkdir(mode=0o700)
    (folder / "zz-by-hand.key").write_text(base64.b64encode(bytes(32)).decode() + "\n", "ascii")
    result = run_cli("payload-keys", "generate", "--dir", str(folder))
    assert result.status == 1 and "payload key zz-by-hand, whose id sorts after the new key's" in result.stderr, result.stderr
    assert sorted(path.name for path in folder.iterdir()) == ["zz-by-hand.key"]

    monkeypatch.setenv(KEYS_VARIABLE, "pa=" + base64.b64encode(bytes(32)).decode())
    elsewhere = tmp_path / "other-keys"
    result = run_cli("payload-keys", "generate", "--dir", str(elsewhere))
    assert result.status == 1 and f"${KEYS_VARIABLE} is set" in result.stderr, result.stderr
    assert not elsewhere.exists()


def test_reencrypt_rewrites_the_table_even_when_every_row_is_already_sealed_under_the_current_key(
        database_url, example, test_key, tmp_path, monkeypatch):
    # A run that resealed every row and then failed to rewrite the table left the old sealed bytes in dead row
    # versions; the next run, with nothing left to reseal, must still remove them.
    monkeypatch.delenv(KEYS_VARIABLE, raising=False)
    folder = tmp_path / "payload-keys"
    generate_key(folder)
    with running_hub(database_url, payload_keys=load_keys(folder, {})) as hub:
        assert hub.post_message(referral(example, test_key(GD))).status == 202
    before = query(database_url, "SELECT pg_relation_filenode('messages') AS node")[0]["node"]
    done = run_cli("payload-keys", "reencrypt", "--dir", str(folder), "--database-url", database_url)
    assert done.status == 0 and "already sealed" in done.stdout and "the table was rewritten" in done.stdout
    assert query(database_url, "SELECT pg_relation_filenode('messages') AS node")[0]["node"] != before
