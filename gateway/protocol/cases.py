"""The case state machine of protocol v1 (docs/protocol.md §7), as data.

Every message of a case moves the hub's record of that case from one state to the
next, inside the transaction that accepts the message (docs/protocol.md §7.1). This
module holds the whole machine as one table, `TRANSITIONS`, and pure functions over
it: no clock, no I/O. The hub supplies the case's stored state and the time; it
maps the `TransitionRefused` it gets back to a catalogue code (`case-unknown`,
`case-state-conflict`, `deadline-passed`; `case-party-mismatch` comes from `role_of`).

The Markdown tables of §7.3 are the same table; `tests/protocol/test_cases.py`
parses them and fails if the two ever disagree.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from itertools import product


class Kind(enum.Enum):
    """The two kinds of case (§7.2). A case's kind is fixed by its opening message."""

    REFERRAL = "referral"
    VERIFICATION = "verification"


class Role(enum.Enum):
    """A party's role in one case (§7.1): who opened it, or who it was opened with."""

    OPENER = "opener"
    RESPONDER = "responder"


class Refusal(enum.Enum):
    """Why a message cannot move its case; `REFUSAL_CODES` names the code the hub reports."""

    CASE_UNKNOWN = "case_unknown"  # not an opening type, and no such case
    CASE_EXISTS = "case_exists"  # an opening type naming a case that already exists
    WRONG_KIND = "wrong_kind"  # e.g. referral.accept in a verification case
    TERMINAL = "terminal"  # the case is in a terminal state; only receipts remain
    WRONG_STATE = "wrong_state"  # the type is not allowed in this state
    WRONG_ROLE = "wrong_role"  # allowed in this state, but only from the other party
    DEADLINE_PASSED = "deadline_passed"  # a response after `respond_by`


REFUSAL_CODES: dict[Refusal, str] = {
    reason: {
        Refusal.CASE_UNKNOWN: "case-unknown",
        Refusal.DEADLINE_PASSED: "deadline-passed",
    }.get(reason, "case-state-conflict")
    for reason in Refusal
}
"""The catalogue code (docs/protocol.md §11.2) for each refusal (§7.3, PROTO-7.3-1/-2, PROTO-7.5-2)."""


NONE = "none"
"""The pseudo-state of a case id the hub has never accepted an opening message for."""

RECEIPT = "receipt"

REFERRAL_STATES: tuple[str, ...] = (NONE, "submitted", "accepted", "declined", "withdrawn", "closed")
VERIFICATION_STATES: tuple[str, ...] = (NONE, "requested", "answered", "cancelled", "expired")
STATES: dict[Kind, tuple[str, ...]] = {
    Kind.REFERRAL: REFERRAL_STATES,
    Kind.VERIFICATION: VERIFICATION_STATES,
}
TERMINAL_STATES: dict[Kind, frozenset[str]] = {
    Kind.REFERRAL: frozenset({"declined", "withdrawn", "closed"}),
    Kind.VERIFICATION: frozenset({"answered", "cancelled", "expired"}),
}

REFERRAL_TYPES: tuple[str, ...] = (
    "referral.submit",
    "referral.accept",
    "referral.decline",
    "referral.update",
    "referral.withdraw",
    "referral.close",
)
VERIFICATION_TYPES: tuple[str, ...] = (
    "verification.request",
    "verification.response",
    "verification.cancel",
)
MESSAGE_TYPES: tuple[str, ...] = REFERRAL_TYPES + VERIFICATION_TYPES + (RECEIPT,)
"""The ten registered message types of v1 (§6), in the order of §6."""

OPENING_TYPES: dict[str, Kind] = {
    "referral.submit": Kind.REFERRAL,
    "verification.request": Kind.VERIFICATION,
}
"""The types that open a case, and the kind of case each opens (§7.2)."""

_TYPE_KIND: dict[str, Kind] = {
    **{t: Kind.REFERRAL for t in REFERRAL_TYPES},
    **{t: Kind.VERIFICATION for t in VERIFICATION_TYPES},
}


@dataclass(frozen=True, slots=True)
class Transition:
    """One row of §7.3: in `state`, a `message_type` sent by `role` moves the case to `next_state`."""

    kind: Kind
    state: str
    message_type: str
    role: Role
    next_state: str


_row = Transition
_R, _V = Kind.REFERRAL, Kind.VERIFICATION
_OPENER, _RESPONDER = Role.OPENER, Role.RESPONDER

