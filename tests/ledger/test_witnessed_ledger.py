"""The ledger as its parties see it: signed checkpoints, every jurisdiction a witness, scoped reads, bundles
(docs/protocol.md §13.4-§13.7). Real sockets and PostgreSQL: the hub and three simulators, each also a witness
(gateway.demo.exchange)."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import aiohttp
import pytest

from gateway.demo.exchange import key_path, running_exchange
from gateway.keyfiles import read_private_key
from gateway.ledger import merkle, notes
from gateway.ledger.bundle import BundleError, build_bundle, verify_bundle
from gateway.ledger import checkpoints
from gateway.protocol.keys import generate
from gateway.protocol.request_proof import make_request_proof
from gateway.protocol.timestamps import utc_now

ALL_PULL = {"CN-GD": "pull", "HK": "pull", "MO": "pull"}


def run(database_url: str, tmp_path: Path, scenario, origin: str | None = None):
    async def main():
        async with running_exchange(database_url, tmp_path, ALL_PULL, poll_wait_seconds=1, origin=origin) as exchange:
            async with aiohttp.ClientSession() as session:
                return await scenario(exchange, session)

    return asyncio.run(main())


async def verification(exchange, to: str) -> str:
    """A verification CN-GD -> `to`, through its answer and receipts; its case id."""
    gd = exchange["CN-GD"]
    case, _ = await gd.start_verification(to)

    def answered() -> bool:
        view = gd.case(case)
        return view is not None and view.state == "answered" and all(
            (sent := sim.outgoing(m)) is None or sent.type == "receipt" or sent.receiver_receipt_status
            for sim in (gd, exchange[to]) for m in view.messages
        )

    await exchange.wait_for(answered, 30)
    return case


async def published(exchange, session) -> str:
    async with session.get(exchange.hub_url + "/v1/ledger/checkpoint") as response:
        assert response.status == 200 and response.content_type == "text/plain"
        return await response.text()


def test_every_jurisdiction_witnesses_and_the_checkpoint_meets_the_quorum(database_url, tmp_path):
    async def scenario(exchange, session):
        await verification(exchange, "HK")
        first = await exchange.checkpointer.checkpoint_now()
        await verification(exchange, "MO")
        second = await exchange.checkpointer.checkpoint_now()
        note = await published(exchange, session)
        witnessed = {code: exchange[code].witnessed(exchange.config.origin) for code in ("CN-GD", "HK", "MO")}
        async with session.get(exchange.hub_url + f"/v1/ledger/proof/consistency?from={first.size}&to={second.size}") as response:
            proof = [base64.b64decode(node) for node in (await response.json())["proof"]]
        return exchange, first, second, note, witnessed, proof

    exchange, first, second, note, witnessed, proof = run(database_url, tmp_path, scenario)
    assert second.size > first.size
    verified = notes.verify_checkpoint(note, exchange.log_key(), exchange.witness_keys(), exchange.config.quorum)
    assert verified.checkpoint.size == second.size and exchange.config.quorum == 2
    assert {name for name, _ in verified.cosigned_by} == {f"witness.{c}.gba.example" for c in ("cn-gd", "hk", "mo")}
    assert witnessed == {code: (second.size, second.root) for code in witnessed}, "each witness recorded what it cosigned"
    merkle.verify_consistency(first.size, second.size, proof, first.root, second.root)


def test_a_witness_that_is_down_does_not_stop_the_ledger_and_catches_up_when_back(database_url, tmp_path):
    async def scenario(exchange, session):
        await exchange.checkpointer.checkpoint_now()
        mo = exchange["MO"]
        await mo.stop()
        await verification(exchange, "HK")  # the ledger goes on without Macao's witness
        down = await exchange.checkpointer.checkpoint_now()
        cosigned_while_down = [name for name, _ in await checkpoints.cosignatures(await _pool(exchange), exchange.config.origin, down.size)]
        async with session.get(exchange.hub_url + "/metrics") as response:
            metrics = await response.text()
        await mo.start()
        back = await exchange.checkpointer.checkpoint_now()
        return exchange, down, back, cosigned_while_down, metrics, mo.witnessed(exchange.config.origin)

    exchange, down, back, cosigned_while_down, metrics, mo_holds = run(database_url, tmp_path, scenario)
    assert sorted(cosigned_while_down) == ["witness.cn-gd.gba.example", "witness.hk.gba.example"]
    lag = next(line for line in metrics.splitlines() if line.startswith('gateway_witness_lag_entries{witness="witness.mo.gba.example"}'))
    assert int(lag.split()[-1]) > 0
    assert mo_holds == (back.size, back.root), "Macao cosigned the latest checkpoint once it was back"


def test_processes_on_one_database_sign_one_checkpoint_a_period_between_them(database_url, tmp_path):
    """The periodic round signs only when no process signed in the last interval (checkpoint_interval_seconds holds for
    all processes together); on demand it signs whenever the ledger grew."""
    from datetime import timedelta

    from gateway.hub.witnessing import Checkpointer

    async def scenario(exchange, session):
        pool = await _pool(exchange)
        mine = exchange.checkpointer

        def another_process(hours_later: float) -> Checkpointer:
            return Checkpointer(pool=pool, origin=mine.origin, key=mine._key, witnesses=(), interval_seconds=3600,
                                clock=lambda: utc_now() + timedelta(hours=hours_later))

        await verification(exchange, "HK")
        signed = await mine.checkpoint_now()
        await verification(exchange, "MO")
        grown = await pool.fetchval("SELECT size FROM ledger_size")
        within_the_period = await another_process(0).checkpoint_now(min_interval_seconds=3600)
        after_the_period = await another_process(2).checkpoint_now(min_interval_seconds=3600)
        return signed, grown, within_the_period, after_the_period

    signed, grown, within_the_period, after_the_period = run(database_url, tmp_path, scenario)
    assert grown > signed.size
    assert within_the_period == signed, "another process signed nothing within the period, though the ledger grew"
    assert after_the_period.size >= grown, "once the period had passed, it signed the grown ledger"


async def _pool(exchange):
    from gateway.hub.http import POOL

    return exchange.app[POOL]


def _proof_header(exchange, code: str, path: str) -> dict[str, str]:
    key = read_private_key(key_path(code))
    return {"GBA-Request-Proof": make_request_proof(key, "GET", exchange.hub_url + path.split("?")[0], None, utc_now()).decode()}


def test_hong_kong_cannot_read_an_entry_that_concerns_only_guangdong_and_macao(database_url, tmp_path):
    async def scenario(exchange, session):
        case = await verification(exchange, "MO")
        checkpoint = await exchange.checkpointer.checkpoint_now()
        pool = await _pool(exchange)
        rows = await pool.fetch("SELECT idx, entry FROM ledger_entries ORDER BY idx")
        index = next(row["idx"] for row in rows if json.loads(row["entry"]).get("case") == case and json.loads(row["entry"])["kind"] == "accepted")
        answers = {}
        for code in ("HK", "CN-GD", "MO"):
            path = f"/v1/ledger/proof/inclusion?index={index}&size={checkpoint.size}"
            async with session.get(exchange.hub_url + path, headers=_proof_header(exchange, code, path)) as response:
                answers[code] = (response.status, await response.json())
            path = "/v1/ledger/entries?start=0&limit=1000"
            async with session.get(exchange.hub_url + path, headers=_proof_header(exchange, code, path)) as response:
                answers[code + " list"] = {item["index"] for item in (await response.json())["entries"]}
        return index, checkpoint, answers

    index, checkpoint, answers = run(database_url, tmp_path, scenario)
    status, problem = answers["HK"]
    assert (status, problem["code"]) == (404, "not-found")
    assert index not in answers["HK list"] and index in answers["CN-GD list"] and index in answers["MO list"]
    status, found = answers["CN-GD"]
    assert status == 200 and answers["MO"][0] == 200
    entry = base64.b64decode(found["entry"])
    merkle.verify_inclusion(merkle.leaf_hash(entry), index, checkpoint.size, [base64.b64decode(n) for n in found["proof"]], checkpoint.root)


# --- bundles and the quorum: each way of falling short, in its own test ---------------------


@pytest.fixture(scope="module")
def bundle_material(database_server, tmp_path_factory):
    """A real bundle of a witnessed ledger, with the keys a verifier configures, and spare cosignatures."""
    tmp_path = tmp_path_factory.mktemp("bundle")

    async def scenario(exchange, session):
        await verification(exchange, "HK")
        await exchange.checkpointer.checkpoint_now()
        older_note = await published(exchange, session)
        await verification(exchange, "MO")
        latest = await exchange.checkpointer.checkpoint_now()
        note = await published(exchange, session)
        bundle = await build_bundle(await _pool(exchange), latest, note, "CN-GD", 0, latest.size)
        return exchange.log_key(), exchange.witness_keys(), exchange.config.quorum, bundle, older_note

    with database_server.fresh_database() as database_url:
        yield run(database_url, tmp_path, scenario)


def _with_note(bundle: dict, note: str) -> dict:
    return dict(bundle, checkpoint=note)


def _cosignature_lines(note: str) -> dict[str, str]:
    return {line.split(" ")[1]: line + "\n" for line in note.splitlines() if line.startswith("— witness.")}


def _without_cosignatures(note: str) -> str:
    return "".join(line + "\n" for line in note.splitlines() if not line.startswith("— witness.")).replace("\n\n\n", "\n\n")


def test_a_bundle_with_the_quorum_verifies(bundle_material):
    log_key, witnesses, quorum, bundle, _ = bundle_material
    report = verify_bundle(bundle, log_key, witnesses, quorum)
    assert report.ok and report.entries == len(bundle["entries"]) > 0 and len(report.cosigned_by) == 3


def test_a_bundle_with_fewer_cosignatures_than_the_quorum_fails(bundle_material):
    log_key, witnesses, quorum, bundle, _ = bundle_material
    lines = _cosignature_lines(bundle["checkpoint"])
    note = notes.add_signature_lines(_without_cosignatures(bundle["checkpoint"]), [lines["witness.hk.gba.example"]])
    with pytest.raises(BundleError, match='want 2; not counted: no other witness signatures'):
        verify_bundle(_with_note(bundle, note), log_key, witnesses, quorum)


def test_a_quorum_reached_only_by_a_duplicated_witness_fails(bundle_material):
    log_key, witnesses, quorum, bundle, _ = bundle_material
    hk = _cosignature_lines(bundle["checkpoint"])["witness.hk.gba.example"]
    note = notes.add_signature_lines(_without_cosignatures(bundle["checkpoint"]), [hk, hk])
    with pytest.raises(BundleError, match='want 2; not counted: witness.hk.gba.example: duplicate-witness'):
        verify_bundle(_with_note(bundle, note), log_key, witnesses, quorum)
    assert verify_bundle(_with_note(bundle, note), log_key, witnesses, 1).ok, "one distinct witness is what it has"


def test_a_quorum_reached_only_through_an_unconfigured_key_fails(bundle_material):
    log_key, witnesses, quorum, bundle, _ = bundle_material
    body = notes.verify_checkpoint(bundle["checkpoint"], log_key, witnesses, quorum).checkpoint.body()
    stranger = notes.cosign(body, "witness.mo.gba.example", generate("Ed25519", "stranger"), 1_795_000_000)
    hk = _cosignature_lines(bundle["checkpoint"])["witness.hk.gba.example"]
    note = notes.add_signature_lines(_without_cosignatures(bundle["checkpoint"]), [hk, stranger])
    with pytest.raises(BundleError, match='want 2; not counted: witness.mo.gba.example: unknown-key'):
        verify_bundle(_with_note(bundle, note), log_key, witnesses, quorum)


def test_a_cosignature_over_another_checkpoint_does_not_count(bundle_material):
    log_key, witnesses, quorum, bundle, older_note = bundle_material
    hk = _cosignature_lines(bundle["checkpoint"])["witness.hk.gba.example"]
    old_mo = _cosignature_lines(older_note)["witness.mo.gba.example"]
    note = notes.add_signature_lines(_without_cosignatures(bundle["checkpoint"]), [hk, old_mo])
    with pytest.raises(BundleError, match='want 2; not counted: witness.mo.gba.example: other-checkpoint'):
        verify_bundle(_with_note(bundle, note), log_key, witnesses, quorum)


def test_a_cosignature_with_an_unparsable_timestamp_does_not_count(bundle_material):
    log_key, witnesses, quorum, bundle, _ = bundle_material
    lines = _cosignature_lines(bundle["checkpoint"])
    name, encoded = lines["witness.mo.gba.example"].rstrip("\n").split(" ")[1:]
    raw = base64.b64decode(encoded)
    broken = f"— {name} {base64.b64encode(raw[:4] + raw[4:10] + raw[12:]).decode()}\n"  # 6 timestamp bytes, not 8
    note = notes.add_signature_lines(_without_cosignatures(bundle["checkpoint"]), [lines["witness.hk.gba.example"], broken])
    with pytest.raises(BundleError, match='want 2; not counted: witness.mo.gba.example: timestamp'):
        verify_bundle(_with_note(bundle, note), log_key, witnesses, quorum)


def test_a_bundle_entry_altered_after_export_is_found(bundle_material):
    log_key, witnesses, quorum, bundle, _ = bundle_material
    entries = [dict(item) for item in bundle["entries"]]
    entry = base64.b64decode(entries[0]["entry"]).replace(b'"v":1', b'"v":2')
    entries[0]["entry"] = base64.b64encode(entry).decode()
    report = verify_bundle(dict(bundle, entries=entries), log_key, witnesses, quorum)
    assert not report.ok and "not in the checkpoint's tree" in report.problems[0]


def test_the_hub_never_signs_a_checkpoint_that_its_tree_does_not_extend(database_url, tmp_path):
    async def scenario(exchange, session):
        first = await exchange.checkpointer.checkpoint_now()
        pool = await _pool(exchange)
        # The stored root of the last signed checkpoint no longer matches the tree: signing must stop.
        await pool.execute("UPDATE ledger_checkpoints SET root = $1 WHERE size = $2", bytes(32), first.size)
        await verification(exchange, "HK")
        latest = await exchange.checkpointer.checkpoint_now()
        return first, latest, exchange.checkpointer.rolled_back

    first, latest, stopped = run(database_url, tmp_path, scenario)
    assert latest.size == first.size, "no new checkpoint was signed"
    assert stopped is not None and "does not extend" in stopped


def test_a_database_restored_from_backup_is_caught_by_the_witnesses_and_a_new_origin_recovers(
    database_server, database_url, tmp_path
):
    """docs/protocol.md §13.8 and docs/operations.md "Rollback": the scenario, then the documented recovery."""
    from tests.cli_runner import run_cli

    backup = tmp_path / "ledger.backup"

    async def before_the_failure(exchange, session):
        await verification(exchange, "HK")
        backed_up = await exchange.checkpointer.checkpoint_now()
        made = await asyncio.to_thread(run_cli, "db", "backup", str(backup), "--database-url", database_url)
        assert made.status == 0, made.stderr
        await verification(exchange, "MO")
        return backed_up, await exchange.checkpointer.checkpoint_now()

    backed_up, witnessed = run(database_url, tmp_path, before_the_failure)
    assert witnessed.size > backed_up.size

    with database_server.fresh_database() as restored_url:
        restored = run_cli("db", "restore", str(backup), "--database-url", restored_url)
        assert restored.status == 0, restored.stderr

        async def after_the_restore(exchange, session):
            # The gateway starts on the restored database; its first round meets the witnesses.
            latest = await exchange.checkpointer.checkpoint_now()
            await verification(exchange, "HK")  # the hub still accepts and delivers...
            again = await exchange.checkpointer.checkpoint_now()  # ...but signs nothing for the old origin
            async with session.get(exchange.hub_url + "/metrics") as response:
                metrics = await response.text()
            held = {code: exchange[code].witnessed(exchange.config.origin) for code in ("CN-GD", "HK", "MO")}
            async with (await _pool(exchange)).acquire() as connection:
                note = await checkpoints.hand_over(
                    connection, exchange.config.origin, "127.0.0.1/gba-ledger/2", read_private_key(key_path("hub-checkpoint")), utc_now()
                )
            return latest, again, exchange.checkpointer.rolled_back, metrics, held, note, exchange.log_key()

        latest, again, stopped, metrics, held, handover, old_log_key = run(restored_url, tmp_path, after_the_restore)
        assert latest.size == backed_up.size and again.size == backed_up.size, "no checkpoint signed after the rollback"
        assert stopped is not None and f"holds a tree of {witnessed.size} entries" in stopped
        assert "gateway_checkpoint_signing_stopped 1" in metrics
        assert held == {code: (witnessed.size, witnessed.root) for code in held}, "the witnesses kept the larger tree"

        text = notes.verify_note(handover, old_log_key)
        assert text.startswith("gba-ledger-handover/v1\nold 127.0.0.1/gba-ledger\n") and text.endswith("new 127.0.0.1/gba-ledger/2\n")

        async def under_the_new_origin(exchange, session):
            await verification(exchange, "MO")
            latest = await exchange.checkpointer.checkpoint_now()
            return exchange, latest, await published(exchange, session)

        exchange, latest, note = run(restored_url, tmp_path, under_the_new_origin, origin="127.0.0.1/gba-ledger/2")
        verified = notes.verify_checkpoint(note, exchange.log_key(), exchange.witness_keys(), exchange.config.quorum)
        assert verified.checkpoint.origin == "127.0.0.1/gba-ledger/2" and len(verified.cosigned_by) == 3



def test_a_running_process_stops_signing_when_a_witness_holds_a_checkpoint_the_database_lost(database_url, tmp_path):
    """A process that met the witnesses before a failover to a standby that was behind goes on running: once the new
    ledger outgrows the old, a witness answers 409 with a size smaller than the new checkpoint, but one this database
    never signed. That is a rollback too (docs/operations.md, "Rollback"): signing stops."""

    async def scenario(exchange, session):
        pool = await _pool(exchange)
        origin = exchange.config.origin
        await verification(exchange, "HK")
        kept = await exchange.checkpointer.checkpoint_now()
        await verification(exchange, "MO")
        lost = await exchange.checkpointer.checkpoint_now()  # the witnesses cosign it; then the database loses it
        await pool.execute("DELETE FROM ledger_cosignatures WHERE origin = $1 AND size = $2", origin, lost.size)
        await pool.execute("DELETE FROM ledger_checkpoints WHERE origin = $1 AND size = $2", origin, lost.size)
        for witness in exchange.checkpointer._witnesses:
            await checkpoints.note_witness(pool, witness.name, origin, utc_now(), size=kept.size, root=kept.root)
        await verification(exchange, "HK")  # the ledger grows past the lost checkpoint
        outgrown = await exchange.checkpointer.checkpoint_now()
        await verification(exchange, "MO")
        after = await exchange.checkpointer.checkpoint_now()
        async with session.get(exchange.hub_url + "/metrics") as response:
            metrics = await response.text()
        reported = await checkpoints.rollback_reported(pool, origin)
        return kept, lost, outgrown, after, exchange.checkpointer.rolled_back, reported, metrics

    kept, lost, outgrown, after, stopped, reported, metrics = run(database_url, tmp_path, scenario)
    assert kept.size < lost.size < outgrown.size
    assert stopped is not None and f"holds a checkpoint of {lost.size} entries that this database does not hold" in stopped
    assert reported is not None and "gateway_checkpoint_signing_stopped 1" in metrics
    assert after == outgrown, "nothing signed after the witness told"


def test_a_witness_ahead_with_a_checkpoint_this_database_signed_is_a_race_not_a_rollback(database_url, tmp_path):
    """With several processes, one may bring a witness up to an older checkpoint after another process got a newer
    one cosigned: the witness's 409 names a larger size that this database did sign. Signing must go on."""

    async def scenario(exchange, session):
        await verification(exchange, "HK")
        older = await exchange.checkpointer.checkpoint_now()
        await verification(exchange, "MO")
        newer = await exchange.checkpointer.checkpoint_now()  # the witnesses cosign the larger tree
        # A slower process read the witnesses' records before the newer cosignatures were noted, and brings them up
        # to the older checkpoint it holds: each witness answers 409 with the larger size.
        pool = await _pool(exchange)
        for witness in exchange.checkpointer._witnesses:
            await checkpoints.note_witness(pool, witness.name, exchange.config.origin, utc_now(), size=older.size, root=older.root)
        answered = await exchange.checkpointer._witness_round(older)
        await verification(exchange, "HK")
        after = await exchange.checkpointer.checkpoint_now()
        reported = await checkpoints.rollback_reported(pool, exchange.config.origin)
        return older, newer, answered, after, exchange.checkpointer.rolled_back, reported

    older, newer, answered, after, stopped, reported = run(database_url, tmp_path, scenario)
    assert newer.size > older.size and answered > 0
    assert stopped is None and reported is None, "a witness ahead with a tree this database signed is no rollback"
    assert after.size > newer.size, "signing went on"
