"""The story of MISSION.md, told against a running exchange (gateway.demo.exchange).

1. Guangdong refers a household to Hong Kong; Hong Kong accepts and closes it with the outcome.
2. Guangdong asks Hong Kong and Macao to verify a household's economic status; both answer.
3. What the hub refuses: a forged message, a misrouted one, a stale one, and the same id
   with other bytes; and what it answers without accepting twice: an identical resend.
4. The ledger's checkpoint, cosigned by the witnesses; in test mode, the console's test officer.

Every step states what docs/protocol.md requires and what happened; `tell` returns them
all, and the demo passes only if every step ended as required.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

import aiohttp

from gateway.demo.console import TEST_OFFICER, enrol_test_officer
from gateway.demo.exchange import Exchange, key_path
from gateway.hub.http import HUB
from gateway.keyfiles import read_private_key
from gateway.ledger import notes
from gateway.protocol import base64url
from gateway.protocol.ids import new_uuid7
from gateway.protocol.message import sign_message
from gateway.protocol.timestamps import format_timestamp, utc_now

FLOW_SECONDS = 60.0
"""How long a flow may take before the demo says it did not finish (it takes well under a second)."""


@dataclass
class Step:
    label: str
    happened: str
    ok: bool


@dataclass
class Story:
    steps: list[Step] = field(default_factory=list)
    cases: dict[str, str] = field(default_factory=dict)
    """What each flow was (name -> case id)."""

    @property
    def ok(self) -> bool:
        return bool(self.steps) and all(step.ok for step in self.steps)

    def add(self, label: str, happened: str, ok: bool) -> None:
        self.steps.append(Step(label, happened, ok))


async def tell(exchange: Exchange, clock: Callable = utc_now) -> Story:
    story = Story()
    await _referral(exchange, story)
    await _verifications(exchange, story)
    async with aiohttp.ClientSession() as session:
        await _refusals(exchange, story, session, clock)
        await _checkpoint(exchange, story, session)
    if exchange.config.mode == "test":
        await _console(exchange, story)
    return story


async def _console(exchange: Exchange, story: Story) -> None:
    """The compliance officers' console, with the published test officer (test mode only; docs/console.md)."""
    officer = await enrol_test_officer(exchange)
    story.add(
        "The compliance console",
        f"{exchange.hub_url}/console/ — test officer {officer.name} ({officer.role}), password {TEST_OFFICER.password}, "
        f"TOTP secret {TEST_OFFICER.totp_secret} (published test material, test mode only; docs/console.md)",
        True,
    )


async def _checkpoint(exchange: Exchange, story: Story, session: aiohttp.ClientSession) -> None:
    """The hub signs a checkpoint; every jurisdiction witnesses it; a verifier with its own keys checks the quorum."""
    await exchange.checkpointer.checkpoint_now()
    async with session.get(exchange.hub_url + "/v1/ledger/checkpoint") as response:
        note = await response.text()
    try:
        verified = notes.verify_checkpoint(note, exchange.log_key(), exchange.witness_keys(), exchange.config.quorum)
    except (notes.NoteError, notes.CheckpointRefused) as error:
        story.add("The ledger's checkpoint", f"does not verify: {error}", False)
        return
    names = ", ".join(name for name, _ in verified.cosigned_by)
    story.cases["checkpoint"] = f"{verified.checkpoint.size} entries"
    story.add(
        "The ledger's checkpoint",
        f"{verified.checkpoint.size} entries, signed by the hub and cosigned by {names}; "
        f"quorum {exchange.config.quorum} (the jurisdictions that do not run the hub) verified",
        len(verified.cosigned_by) == len(exchange.config.witnesses),
    )


async def _referral(exchange: Exchange, story: Story) -> None:
    gd, hk = exchange["CN-GD"], exchange["HK"]
    case, submit = await gd.start_referral("HK")
    story.cases["referral CN-GD -> HK"] = case

    def closed() -> bool:
        view = gd.case(case)
        return view is not None and view.state == "closed" and _all_receipted(gd, view.messages) and _all_receipted(hk, view.messages)

    try:
        await exchange.wait_for(closed, FLOW_SECONDS)
    except TimeoutError:
        story.add("Referral CN-GD -> HK", f"did not finish within {FLOW_SECONDS:.0f} s (case {case})", False)
        return
    view = gd.case(case)
    sent = gd.outgoing(submit)
    replies = [hk.outgoing(message_id) for message_id in view.messages if hk.outgoing(message_id) is not None]
    said = ", ".join(f"{reply.type} (ledger {reply.ledger_index})" for reply in replies if reply.type != "receipt")
    story.add(
        "Referral CN-GD -> HK",
        f"submitted (ledger {sent.ledger_index}), delivered, receipted by HK; HK answered {said}; outcome {view.outcome}",
        view.outcome is not None,
    )
    _local_views(exchange, story, sent.compact, next((r.compact for r in replies if r.type == "referral.close"), None))


