"""Case transitions and `reply_to` checks inside the accepting transaction (docs/protocol.md §5.2, §7).

The state machine itself is `gateway.protocol.cases` (pure); this module asks the
machine about the case row the batch's lookup locked and says what to write (gateway/hub/store.py
reads and writes). Locking the row
(`SELECT ... FOR UPDATE`) makes racing messages of one case take turns, in any
number of processes: of an accept and a decline racing, exactly one wins.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from gateway.hub import store
from gateway.protocol import cases as machine
from gateway.protocol.errors import ProtocolError
from gateway.protocol.message import Message
from gateway.protocol.timestamps import parse_timestamp

_REPLY_TYPES = {
    "referral.accept": "referral.submit",
    "referral.decline": "referral.submit",
    "verification.response": "verification.request",
}
"""Types whose `reply_to` must name a message of one given type (§5.2)."""


@dataclass(frozen=True, slots=True)
class CaseWrite:
    """What accepting a message writes to its case: `open` a new one (with `kind`, `respond_by`) or `move` it to `state`."""

    action: str
    state: str
    kind: str = ""
    respond_by: datetime | None = None


def decide(message: Message, row: store.CaseRow | None, replied: store.RepliedMessage | None, now: datetime) -> CaseWrite | None:
    """The case write the message makes (§7), after its `reply_to` checks (§5.2), or raise ProtocolError.

    `row` is the case as locked for this batch (None: no such case) and `replied` the message `reply_to` names
    (None: none, or no `reply_to`); both were read in the batch's one lookup (gateway/hub/store.py). Nothing is
    written here: a refusal leaves the case as it was. A receipt leaves the case where it is (§7.6): None.
    """
    if row is None:
        return _open(message, now)
    kind = machine.Kind(row.kind)
    try:
        role = machine.role_of(row.opener, row.responder, message.sender, message.receiver)
    except ValueError:
        raise ProtocolError("case-party-mismatch", where="/case") from None
    if message.type == machine.RECEIPT:
        _check_reply_to(message, replied)
        return None
    state = machine.effective_state(kind, row.state, row.respond_by, now)
    try:
        following = machine.next_state(kind, state, message.type, role, message.purpose)
    except machine.TransitionRefused as refused:
        raise ProtocolError(machine.REFUSAL_CODES[refused.reason], where="/type") from None
    _check_reply_to(message, replied)
    return CaseWrite("move", following)


def _open(message: Message, now: datetime) -> CaseWrite:
    kind = machine.OPENING_TYPES.get(message.type)
    if kind is None:
        raise ProtocolError("case-unknown", where="/case")
    respond_by = None
    if message.type == "verification.request":
        respond_by = parse_timestamp(message.body["respond_by"])
        if machine.deadline_passed(respond_by, now):
            raise ProtocolError("deadline-passed", where="/body/respond_by")
    state = machine.next_state(kind, machine.NONE, message.type, machine.Role.OPENER, message.purpose)
    return CaseWrite("open", state, kind.value, respond_by)


def _check_reply_to(message: Message, replied: store.RepliedMessage | None) -> None:
    if message.reply_to is None:
        return
    is_receipt = message.type == machine.RECEIPT
    code = "receipt-target-invalid" if is_receipt else "reply-to-invalid"
    if replied is None:
        raise ProtocolError(code, where="/reply_to")
    if replied.case != message.case or replied.receiver != message.sender:
        raise ProtocolError(code, where="/reply_to")
    # A receipt ends a delivery (§12.4): never of a receipt, and one per message — a
    # second receipt with other bytes cannot replace the first (identical bytes are a resend, §8.2).
    if is_receipt and (replied.type == machine.RECEIPT or replied.receipted):
        raise ProtocolError("receipt-target-invalid", where="/reply_to")
    # A receipt acknowledges exact bytes (PROTO-6.11-1): the digest it names must be the delivered message's.
    if is_receipt and message.body.get("message_digest") != replied.digest:
        raise ProtocolError("receipt-target-invalid", where="/body/message_digest")
    expected = _REPLY_TYPES.get(message.type)
    if expected is not None and replied.type != expected:
        raise ProtocolError("reply-to-invalid", where="/reply_to")
