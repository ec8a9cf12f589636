"""What a case's step sends, built from its recipe (docs/conformance.md, "What a case is").

A step names a `template` (a shipped schema example), who sends it (`by`: `self`, `peer`,
`third`), `edits` (JSON Pointer operations whose symbolic values are filled in here), and
references to earlier steps (`case`, `reply_to`, `receipt_of`, `same_id_as`, `resend`).
`CaseRun` holds the parties of one run of a case and what its steps sent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from gateway.conformance import crafting
from gateway.conformance.cases import Case
from gateway.conformance.crafting import NotApplicable, Signer, SigningKey
from gateway.conformance.published_keys import BORROWED_KEY_OWNERS, published_key, signer_for
from gateway.conformance.target import Target
from gateway.contract import contract_dir


JURISDICTIONS = ("CN-GD", "HK", "MO")


def template(message_type: str) -> dict[str, Any]:
    return json.loads((contract_dir("schemas") / f"{message_type}.json").read_text("utf-8"))["examples"][0]


@dataclass
class Sent:
    """What a step sent, for later steps to refer to."""

    id: str = ""
    case: str = ""
    sender: str = ""
    body: bytes = b""
    proof: bytes | None = None
    answer: dict[str, Any] = field(default_factory=dict)
    digest: str = ""
    """Endpoint role: the digest the attestation named (the delivered bytes' digest unless a case breaks it)."""
    delivery: bytes = b""
    """Endpoint role: the delivery object pushed."""
    payload: dict[str, Any] | None = None
    """Hub role: the payload of a message step."""
    lines: list[Sent] = field(default_factory=list)
    """Hub role, a bulk step: what each message line sent (raw lines have none)."""
    recipes: list[dict[str, Any]] = field(default_factory=list)
    """Hub role, a bulk step: the recipe of each line."""


class CaseRun:
    """The parties of one case run and what its steps sent."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.now = datetime.now(timezone.utc)
        third = next(code for code in JURISDICTIONS if code not in (target.jurisdiction, target.peer))
        self.parties = {"self": target.jurisdiction, "peer": target.peer, "third": third}
        self.sent: dict[str, Sent] = {}
        self.readdress_borrowed = True
        """Hub role: a message signed with a borrowed key is its owner's (the endpoint role keeps the sender)."""
        self.payloads: dict[str, dict[str, Any]] = {}

    def key(self, party: str) -> SigningKey:
        code = self.parties[party]
        return self.target.key if code == self.target.jurisdiction else published_key(code)

    def signer(self, party: str) -> Signer:
        return signer_for(self.key(party), self.parties[party])


def build_payload(step: dict[str, Any], context: CaseRun) -> tuple[dict[str, Any], str]:
    """The payload a message step signs and the party that signs it."""
    by = step.get("by", "self")
    sender = context.parties[by]
    receiver = context.parties[step.get("to", "peer" if by != "peer" else "self")]
    owner = BORROWED_KEY_OWNERS.get(step.get("mutation", ""))
    if owner is not None and owner != sender and context.readdress_borrowed:
        # A borrowed key signs: the message is its owner's, so that only the key is at fault.
        sender, receiver = owner, (context.parties["self"] if owner != context.parties["self"] else context.parties["peer"])
    payload = template(step["template"])
    payload.update(id=crafting.new_uuid7(), case=crafting.new_uuid7(), created=crafting.timestamp(context.now), reply_to=None)
    payload["from"], payload["to"] = sender, receiver
    if "case" in step:
        payload["case"] = context.sent[step["case"]].case
    if "reply_to" in step:
        payload["reply_to"] = context.sent[step["reply_to"]].id
    if "receipt_of" in step:
        target = context.sent[step["receipt_of"]]
        payload.update(case=target.case, reply_to=target.id, to=target.sender)
        payload["body"] = dict(payload["body"], message_id=target.id, message_digest=crafting.digest(target.body))
    if "same_id_as" in step:
        earlier = context.sent[step["same_id_as"]]
        payload.update(id=earlier.id, case=earlier.case, created=crafting.timestamp(context.now + timedelta(seconds=1)))
    if isinstance(payload["body"], dict) and "respond_by" in payload["body"]:
        payload["body"]["respond_by"] = crafting.timestamp(context.now + timedelta(days=7))
    if step.get("route") == "refused":
        if context.target.refused_route is None:
            raise NotApplicable("no --refused-route names a route the target refuses")
        receiver, message_type, purpose = context.target.refused_route
        payload = dict(template(message_type), **{k: payload[k] for k in ("id", "case", "created", "reply_to", "from")})
        payload.update(to=receiver, type=message_type, purpose=purpose)
    for edit in step.get("edits", []):
        payload = crafting.apply_edits(payload, [[edit[0], edit[1], *(resolve_value(v, payload, context) for v in edit[2:])]])
    return payload, by


SCHEMES = {"CN-GD": "DIBAO", "HK": "HK_CSSA", "MO": "MO_IAS_GENERAL"}
"""A scheme of each jurisdiction's published list (docs/protocol.md §6.1), for a request the suite's party opens."""


def resolve_value(item: Any, payload: dict[str, Any], context: CaseRun) -> Any:
    """An edit's value with its symbolic form filled in: `$stale`, `$future`, `$past`, `$in:SECONDS` (timestamps), `$party:NAME`,
    `$scheme:NAME`, `$id:STEP` (an earlier step's message id), `$new-id`, `$wrong-digest`, `$copy:POINTER` (a value of this payload)."""
    if not isinstance(item, str) or not item.startswith("$"):
        return item
    if item == "$stale":
        return crafting.stale(context.now)
    if item == "$future":
        return crafting.future(context.now)
    if item == "$past":
        return crafting.timestamp(context.now - timedelta(hours=1))
    if item == "$new-id":
        return crafting.new_uuid7()
    if item == "$wrong-digest":
        return "0" * 64
    kind, _, name = item[1:].partition(":")
    if kind == "in":
        return crafting.timestamp(context.now + timedelta(seconds=float(name)))
    if kind == "party":
        return context.parties[name]
    if kind == "scheme":
        return SCHEMES[context.parties[name]]
    if kind == "id":
        return context.sent[name].id
    if kind == "copy":
        parent, last = crafting.parent_of(payload, name)
        return parent[int(last)] if isinstance(parent, list) else parent[last]
    raise ValueError(f"unknown symbolic value {item!r}")


def speaks_for_others(case: Case, context: CaseRun) -> bool:
    """Whether a step of `case` signs or proves as a jurisdiction other than the suite's own."""
    me = context.parties["self"]
    for step in (item for step in case.steps for item in (step, *step.get("lines", ()))):
        if context.parties[step.get("by", "self")] != me or context.parties[step.get("proof_by", step.get("by", "self"))] != me:
            return True
        owner = BORROWED_KEY_OWNERS.get(step.get("mutation", ""))
        if owner is not None and owner != me:
            return True
    return False


def answer_document(answer: dict[str, Any]) -> Any:
    try:
        return json.loads(answer.get("raw") or b"null")
    except ValueError:
        return None
