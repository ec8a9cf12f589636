"""Key lifecycle end to end (docs/operations.md, "Rotating keys"): a jurisdiction's message key, the hub's
receipt key, the hub's checkpoint key and a witness's key rotate one after the other while messages flow,
each by its documented procedure, and afterwards everything older still verifies.

A real hub, three simulated jurisdictions that are also the witnesses (gateway.demo.exchange) and a real
database. Each phase is one run of the exchange; a restart between phases is what an operator does after
changing a key in the configuration. Macao's system is away from the first rotation to the last, with a
referral from Guangdong waiting in its inbox: it comes back only when every rotated-out key has expired, so
that delivery proves what a late delivery needs (the message judged at its acceptance, the attestation by
the new receipt key judged there too). The registry commands run in a thread: they wait for the running hub
to acknowledge each change.
"""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import timedelta
from pathlib import Path

import aiohttp

from gateway.contract import contract_dir
from gateway.demo.exchange import key_path, running_exchange, witness_name
from gateway.hub.delivery import DeliveryPolicy
from gateway.hub.http import POOL
from gateway.keyfiles import read_private_key
from gateway.ledger import notes
from gateway.ledger.checkpoints import read_handover
from gateway.protocol.statements import verify_hub_receipt
from gateway.protocol.timestamps import format_timestamp, utc_now
from gateway.protocol.trust import load_trust_list, verify_signed_trust_list
from tests.cli_runner import CliResult, run_cli
from tests.hub.harness import query

ALL = {"CN-GD": "pull", "HK": "pull", "MO": "pull"}
MACAO_AWAY = {"CN-GD": "pull", "HK": "pull"}
OLD_ORIGIN = "127.0.0.1/gba-ledger"
NEW_ORIGIN = "127.0.0.1/gba-ledger/2"
SHIPPED = contract_dir("keys") / "test" / "trust-list.json"
AFTER_RETIREMENT = timedelta(days=8)
"""Later than every rotated-out key's end: `keys rotate` retires the old key 7 days after the successor starts."""
FLOW_SECONDS = 30
WAITING_WINDOW = DeliveryPolicy(retry_window_seconds=30 * 86400)
"""The last phase's hub: a retry window longer than AFTER_RETIREMENT, so that the referral Macao left waiting is still
to be delivered eight days on (with the default 72 hours it is a dead letter by then, PROTO-12.4-4)."""


# --- helpers ------------------------------------------------------------------------------


def kid_of(compact: bytes | str) -> str:
    header = compact.split(b"." if isinstance(compact, bytes) else ".")[0]
    return json.loads(base64.urlsafe_b64decode(header + (b"==" if isinstance(header, bytes) else "==")))["kid"]


async def cli(*arguments: str) -> CliResult:
    """`gateway ARGUMENTS...` in a thread, so that the hub in this loop can acknowledge registry changes."""
    return await asyncio.to_thread(run_cli, *arguments)


def new_key(folder: Path, owner: str, use: str, *options: str) -> tuple[Path, Path, dict]:
    """`gateway keys generate`: (private key file, entry file, entry)."""
    made = run_cli("keys", "generate", "--jurisdiction", owner, "--use", use, "--out", str(folder), *options)
    assert made.status == 0, made.stderr
    entry = json.loads(made.stdout)
    entry_file = folder / f"{entry['kid']}.entry.json"
    entry_file.write_text(made.stdout, "utf-8")
    return folder / f"{entry['kid']}.key.jwk", entry_file, entry


def log_vkey(origin: str, key_file: Path) -> str:
    return notes.note_key(origin, read_private_key(key_file).public()).vkey()


def witness_vkey(code: str, key_file: Path) -> str:
    return notes.note_key(witness_name(code), read_private_key(key_file).public(), notes.COSIGNATURE_V1).vkey()