_MESSAGE_ROWS: tuple[Transition, ...] = (
    _row(_R, NONE, "referral.submit", _OPENER, "submitted"),
    _row(_R, "submitted", "referral.accept", _RESPONDER, "accepted"),
    _row(_R, "submitted", "referral.decline", _RESPONDER, "declined"),
    _row(_R, "submitted", "referral.update", _OPENER, "submitted"),
    _row(_R, "submitted", "referral.update", _RESPONDER, "submitted"),
    _row(_R, "accepted", "referral.update", _OPENER, "accepted"),
    _row(_R, "accepted", "referral.update", _RESPONDER, "accepted"),
    _row(_R, "submitted", "referral.withdraw", _OPENER, "withdrawn"),
    _row(_R, "accepted", "referral.withdraw", _OPENER, "withdrawn"),
    _row(_R, "accepted", "referral.close", _RESPONDER, "closed"),
    _row(_V, NONE, "verification.request", _OPENER, "requested"),
    _row(_V, "requested", "verification.response", _RESPONDER, "answered"),
    _row(_V, "requested", "verification.cancel", _OPENER, "cancelled"),
)

# A receipt acknowledges one delivery and never moves its case (§7.6): either party
# may send one in every state of an existing case, terminal states included, because
# the message that ended the case is itself delivered and acknowledged afterwards.
_RECEIPT_ROWS: tuple[Transition, ...] = tuple(
    _row(kind, state, RECEIPT, role, state)
    for kind in Kind
    for state in STATES[kind]
    if state != NONE
    for role in Role
)

TRANSITIONS: tuple[Transition, ...] = _MESSAGE_ROWS + _RECEIPT_ROWS
"""The whole machine: every legal (kind, state, type, role); anything else is refused."""

DEADLINE_TRANSITIONS: dict[Kind, dict[str, str]] = {
    Kind.VERIFICATION: {"requested": "expired"},
}
"""Moves made by the hub's clock, not by a message (§7.5): `respond_by` passed unanswered."""


def _index(rows: tuple[Transition, ...]) -> dict[tuple[Kind, str, str, Role], str]:
    table: dict[tuple[Kind, str, str, Role], str] = {}
    for row in rows:
        key = (row.kind, row.state, row.message_type, row.role)
        if key in table:
            raise ValueError(f"duplicate transition {key}")
        table[key] = row.next_state
    return table


_TABLE = _index(TRANSITIONS)

PURPOSE_SENDERS: dict[tuple[str, str], frozenset[Role]] = {
    ("referral.update", "assistance_feedback"): frozenset({Role.RESPONDER}),
}
"""(type, purpose) pairs that only some roles may send (PROTO-6.5-2); others are open to the table's roles."""


class TransitionRefused(ValueError):
    """A message that the case's current state does not allow (§7.3).

    `reason` says why, so that the hub can choose the catalogue code; the message
    names the kind, state, type and role, which are all our own vocabulary, never
    free input.
    """

    def __init__(self, reason: Refusal, kind: Kind, state: str, message_type: str, role: Role) -> None:
        self.reason = reason
        self.kind = kind
        self.state = state
        self.message_type = message_type
        self.role = role
        super().__init__(
            f"{reason.value}: {message_type} from the {role.value} of a {kind.value} case in state {state}"
        )


class DeadlinePassed(TransitionRefused):
    """A `verification.response` after the request's `respond_by` (§7.5)."""


def kind_of(message_type: str) -> Kind | None:
    """The case kind a type belongs to; None for `receipt`, which belongs to both.

    Requires `message_type` to be one of `MESSAGE_TYPES`.
    """
    if message_type == RECEIPT:
        return None
    try:
        return _TYPE_KIND[message_type]
    except KeyError:
        raise ValueError(f"unregistered message type {message_type!r}") from None


def opens_case(message_type: str) -> bool:
    """True for the two types that open a case: `referral.submit`, `verification.request`."""
    return message_type in OPENING_TYPES


def senders(kind: Kind, message_type: str) -> frozenset[Role]:
    """The roles that may send `message_type` in some state of a `kind` case."""
    return frozenset(t.role for t in TRANSITIONS if t.kind is kind and t.message_type == message_type)


def is_terminal(kind: Kind, state: str) -> bool:
    """True once only receipts can follow (§7.2)."""
    return state in TERMINAL_STATES[kind]


