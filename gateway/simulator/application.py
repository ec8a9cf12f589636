"""The simulated jurisdiction's application: its decisions and the messages it writes (docs/simulator.md).

Pure functions over typed values, no I/O: the simulator's reception and flows call
them inside the one sqlite transaction that records their effects, so each message
reaches this application exactly once (PROTO-9.4-3).

- A `referral.submit` is accepted (and, by the rules, closed with an outcome) or
  declined (§6.2-§6.4, §6.7); a `verification.request` is answered with one result per
  requested pair (PROTO-6.9-1), deterministically from the ids or as the rules say.
- Replies to its own flows, withdrawals and cancellations are recorded on the case
  (PROTO-7.4-2: a withdrawal of an unknown case is accepted like any other).
- Every message body is synthetic: the referral and verification templates are the
  shipped schema examples (`schemas/<type>.json`, `examples[0]`) with fresh ids and dates.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Callable, Mapping

from gateway.contract import contract_dir
from gateway.protocol import base64url, jws, strict_json
from gateway.protocol.cases import NONE, Kind, Role, TransitionRefused, kind_of, next_state, opens_case
from gateway.protocol.ids import new_uuid7
from gateway.protocol.keys import PrivateKey
from gateway.protocol.message import Message, sign_message
from gateway.protocol.timestamps import format_timestamp
from gateway.simulator.rules import Rules, check_for_jurisdiction

RECEIPT_LEGAL_BASIS: Mapping[str, str] = {
    "basis": "public_interest",
    "statute": "GBA cross-border social assistance platform: delivery acknowledgement, no personal data",
}
"""The basis on which a receiver processes a delivery's metadata (PROTO-6.11-3)."""


@dataclass(frozen=True, slots=True)
class Profile:
    """What differs between the three simulated jurisdictions: money, schemes, the law they cite."""

    code: str
    currency: str
    scheme: str
    statute: str
    transfer_mechanism: str
    reference_prefix: str


PROFILES: Mapping[str, Profile] = {
    "CN-GD": Profile("CN-GD", "CNY", "DIBAO", "PIPL arts. 13(1)(i), 29, 39; Guangdong Social Assistance Regulations", "gba_standard_contract", "SIM-CNGD"),
    "HK": Profile("HK", "HKD", "HK_CSSA", "PDPO (Cap. 486) DPP3, prescribed consent; GBA Standard Contract (Mainland-HK)", "gba_standard_contract", "SIM-HK"),
    "MO": Profile("MO", "MOP", "MO_IAS_GENERAL", "Lei n.º 8/2005 art. 20(1); Regulamento Administrativo n.º 6/2007", "macao_notification", "SIM-MO"),
}

_MEASURES = {
    "income": "monthly_income",
    "real_estate": "assessed_value",
    "vehicles": "market_value",
    "deposits": "balance",
    "securities": "market_value",
    "business_registration": "registered_capital",
    "social_benefits": "monthly_benefit",
}
"""What a `found` amount measures, per verification item (§6.1)."""


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """A message the application wrote, signed, to be stored and then sent to the hub."""

    id: str
    type: str
    case: str
    compact: bytes

    @property
    def digest(self) -> str:
        return jws.digest(self.compact)


@dataclass(frozen=True, slots=True)
class CaseChange:
    """A case as the application leaves it after one message: created or moved."""

    id: str
    kind: str
    peer: str
    role: str
    state: str
    outcome: str | None


@dataclass(frozen=True, slots=True)
class Decision:
    """The application's effects of one delivered message: the case and the messages it answers with."""

    case: CaseChange
    outgoing: tuple[OutgoingMessage, ...]