def config_file(
    path: Path, database_url: str, origin: str, checkpoint_key: Path, witness_keys: dict[str, list[Path]],
    previous_log_keys: tuple[str, ...] = (),
) -> Path:
    """A gateway configuration as a verifier or the operator's CLI holds it: `witness_keys` per code, newest first."""
    witnesses = "".join(
        f'[[witnesses]]\njurisdiction = "{code}"\nvkey = "{witness_vkey(code, files[0])}"\n'
        f"previous_vkeys = {json.dumps([witness_vkey(code, file) for file in files[1:]])}\n"
        for code, files in witness_keys.items()
    )
    path.write_text(f"""
mode = "test"
public_base_url = "http://127.0.0.1:8443"
database_url = "{database_url}"
[hub]
receipt_key = "{key_path('hub-receipt')}"
checkpoint_key = "{checkpoint_key}"
trust_list = "{SHIPPED}"
[ledger]
origin = "{origin}"
previous_log_keys = {json.dumps(list(previous_log_keys))}
{witnesses}
[jurisdictions.CN-GD]
[jurisdictions.HK]
[jurisdictions.MO]
[[routes]]
sender = "CN-GD"
receiver = "HK"
types = ["receipt"]
purposes = ["delivery_receipt"]
""", "utf-8")
    return path


async def verification(exchange, sender: str, receiver: str, during=None) -> str:
    """A verification from `sender` to `receiver` through its answer and every receipt; `during` runs while it is in
    flight. Returns the case id."""
    opener = exchange[sender]
    case, _ = await opener.start_verification(receiver)
    if during is not None:
        await during()

    def answered() -> bool:
        view = opener.case(case)
        return view is not None and view.state == "answered" and all(
            (sent := simulator.outgoing(message)) is None or sent.type == "receipt" or sent.receiver_receipt_status
            for simulator in (opener, exchange[receiver]) for message in view.messages
        )

    await exchange.wait_for(answered, FLOW_SECONDS)
    return case


async def published(exchange, session: aiohttp.ClientSession, path: str) -> bytes:
    async with session.get(exchange.hub_url + path) as response:
        assert response.status == 200, path
        return await response.read()


async def witnessed_checkpoint(exchange, session: aiohttp.ClientSession) -> str:
    """Sign a checkpoint now, gather the cosignatures, and return it as `GET /v1/ledger/checkpoint` publishes it."""
    await exchange.checkpointer.checkpoint_now()
    assert exchange.checkpointer.rolled_back is None
    return (await published(exchange, session, "/v1/ledger/checkpoint")).decode("utf-8")


def sent_by(exchange, code: str, case: str) -> list:
    """The messages `code` sent in `case` (not its receipts), as its system holds them."""
    simulator = exchange[code]
    sent = [simulator.outgoing(message) for message in simulator.case(case).messages]
    return [message for message in sent if message is not None and message.type != "receipt"]


def run_phase(scenario, database_url: str, data_dir: Path, delivery: dict[str, str], **options):
    async def main():
        async with (
            running_exchange(database_url, data_dir, delivery, poll_wait_seconds=1, **options) as exchange,
            aiohttp.ClientSession() as session,
        ):
            return await scenario(exchange, session)

    return asyncio.run(main())


# --- the lifecycle ------------------------------------------------------------------------


