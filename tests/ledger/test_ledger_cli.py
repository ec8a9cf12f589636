"""`gateway ledger checkpoint|export|verify --bundle|verify --record|new-origin` and the witness over HTTP
(docs/protocol.md §13.4-§13.8), against a running hub and its witnessing simulators."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path


from gateway.contract import contract_dir
from gateway.demo.exchange import key_path
from gateway.hub.witnessing import add_checkpoint_body
from gateway.keyfiles import read_private_key
from gateway.ledger import merkle, notes
from tests.cli_runner import run_cli
from tests.hub.harness import query, running_hub, wait_for_row
from tests.ledger.test_witnessed_ledger import _pool, run, verification

_KEYS = contract_dir("keys") / "test"


def config_for(exchange, database_url: str, folder: Path) -> Path:
    """A gateway configuration naming the exchange's database, origin, checkpoint key and witnesses."""
    witnesses = "".join(
        f'[[witnesses]]\njurisdiction = "{w.jurisdiction}"\nvkey = "{w.vkey}"\nurl = "{w.url}"\n' for w in exchange.config.witnesses
    )
    text = f"""
mode = "test"
public_base_url = "{exchange.hub_url}"
database_url = "{database_url}"
[hub]
receipt_key = "{_KEYS / 'test-hub-receipt-1.key.jwk'}"
checkpoint_key = "{_KEYS / 'test-hub-checkpoint-1.key.jwk'}"
trust_list = "{_KEYS / 'trust-list.json'}"
[ledger]
origin = "{exchange.config.origin}"
{witnesses}
[jurisdictions.CN-GD]
[jurisdictions.HK]
[jurisdictions.MO]
[[routes]]
sender = "CN-GD"
receiver = "HK"
types = ["receipt"]
purposes = ["delivery_receipt"]
"""
    path = folder / "gateway.toml"
    path.write_text(text, "utf-8")
    return path


def test_checkpoint_export_and_verify_a_bundle_from_the_command_line(database_url, tmp_path):
    async def scenario(exchange, session):
        await verification(exchange, "HK")
        await verification(exchange, "MO")
        config = config_for(exchange, database_url, tmp_path)
        signed = await asyncio.to_thread(run_cli, "ledger", "checkpoint", "--config", str(config))
        exported = await asyncio.to_thread(
            run_cli, "ledger", "export", "--as", "HK", "--out", str(tmp_path / "hk.json"), "--config", str(config)
        )
        return config, signed, exported, [w.vkey for w in exchange.config.witnesses], exchange.log_key().vkey()

    config, signed, exported, witness_vkeys, log_vkey = run(database_url, tmp_path, scenario)
    assert signed.status == 0, signed.stderr
    assert "3 of 3 witnesses cosigned (quorum 2)" in signed.stderr
    assert signed.stdout.count("\n— witness.") == 3
    assert exported.status == 0, exported.stderr
    bundle = json.loads((tmp_path / "hk.json").read_text("utf-8"))
    assert bundle["viewer"] == "HK" and bundle["entries"]

    verified = run_cli("ledger", "verify", "--bundle", str(tmp_path / "hk.json"), "--config", str(config))
    assert verified.status == 0, verified.stdout + verified.stderr
    assert "every one included and intact" in verified.stdout
    options = ["--log-key", log_vkey] + [part for vkey in witness_vkeys for part in ("--witness", vkey)]
    assert run_cli("ledger", "verify", "--bundle", str(tmp_path / "hk.json"), *options, "--quorum", "3").status == 0

    # The signed checkpoint is a trusted tree head for `ledger verify`, once its signatures verify.
    # (The simulators run in this process and log JSON lines to the same stdout: leave those out.)
    note = "".join(line for line in signed.stdout.splitlines(keepends=True) if not line.startswith("{"))
    (tmp_path / "checkpoint.txt").write_text(note, "utf-8")
    trusted = run_cli("ledger", "verify", "--trusted-checkpoint", str(tmp_path / "checkpoint.txt"), "--config", str(config),
                      "--database-url", database_url)
    assert trusted.status == 0, trusted.stdout + trusted.stderr
    (tmp_path / "forged.txt").write_text(note.replace("\n— ", "\n— x", 1), "utf-8")
    forged = run_cli("ledger", "verify", "--trusted-checkpoint", str(tmp_path / "forged.txt"), "--config", str(config),
                     "--database-url", database_url)
    assert forged.status == 2 and "the trusted checkpoint" in forged.stderr

    # Verifying needs the verifier's own keys: with another log key, nothing verifies.
    stranger = notes.note_key("127.0.0.1/gba-ledger", read_private_key(key_path("witness:HK")).public()).vkey()
    refused = run_cli("ledger", "verify", "--bundle", str(tmp_path / "hk.json"), "--log-key", stranger, *options[2:])
    assert refused.status == 1 and "does not verify" in refused.stderr