def _local_views(exchange: Exchange, story: Story, submit: bytes, close: bytes | None) -> None:
    """What each receiver's caseworkers read beside the signed original (§9.3): its script, its schemes, its zone."""
    hub = exchange.app[HUB]
    in_hk = hub.local_view("HK", submit)
    sample = in_hk.texts[0].text[:16] if in_hk.texts else "-"
    schemes = ", ".join(sorted({item.name for item in in_hk.schemes})) or "-"
    created = next((item.local for item in in_hk.times if item.at == "/created"), "-")
    story.add(
        "Hong Kong's local view of the referral",
        f"{len(in_hk.texts)} free texts in {in_hk.texts[0].lang if in_hk.texts else '-'} (\u300c{sample}…\u300d, machine-converted), "
        f"needs as HK schemes: {schemes}; sent at {created} Hong Kong time; names as supplied",
        bool(in_hk.texts) and bool(in_hk.schemes),
    )
    if close is not None:
        in_gd = hub.local_view("CN-GD", close)
        awarded = ", ".join(f"{item.code} = {item.name}" for item in in_gd.schemes) or "-"
        story.add("Guangdong's local view of the closure", f"the award's scheme in Simplified Chinese: {awarded}", bool(in_gd.schemes))


def _all_receipted(simulator, message_ids) -> bool:
    """Every non-receipt message this simulator sent in the case has its receiver's receipt."""
    for message_id in message_ids:
        sent = simulator.outgoing(message_id)
        if sent is not None and sent.type != "receipt" and sent.receiver_receipt_status is None:
            return False
    return True


async def _verifications(exchange: Exchange, story: Story) -> None:
    gd = exchange["CN-GD"]
    for peer in ("HK", "MO"):
        case, request = await gd.start_verification(peer)
        story.cases[f"verification CN-GD -> {peer}"] = case

        def answered(case: str = case, peer: str = peer) -> bool:
            view = gd.case(case)
            return view is not None and view.state == "answered" and _all_receipted(gd, view.messages) and _all_receipted(exchange[peer], view.messages)

        try:
            await exchange.wait_for(answered, FLOW_SECONDS)
        except TimeoutError:
            story.add(f"Verification CN-GD -> {peer}", f"not answered within {FLOW_SECONDS:.0f} s (case {case})", False)
            continue
        sent = gd.outgoing(request)
        responses = [m for m in gd.case(case).messages if (o := exchange[peer].outgoing(m)) is not None and o.type == "verification.response"]
        story.add(
            f"Verification CN-GD -> {peer}",
            f"requested (ledger {sent.ledger_index}); {peer} answered item by item "
            f"(ledger {exchange[peer].outgoing(responses[0]).ledger_index}); both sides receipted",
            bool(responses),
        )


async def _refusals(exchange: Exchange, story: Story, session: aiohttp.ClientSession, clock: Callable) -> None:
    gd_key, hk_key = read_private_key(key_path("CN-GD")), read_private_key(key_path("HK"))
    submitted = exchange["CN-GD"].outgoing(exchange["CN-GD"].case(story.cases["referral CN-GD -> HK"]).messages[0])
    original = json.loads(base64url.decode(submitted.compact.split(b".")[1]))

    forged = _tampered(submitted.compact)
    await _expect(story, session, exchange, "A forged copy (one payload byte changed)", forged, "signature-invalid")

    misrouted = dict(original, id=new_uuid7(), case=new_uuid7(), **{"from": "HK", "to": "MO"}, created=format_timestamp(clock()))
    await _expect(story, session, exchange, "A referral HK -> MO, a route the policy does not open", sign_message(misrouted, hk_key), "route-refused")

    answer = await _post(session, exchange, submitted.compact)
    replayed = answer[0] == 202 and answer[1].get("replayed") is True
    story.add(
        "The referral's identical bytes sent again",
        f"answered {answer[0]} with the stored hub receipt (replayed: {answer[1].get('replayed')}), not accepted twice",
        replayed and _ledger_index(answer[1]) == submitted.ledger_index,
    )

    stale = dict(original, id=new_uuid7(), case=new_uuid7(), created=format_timestamp(clock() - timedelta(minutes=10)))
    await _expect(story, session, exchange, "A referral created 10 minutes ago", sign_message(stale, gd_key), "message-stale")

    other_bytes = dict(original, created=format_timestamp(clock()))
    await _expect(story, session, exchange, "The referral's id with other bytes", sign_message(other_bytes, gd_key), "id-conflict")


async def _expect(story: Story, session: aiohttp.ClientSession, exchange: Exchange, label: str, compact: bytes, code: str) -> None:
    status, document = await _post(session, exchange, compact)
    got = document.get("code")
    story.add(label, f"refused {status} {got} ({document.get('requirement')})" if got else f"answered {status}", got == code)


async def _post(session: aiohttp.ClientSession, exchange: Exchange, compact: bytes) -> tuple[int, dict]:
    async with session.post(
        exchange.hub_url + "/v1/messages", data=compact, headers={"Content-Type": "application/jose"}
    ) as response:
        return response.status, json.loads(await response.read())


def _ledger_index(acceptance: dict) -> int | None:
    receipt = acceptance.get("hub_receipt")
    if not isinstance(receipt, str):
        return None
    return json.loads(base64url.decode(receipt.split(".")[1])).get("ledger_index")


def _tampered(compact: bytes) -> bytes:
    header, payload, signature = compact.split(b".")
    raw = bytearray(base64url.decode(payload))
    raw[len(raw) // 2] ^= 0x01  # one bit: no longer what was signed
    return b".".join((header, base64url.encode(bytes(raw)), signature))