def role_of(opener: str, responder: str, sender: str, receiver: str) -> Role:
    """The role of `sender` in a case between `opener` and `responder` (§7.1).

    Raises ValueError when the message is not between the case's two parties; the
    hub refuses it with `case-party-mismatch`.
    """
    if (sender, receiver) == (opener, responder):
        return Role.OPENER
    if (sender, receiver) == (responder, opener):
        return Role.RESPONDER
    raise ValueError("the message is not between the two parties of its case")


def next_state(kind: Kind, state: str, message_type: str, role: Role, purpose: str | None = None) -> str:
    """The state a `kind` case in `state` moves to when `role` sends `message_type` (§7.3).

    For a case id the hub does not know, pass `state=NONE`, the kind the type opens
    (`OPENING_TYPES`) and `Role.OPENER`: the sender of an opening message is the opener.
    With `purpose`, also apply `PURPOSE_SENDERS` (PROTO-6.5-2). Raises
    `TransitionRefused` (or its subclass `DeadlinePassed`) for every combination that
    is not a row of `TRANSITIONS`; raises ValueError for a kind, state or type that
    does not exist at all.
    """
    if state not in STATES[kind]:
        raise ValueError(f"{state!r} is not a state of a {kind.value} case")
    if message_type not in MESSAGE_TYPES:
        raise ValueError(f"unregistered message type {message_type!r}")
    found = _TABLE.get((kind, state, message_type, role))
    if found is None:
        raise _refusal(kind, state, message_type, role)
    if role not in PURPOSE_SENDERS.get((message_type, purpose or ""), frozenset(Role)):
        raise TransitionRefused(Refusal.WRONG_ROLE, kind, state, message_type, role)
    return found


def _refusal(kind: Kind, state: str, message_type: str, role: Role) -> TransitionRefused:
    type_kind = kind_of(message_type)
    if state == NONE:
        if not opens_case(message_type):
            return TransitionRefused(Refusal.CASE_UNKNOWN, kind, state, message_type, role)
        if type_kind is not kind:
            return TransitionRefused(Refusal.WRONG_KIND, kind, state, message_type, role)
        return TransitionRefused(Refusal.WRONG_ROLE, kind, state, message_type, role)
    if type_kind is not None and type_kind is not kind:
        return TransitionRefused(Refusal.WRONG_KIND, kind, state, message_type, role)
    if opens_case(message_type):
        return TransitionRefused(Refusal.CASE_EXISTS, kind, state, message_type, role)
    if kind is Kind.VERIFICATION and message_type == "verification.response" and state == "expired":
        return DeadlinePassed(Refusal.DEADLINE_PASSED, kind, state, message_type, role)
    if is_terminal(kind, state):
        return TransitionRefused(Refusal.TERMINAL, kind, state, message_type, role)
    other = Role.RESPONDER if role is Role.OPENER else Role.OPENER
    if (kind, state, message_type, other) in _TABLE:
        return TransitionRefused(Refusal.WRONG_ROLE, kind, state, message_type, role)
    return TransitionRefused(Refusal.WRONG_STATE, kind, state, message_type, role)


def deadline_passed(respond_by: datetime, at: datetime) -> bool:
    """True when `at` (the hub's time of ingress) is later than `respond_by` (§7.5).

    A response accepted at exactly `respond_by` is on time. Requires both datetimes
    to be timezone-aware.
    """
    if respond_by.tzinfo is None or at.tzinfo is None:
        raise ValueError("respond_by and at must be timezone-aware")
    return at > respond_by


def effective_state(kind: Kind, state: str, respond_by: datetime | None, at: datetime) -> str:
    """The state to apply a message to at time `at`: `state`, or `expired` once `respond_by` has passed (§7.5).

    The hub stores a verification case as `requested` until its sweeper (or the
    first message after the deadline) records the move; this function makes that
    move visible to `next_state` without waiting for the sweeper. `respond_by` is
    the deadline of the case's `verification.request`, None for referral cases.
    """
    moves = DEADLINE_TRANSITIONS.get(kind, {})
    if state in moves and respond_by is not None and deadline_passed(respond_by, at):
        return moves[state]
    return state


def all_combinations() -> list[tuple[Kind, str, str, Role]]:
    """Every (kind, state, type, role) there is: the domain the table of §7.3 partitions."""
    return [
        (kind, state, message_type, role)
        for kind in Kind
        for state, message_type, role in product(STATES[kind], MESSAGE_TYPES, Role)
    ]