def test_rotating_all_four_key_kinds_while_messages_flow_keeps_everything_older_verifiable(database_url, tmp_path):
    started = utc_now().replace(microsecond=0) - timedelta(minutes=1)
    keys = tmp_path / "new-keys"
    gd_message, gd_message_entry, gd_message_new = new_key(keys, "CN-GD", "message")
    checkpoint, checkpoint_entry, _ = new_key(keys, "hub", "checkpoint")
    hk_witness, hk_witness_entry, _ = new_key(keys, "HK", "witness")
    old_log_vkey = log_vkey(OLD_ORIGIN, key_path("hub-checkpoint"))
    url = ["--database-url", database_url]

    # 1. Old keys everywhere. Guangdong's message key rotates while a case is in flight. Macao's system stops taking
    #    deliveries in, with a referral waiting. Then the hub's receipt key is made and registered, and every
    #    consumer fetches the list that names it (Macao's trust-list fetch runs on, as PROTO-10.3-6 asks).
    async def old_keys(exchange, session):
        await verification(exchange, "CN-GD", "MO")
        first_checkpoint = await witnessed_checkpoint(exchange, session)

        async def rotate_gd():
            rotated = await cli("keys", "rotate", "test-cn-gd-message-1", "--entry", str(gd_message_entry), *url)
            assert rotated.status == 0, rotated.stderr

        in_flight = await verification(exchange, "CN-GD", "HK", during=rotate_gd)
        await verification(exchange, "HK", "CN-GD")  # the overlap: Guangdong still answers with its old key
        await exchange["MO"].stop()
        _, waiting = await exchange["CN-GD"].start_referral("MO")
        await exchange.wait_for(lambda: exchange["CN-GD"].outgoing(waiting).hub_status == "accepted", FLOW_SECONDS)
        # The hub attests each delivery with its current receipt key, judged at the message's accepted_at
        # (PROTO-9.1-4): the successor must be valid from before the oldest message still to be delivered.
        receipt = new_key(keys, "hub", "receipt", "--not-before", format_timestamp(started))
        rotated = await cli("keys", "rotate", "test-hub-receipt-1", "--entry", str(receipt[1]), *url)
        assert rotated.status == 0, rotated.stderr
        signed_list = await published(exchange, session, "/v1/trust-list")
        held = verify_signed_trust_list(signed_list, load_trust_list(SHIPPED.read_bytes()), utc_now())
        old_signed = [message.compact for message in sent_by(exchange, "CN-GD", in_flight)]
        return first_checkpoint, signed_list, held, receipt, waiting, old_signed

    first_checkpoint, first_list, held, (receipt, _, receipt_new), waiting, old_signed = run_phase(
        old_keys, database_url, tmp_path, ALL)
    assert kid_of(first_list) == "test-hub-receipt-1" and {gd_message_new["kid"], receipt_new["kid"]} <= set(held.keys)
    assert {kid_of(compact) for compact in old_signed} == {"test-cn-gd-message-1"}
    anchors = {code: held for code in ALL}

    # 2. The operator switches the receipt key in the configuration and restarts; Guangdong signs with its new key.
    #    Then the checkpoint key: registered, a last checkpoint under the old origin, the hand-over to a new origin.
    switched = {"CN-GD": gd_message, "hub-receipt": receipt}
    handover_config = config_file(tmp_path / "handover.toml", database_url, OLD_ORIGIN, key_path("hub-checkpoint"),
                                  {code: [key_path(f"witness:{code}")] for code in MACAO_AWAY})

    async def new_receipt_key(exchange, session):
        case = await verification(exchange, "CN-GD", "HK")
        new_material = sent_by(exchange, "CN-GD", case)
        rotated = await cli("keys", "rotate", "test-hub-checkpoint-1", "--entry", str(checkpoint_entry), *url)
        assert rotated.status == 0, rotated.stderr
        last_old_origin = await witnessed_checkpoint(exchange, session)
        handed = await cli("ledger", "new-origin", "--origin", NEW_ORIGIN, "--config", str(handover_config),
                           "--checkpoint-key", str(checkpoint))
        assert handed.status == 0, handed.stderr
        rows = await exchange.app[POOL].fetch("SELECT hub_receipt FROM messages WHERE id = ANY($1::uuid[])",
                                              [message.id for message in new_material])
        assert len(rows) == len(new_material)
        return new_material, [bytes(row["hub_receipt"]) for row in rows], last_old_origin, handed.stdout

    new_material, new_receipts, last_old_origin, handover_output = run_phase(
        new_receipt_key, database_url, tmp_path, MACAO_AWAY, key_files=switched, anchors=anchors)
    assert {kid_of(message.compact) for message in new_material} == {gd_message_new["kid"]}
    assert {kid_of(receipt) for receipt in new_receipts} == {receipt_new["kid"]}
    handover_note = "".join(line for line in handover_output.splitlines(keepends=True) if not line.startswith("{"))
    # Each witness learns the new log's key from the hand-over, checked with the old key it already trusts.
    (tmp_path / "handover.txt").write_text(handover_note, "utf-8")
    learned = run_cli("ledger", "verify", "--handover", str(tmp_path / "handover.txt"), "--log-key", old_log_vkey)
    assert learned.status == 0, learned.stderr
    assert learned.stdout.strip() == log_vkey(NEW_ORIGIN, checkpoint)
    handover = read_handover(handover_note, notes.parse_vkey(old_log_vkey))
    assert (handover.old_origin, handover.new_origin) == (OLD_ORIGIN, NEW_ORIGIN)
    stranger = log_vkey(OLD_ORIGIN, checkpoint)  # the right name, another key: the hand-over proves nothing to it
    assert run_cli("ledger", "verify", "--handover", str(tmp_path / "handover.txt"), "--log-key", stranger).status == 1

    # 3. The new origin with the new checkpoint key; the witnesses witness it beside the old one. Then Hong Kong's
    #    witness key is registered.
    rotated_log = dict(switched, **{"hub-checkpoint": checkpoint})
    earlier_logs = {OLD_ORIGIN: notes.parse_vkey(old_log_vkey)}

    async def new_checkpoint_key(exchange, session):
        await verification(exchange, "HK", "CN-GD")
        note = await witnessed_checkpoint(exchange, session)
        rotated = await cli("keys", "rotate", "test-hk-witness-1", "--entry", str(hk_witness_entry), *url)
        assert rotated.status == 0, rotated.stderr
        return note, exchange.witness_keys()

    first_new_origin, witness_keys_then = run_phase(
        new_checkpoint_key, database_url, tmp_path, MACAO_AWAY, origin=NEW_ORIGIN, key_files=rotated_log,
        earlier_logs=earlier_logs, anchors=anchors)
    verified = notes.verify_checkpoint(first_new_origin, handover.new_key, witness_keys_then, 2)
    assert verified.checkpoint.size >= handover.size, "the new log carries the whole ledger on"

    # 4. Hong Kong's witness cosigns with its new key; verifiers list the old one as a previous key.
    rotated_witness = dict(rotated_log, **{"witness:HK": hk_witness})
    earlier_witnesses = {"HK": [key_path("witness:HK")]}

    async def new_witness_key(exchange, session):
        await verification(exchange, "CN-GD", "HK")
        return await witnessed_checkpoint(exchange, session)

    with_new_witness = run_phase(
        new_witness_key, database_url, tmp_path, MACAO_AWAY, origin=NEW_ORIGIN, key_files=rotated_witness,
        earlier_logs=earlier_logs, earlier_witness_keys=earlier_witnesses, anchors=anchors)
    hk_new = notes.parse_vkey(witness_vkey("HK", hk_witness))
    _, signatures = notes.parse_note(with_new_witness)
    assert [s.key_id for s in signatures if s.name == witness_name("HK")] == [hk_new.key_id]

    # 5. Eight days on: every rotated-out key has expired. Macao comes back and takes in the referral that waited
    #    since before the first rotation; the ledger goes on under the new keys, with all three witnesses.
    def later():
        """The clock of every party in this phase."""
        return utc_now() + AFTER_RETIREMENT

    async def after_every_rotation(exchange, session):
        gd = exchange["CN-GD"]
        await exchange.wait_for(lambda: gd.outgoing(waiting).receiver_receipt_status is not None, FLOW_SECONDS)
        case = await verification(exchange, "CN-GD", "HK")
        latest = await witnessed_checkpoint(exchange, session)
        final_list = await published(exchange, session, "/v1/trust-list")
        return (gd.outgoing(waiting), exchange["MO"].application_deliveries(waiting), sent_by(exchange, "CN-GD", case),
                latest, final_list)

    waited, taken_in, final_material, latest, final_list = run_phase(
        after_every_rotation, database_url, tmp_path, ALL, origin=NEW_ORIGIN, key_files=rotated_witness,
        earlier_logs=earlier_logs, earlier_witness_keys=earlier_witnesses, anchors=anchors, clock=later,
        hub_changes={"delivery": WAITING_WINDOW})
    assert (waited.receiver_receipt_status, taken_in) == ("accepted", 1), "Macao verified the late delivery"
    assert kid_of(waited.compact) == "test-cn-gd-message-1"
    assert {kid_of(message.compact) for message in final_material} == {gd_message_new["kid"]}
    every_witness = [notes.parse_vkey(witness_vkey(code, key_path(f"witness:{code}"))) for code in ("CN-GD", "MO")] + [hk_new]
    assert len(notes.verify_checkpoint(latest, handover.new_key, every_witness, 3).cosigned_by) == 3

    # --- afterwards, everything older still verifies -------------------------------------------------------
    final_config = config_file(
        tmp_path / "verifier.toml", database_url, NEW_ORIGIN, checkpoint,
        {"CN-GD": [key_path("witness:CN-GD")], "HK": [hk_witness, key_path("witness:HK")], "MO": [key_path("witness:MO")]},
        previous_log_keys=(old_log_vkey,),
    )
    intact = run_cli("ledger", "verify", *url)
    assert intact.status == 0, intact.stdout + intact.stderr

    exported = run_cli("ledger", "export", "--as", "auditor", "--out", str(tmp_path / "auditor.json"),
                       "--config", str(final_config))
    assert exported.status == 0, exported.stderr
    bundle = run_cli("ledger", "verify", "--bundle", str(tmp_path / "auditor.json"), "--config", str(final_config))
    assert bundle.status == 0, bundle.stdout + bundle.stderr
    assert f"checkpoint {notes.Checkpoint.parse(notes.parse_note(latest)[0]).size} of {NEW_ORIGIN}" in bundle.stdout
    # An auditor who knows only the old log key follows the hand-over to the new one.
    auditor_witnesses = [witness_vkey("CN-GD", key_path("witness:CN-GD")), witness_vkey("HK", hk_witness),
                         witness_vkey("MO", key_path("witness:MO"))]
    old_key_only = run_cli("ledger", "verify", "--bundle", str(tmp_path / "auditor.json"), "--log-key", old_log_vkey,
                           *[part for vkey in auditor_witnesses for part in ("--witness", vkey)],
                           "--quorum", "2")
    assert old_key_only.status == 0, old_key_only.stdout + old_key_only.stderr
    assert f"handed over from {OLD_ORIGIN}" in old_key_only.stdout
    document = json.loads((tmp_path / "auditor.json").read_text("utf-8"))
    (tmp_path / "no-handover.json").write_text(json.dumps(dict(document, handovers=[])), "utf-8")
    unexplained = run_cli("ledger", "verify", "--bundle", str(tmp_path / "no-handover.json"), "--log-key", old_log_vkey,
                          *[part for vkey in auditor_witnesses for part in ("--witness", vkey)], "--quorum", "2")
    assert unexplained.status == 1 and f"no configured log key for origin '{NEW_ORIGIN}'" in unexplained.stderr

    # Checkpoints signed before each rotation are still trusted tree heads for the verifier who knows the older keys.
    for name, note in (("first", first_checkpoint), ("last-old-origin", last_old_origin),
                       ("first-new-origin", first_new_origin), ("new-witness", with_new_witness)):
        (tmp_path / f"{name}.txt").write_text(note, "utf-8")
        trusted = run_cli("ledger", "verify", "--trusted-checkpoint", str(tmp_path / f"{name}.txt"),
                          "--config", str(final_config), *url)
        assert trusted.status == 0, (name, trusted.stdout + trusted.stderr)
    # Without Hong Kong's earlier witness key, what it cosigned with it no longer counts: Macao was away, so the
    # first checkpoint of the new origin falls below the quorum.
    forgetful = config_file(
        tmp_path / "forgetful.toml", database_url, NEW_ORIGIN, checkpoint,
        {"CN-GD": [key_path("witness:CN-GD")], "HK": [hk_witness], "MO": [key_path("witness:MO")]},
        previous_log_keys=(old_log_vkey,),
    )
    below = run_cli("ledger", "verify", "--trusted-checkpoint", str(tmp_path / "first-new-origin.txt"),
                    "--config", str(forgetful), *url)
    assert below.status == 2 and "want 2" in below.stderr

    # Receivers: the final list installs over the list they held (it names the key that signed it); every hub
    # receipt ever issued verifies against it at its own acceptance time, the old key's and the new key's alike.
    final = verify_signed_trust_list(final_list, held, later())
    assert kid_of(final_list) == receipt_new["kid"]
    receipts = query(database_url, "SELECT hub_receipt FROM messages ORDER BY accepted_at")
    kids = [kid_of(bytes(row["hub_receipt"])) for row in receipts]
    assert kids[0] == "test-hub-receipt-1" and kids[-1] == receipt_new["kid"]
    for row in receipts:
        verify_hub_receipt(bytes(row["hub_receipt"]), final)
    # Auditors: the first signed list still verifies against the shipped anchor at the time it was issued.
    (tmp_path / "first-list.jws").write_bytes(first_list)
    issued = json.loads(base64.urlsafe_b64decode(first_list.split(b".")[1] + b"=="))["issued"]
    old_list = run_cli("trust-list", "verify", "--anchor", str(SHIPPED), "--at", issued, str(tmp_path / "first-list.jws"))
    assert old_list.status == 0, old_list.stderr

    # Auditors: a message signed by the rotated-out key verifies at its acceptance time; signed now, it is refused.
    (tmp_path / "final-list.json").write_text(json.dumps(final.to_document()), "utf-8")
    accepted_at = query(database_url, "SELECT accepted_at FROM messages WHERE id = $1", waited.id)[0]["accepted_at"]
    (tmp_path / "waited.jws").write_bytes(waited.compact)
    audit = run_cli("message", "verify", "--trust", str(tmp_path / "final-list.json"), "--at",
                    format_timestamp(accepted_at), str(tmp_path / "waited.jws"))
    assert audit.status == 0, audit.stderr
    now_signed = run_cli("message", "verify", "--trust", str(tmp_path / "final-list.json"), "--at",
                         format_timestamp(later()), str(tmp_path / "waited.jws"))
    assert now_signed.code == "key-expired"