class Application:
    """One jurisdiction's business behaviour, signing with its own `message` key."""

    def __init__(self, jurisdiction: str, key: PrivateKey, rules: Rules, clock: Callable[[], datetime]) -> None:
        if jurisdiction not in PROFILES:
            raise ValueError(f"no simulated jurisdiction {jurisdiction!r}; one of {', '.join(PROFILES)}")
        check_for_jurisdiction(rules, jurisdiction)
        self.jurisdiction = jurisdiction
        self.profile = PROFILES[jurisdiction]
        self._key = key
        self._rules = rules
        self._clock = clock

    def renewed(self, compact: bytes) -> tuple[str, bytes]:
        """The content of a message the hub refused as stale and never accepted, as a new message: a new `id` and
        `created` now, signed again (PROTO-8.1-3; never new bytes under the old id, PROTO-8.1-2). (new id, compact)"""
        payload = strict_json.loads(base64url.decode(compact.split(b".")[1]))
        payload["id"] = new_uuid7()
        payload["created"] = format_timestamp(self._clock())
        return payload["id"], sign_message(payload, self._key)

    # --- flows the jurisdiction opens ---

    def open_referral(self, to: str) -> Decision:
        """A new referral case with its `referral.submit` (§6.2), the household of the shipped example."""
        case = new_uuid7()
        body = _example("referral.submit")["body"]
        submit = self._message("referral.submit", to, case, None, "referral", self._legal_basis(case), body)
        return Decision(CaseChange(case, "referral", to, "opener", "submitted", None), (submit,))

    def open_verification(self, to: str) -> Decision:
        """A new verification case with its `verification.request` (§6.8), due in 14 days."""
        case = new_uuid7()
        now = self._clock()
        body = _example("verification.request")["body"]
        body["as_of"] = now.date().isoformat()
        body["respond_by"] = format_timestamp((now + timedelta(days=14)).replace(microsecond=0))
        body["scheme"] = self.profile.scheme
        request = self._message("verification.request", to, case, None, "economic_verification", self._legal_basis(case), body)
        return Decision(CaseChange(case, "verification", to, "opener", "requested", None), (request,))

    # --- deliveries ---

    def receipt(self, *, message_id: str, digest: str, sender: str, case: str, status: str, code: str | None = None) -> OutgoingMessage:
        """The receipt of one delivered message (§6.11, PROTO-9.4-1): `accepted`, or `rejected` with `code`."""
        body: dict[str, Any] = {"message_id": message_id, "message_digest": digest, "status": status}
        if code is not None:
            body["code"] = code
        return self._message("receipt", sender, case, message_id, "delivery_receipt", dict(RECEIPT_LEGAL_BASIS), body)

    def decide(self, message: Message, case: CaseChange | None) -> Decision:
        """The effects of one verified message that is not a receipt, given its case as held (None: unknown)."""
        if message.type == "referral.submit" and case is None:
            return self._answer_referral(message)
        if message.type == "verification.request" and case is None:
            return self._answer_verification(message)
        return Decision(_record(message, case), ())

    def _answer_referral(self, submit: Message) -> Decision:
        case = _opened_by(submit)
        if self._rules.referral_decision == "decline":
            body: dict[str, Any] = {"reason": self._rules.decline_reason}
            if self._rules.decline_reason == "other":
                body["note"] = {"text": "Declined under the simulator's rules.", "lang": "en"}
            decline = self._reply(submit, "referral.decline", submit.id, "referral", body)
            return Decision(_moved(case, "referral.decline", Role.RESPONDER), (decline,))
        accept = self._reply(submit, "referral.accept", submit.id, "referral", self._acceptance(submit))
        case = _moved(case, "referral.accept", Role.RESPONDER)
        outcome = self._rules.close_outcome
        if outcome == "none":
            return Decision(case, (accept,))
        close = self._reply(submit, "referral.close", None, "assistance_feedback", self._closing(submit, outcome))
        return Decision(_moved(case, "referral.close", Role.RESPONDER, outcome), (accept, close))

    def _answer_verification(self, request: Message) -> Decision:
        results = [
            self._result(request, member["ref"], item)
            for member in request.body["members"]
            for item in request.body["items"]
        ]
        response = self._reply(request, "verification.response", request.id, "economic_verification", {"results": results})
        return Decision(_moved(_opened_by(request), "verification.response", Role.RESPONDER), (response,))

    def _acceptance(self, submit: Message) -> dict[str, Any]:
        decide_by = self._clock().date() + timedelta(days=28)
        return {
            "receiver_case_ref": f"{self.profile.reference_prefix}-{_short(submit.case)}",
            "decision_expected_by": decide_by.isoformat(),
        }

    def _closing(self, submit: Message, outcome: str) -> dict[str, Any]:
        if outcome != "granted":
            return {"outcome": outcome}
        start = _first_of_next_month(self._clock().date())
        needs = submit.body.get("needs") or ["minimum_living_allowance"]
        applicant = next(m["ref"] for m in submit.body["household"]["members"] if m["relationship"] == "applicant")
        award = {
            "scheme": self._rules.award_scheme or self.profile.scheme,
            "category": needs[0],
            "beneficiaries": [applicant],
            "amount": {"amount": self._rules.award_amount, "currency": self.profile.currency},
            "period": {"start": start.isoformat(), "frequency": "monthly"},
            "effective": start.isoformat(),
        }
        return {"outcome": "granted", "awards": [award]}

    def _result(self, request: Message, member: str, item: str) -> dict[str, Any]:
        """One verification result (§6.1 *verification_result*), by the rules or from a hash of the ids."""
        seed = int.from_bytes(hashlib.sha256(f"{request.case}/{member}/{item}".encode()).digest()[:8], "big")
        result = self._rules.result_for(item)
        if result == "deterministic":
            result = ("found", "found", "not_found", "not_found", "not_found", "cannot_verify")[seed % 6]
        as_of = request.body["as_of"]
        if result == "not_found":
            return {"member": member, "item": item, "result": "not_found", "as_of": as_of}
        if result == "cannot_verify":
            return {"member": member, "item": item, "result": "cannot_verify", "reason": "source_unavailable"}
        cents = 50_000 + (seed >> 8) % 5_000_000
        money = {"amount": f"{cents // 100}.{cents % 100:02d}", "currency": self.profile.currency}
        return {
            "member": member,
            "item": item,
            "result": "found",
            "as_of": as_of,
            "count": 1 + (seed >> 40) % 3,
            "amounts": [{"measure": _MEASURES[item], "money": money}],
        }

    # --- writing messages ---

    def _reply(self, to: Message, message_type: str, reply_to: str | None, purpose: str, body: dict[str, Any]) -> OutgoingMessage:
        return self._message(message_type, to.sender, to.case, reply_to, purpose, self._legal_basis(to.case, to.legal_basis), body)

    def _legal_basis(self, case: str, theirs: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Consent, under this jurisdiction's law; a reply keeps the opener's consent reference."""
        consent = (theirs or {}).get("consent_ref") or f"{self.profile.reference_prefix}-CONSENT-{_short(case)}"
        return {
            "basis": "consent",
            "statute": self.profile.statute,
            "consent_ref": consent,
            "transfer_mechanism": {"kind": self.profile.transfer_mechanism, "ref": f"{self.profile.reference_prefix}-TM-2026-0001"},
        }

    def _message(
        self, message_type: str, to: str, case: str, reply_to: str | None, purpose: str, legal_basis: dict[str, Any], body: dict[str, Any]
    ) -> OutgoingMessage:
        message_id = new_uuid7()
        payload = {
            "v": 1,
            "id": message_id,
            "type": message_type,
            "from": self.jurisdiction,
            "to": to,
            "case": case,
            "reply_to": reply_to,
            "created": format_timestamp(self._clock()),
            "purpose": purpose,
            "legal_basis": legal_basis,
            "body": body,
        }
        return OutgoingMessage(message_id, message_type, case, sign_message(payload, self._key))


def _opened_by(message: Message) -> CaseChange:
    kind = kind_of(message.type)
    assert kind is not None and opens_case(message.type)
    return _moved(CaseChange(message.case, kind.value, message.sender, "responder", NONE, None), message.type, Role.OPENER)


def _record(message: Message, case: CaseChange | None) -> CaseChange:
    """The case after a message from the other party; an unknown case is created as the message implies."""
    if case is None:
        kind = kind_of(message.type) or Kind.REFERRAL
        sender_opens = message.type in ("referral.withdraw", "verification.cancel", "referral.update")
        role = "responder" if sender_opens else "opener"
        return CaseChange(message.case, kind.value, message.sender, role, _implied_state(message.type), None)
    sender_role = Role.OPENER if case.role == "responder" else Role.RESPONDER
    outcome = message.body.get("outcome") if message.type == "referral.close" else None
    return _moved(case, message.type, sender_role, outcome)


def _moved(case: CaseChange, message_type: str, sender_role: Role, outcome: str | None = None) -> CaseChange:
    """`case` after `message_type` from `sender_role` (§7.3); a refused transition leaves it (the hub decides)."""
    try:
        state = next_state(Kind(case.kind), case.state, message_type, sender_role)
    except (TransitionRefused, ValueError):
        state = case.state
    return CaseChange(case.id, case.kind, case.peer, case.role, state, outcome or case.outcome)


_IMPLIED_STATES = {
    "referral.accept": "accepted",
    "referral.decline": "declined",
    "referral.update": "submitted",
    "referral.withdraw": "withdrawn",
    "referral.close": "closed",
    "verification.response": "answered",
    "verification.cancel": "cancelled",
}


def _implied_state(message_type: str) -> str:
    return _IMPLIED_STATES.get(message_type, NONE)


@functools.cache
def _example_document(message_type: str) -> str:
    document = json.loads((contract_dir("schemas") / f"{message_type}.json").read_text("utf-8"))
    return json.dumps(document["examples"][0])


def _example(message_type: str) -> dict[str, Any]:
    """A fresh copy of the shipped example of `message_type`: the template of a synthetic body."""
    return json.loads(_example_document(message_type))


def _short(identifier: str) -> str:
    return identifier.replace("-", "")[-12:].upper()


def _first_of_next_month(today: date) -> date:
    return (today.replace(day=1) + timedelta(days=32)).replace(day=1)