def test_verify_record_stores_the_result_and_metrics_show_the_first_bad_entry(database_url, tmp_path):
    with running_hub(database_url) as hub:
        first = run_cli("ledger", "verify", "--record", "--database-url", database_url)
        assert first.status == 0, first.stdout + first.stderr
        assert "gateway_ledger_verification_intact 1" in hub.request("GET", "/metrics").body.decode()
        query(database_url, "UPDATE ledger_entries SET entry = convert_to(replace(convert_from(entry, 'UTF8'), '\"v\":1', '\"v\":2'), 'UTF8') WHERE idx = 3")
        second = run_cli("ledger", "verify", "--record", "--database-url", database_url)
        assert second.status == 1
        metrics = hub.request("GET", "/metrics").body.decode()
    assert "gateway_ledger_verification_intact 0" in metrics
    rows = query(database_url, "SELECT intact, first_bad_index, by_whom FROM ledger_verifications ORDER BY id")
    assert [(row["intact"], row["first_bad_index"]) for row in rows] == [(True, None), (False, 3)]
    assert "gateway_ledger_verification_first_bad_index 3" in metrics


def test_the_gateway_verifies_the_ledger_on_its_schedule(database_url):
    with running_hub(database_url, verify_interval_seconds=0.05):
        assert wait_for_row(database_url, "SELECT intact FROM ledger_verifications WHERE intact")["intact"]


def test_a_witness_refuses_a_fork_at_a_larger_size_over_http_and_keeps_its_state(database_url, tmp_path):
    async def scenario(exchange, session):
        await verification(exchange, "HK")
        honest = await exchange.checkpointer.checkpoint_now()
        pool = await _pool(exchange)
        entries = [row["entry"] for row in await pool.fetch("SELECT entry FROM ledger_entries ORDER BY idx")]
        # A forked tree: the same history up to `honest`, then other entries — signed with the real log key.
        forked = entries[: honest.size] + [b'{"fork":%d}' % n for n in range(5)]
        fork = notes.Checkpoint(honest.origin, len(forked), merkle.reference_root(forked))
        note = notes.sign_note(fork.body(), honest.origin, read_private_key(key_path("hub-checkpoint")))
        hk = exchange["HK"]
        body = add_checkpoint_body(honest.size, merkle.reference_consistency(honest.size, entries[: honest.size] + [b"x"] * 5), note)
        async with session.post(hk.witness_url + "/add-checkpoint", data=body) as response:
            answer = (response.status, await response.read())
        return answer, hk.witnessed(honest.origin), honest

    (status, body), held, honest = run(database_url, tmp_path, scenario)
    assert status == 422 and not body.startswith("— ".encode())
    assert held == (honest.size, honest.root), "no cosignature, no change of state"


def test_new_origin_signs_a_hand_over_once_and_names_the_new_log_key(database_url, tmp_path):
    async def scenario(exchange, session):
        await exchange.checkpointer.checkpoint_now()
        config = config_for(exchange, database_url, tmp_path)
        same = await asyncio.to_thread(run_cli, "ledger", "new-origin", "--origin", exchange.config.origin, "--config", str(config))
        moved = await asyncio.to_thread(run_cli, "ledger", "new-origin", "--origin", "127.0.0.1/gba-ledger/2", "--config", str(config))
        again = await asyncio.to_thread(run_cli, "ledger", "new-origin", "--origin", "127.0.0.1/gba-ledger/3", "--config", str(config))
        return exchange.log_key(), same, moved, again

    log_key, same, moved, again = run(database_url, tmp_path, scenario)
    assert same.status == 1 and "must differ" in same.stderr
    assert moved.status == 0, moved.stderr
    assert notes.verify_note(moved.stdout, log_key).endswith("new 127.0.0.1/gba-ledger/2\n")
    new_key = notes.note_key("127.0.0.1/gba-ledger/2", read_private_key(key_path("hub-checkpoint")).public()).vkey()
    assert new_key in moved.stderr
    assert again.status == 1 and "exists already" in again.stderr