def test_a_revoked_key_is_refused_from_its_revocation_while_what_it_signed_before_still_verifies(database_url, tmp_path):
    async def scenario(exchange, session):
        hk = exchange["HK"]
        case = await verification(exchange, "HK", "CN-GD")
        revoked = await cli("keys", "revoke", "test-hk-message-1", "--database-url", database_url)
        assert revoked.status == 0, revoked.stderr
        _, after = await hk.start_verification("CN-GD")
        await exchange.wait_for(lambda: hk.outgoing(after).hub_status != "queued", FLOW_SECONDS)
        signed_list = await published(exchange, session, "/v1/trust-list")
        return sent_by(exchange, "HK", case), hk.outgoing(after), signed_list

    before, after, signed_list = run_phase(scenario, database_url, tmp_path, ALL)
    assert (after.hub_status, after.refusal_code) == ("refused", "key-revoked")
    trust = verify_signed_trust_list(signed_list, load_trust_list(SHIPPED.read_bytes()), utc_now())
    (tmp_path / "list.json").write_text(json.dumps(trust.to_document()), "utf-8")
    for message in before:
        accepted_at = query(database_url, "SELECT accepted_at FROM messages WHERE id = $1", message.id)[0]["accepted_at"]
        (tmp_path / "before.jws").write_bytes(message.compact)
        audit = run_cli("message", "verify", "--trust", str(tmp_path / "list.json"), "--at",
                        format_timestamp(accepted_at), str(tmp_path / "before.jws"))
        assert audit.status == 0, audit.stderr
    (tmp_path / "after.jws").write_bytes(after.compact)
    assert run_cli("message", "verify", "--trust", str(tmp_path / "list.json"), str(tmp_path / "after.jws")).code == "key-revoked"
    kinds = [json.loads(row["entry"]) for row in query(database_url, "SELECT entry FROM ledger_entries ORDER BY idx")]
    revocation = next(i for i, entry in enumerate(kinds) if entry["kind"] == "key-revoked")
    assert kinds[revocation]["kid"] == "test-hk-message-1"
    assert any(entry["kind"] == "accepted" and entry["kid"] == "test-hk-message-1" for entry in kinds[:revocation])
    assert not any(entry["kind"] == "accepted" and entry["kid"] == "test-hk-message-1" for entry in kinds[revocation:])
    assert run_cli("ledger", "verify", "--database-url", database_url).status == 0
