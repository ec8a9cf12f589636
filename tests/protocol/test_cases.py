"""The case state machine (docs/protocol.md §7).

Two kinds of test: the table itself (every combination of kind, state, type and
sender role is either a row with its next state, or refused), and the spec (the
Markdown tables of §7.3 and §7.5 say exactly what the Python table says).
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from gateway.protocol import cases
from gateway.protocol.errors import CATALOGUE
from gateway.protocol.cases import (
    DEADLINE_TRANSITIONS,
    MESSAGE_TYPES,
    NONE,
    OPENING_TYPES,
    RECEIPT,
    STATES,
    TRANSITIONS,
    DeadlinePassed,
    Kind,
    Refusal,
    Role,
    TransitionRefused,
    next_state,
)

SPEC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
REFUSED = "—"
LEGAL = {(t.kind, t.state, t.message_type, t.role): t.next_state for t in TRANSITIONS}
T0 = datetime(2026, 11, 28, 9, 30, tzinfo=timezone.utc)


# --- reading the spec -------------------------------------------------------------


def _section(text: str, number: str) -> str:
    """The body of `### <number> ...` up to the next heading of level 2 or 3."""
    match = re.search(rf"^### {re.escape(number)} .*?$(.*?)(?=^##+ |\Z)", text, re.M | re.S)
    assert match, f"docs/protocol.md has no section {number}"
    return match.group(1)


def _tables(section: str) -> list[list[list[str]]]:
    """Every Markdown table in `section`: rows of cells, header first, separator dropped."""
    tables: list[list[list[str]]] = []
    current: list[list[str]] = []
    for line in section.splitlines() + [""]:
        if line.startswith("|"):
            cells = [cell.strip().strip("`").strip() for cell in line.strip().strip("|").split("|")]
            if not all(re.fullmatch(r":?-+:?", cell) for cell in cells):
                current.append(cells)
        elif current:
            tables.append(current)
            current = []
    return tables


def _spec_transitions() -> dict[tuple[Kind, str, str, Role], str | None]:
    """The §7.3 matrices as (kind, state, type, role) -> next state, or None where refused."""
    found: dict[tuple[Kind, str, str, Role], str | None] = {}
    kinds_seen: list[Kind] = []
    for table in _tables(_section(SPEC.read_text(encoding="utf-8"), "7.3")):
        header, rows = table[0], table[1:]
        assert header[:2] == ["message type", "sender"], f"unexpected §7.3 table header {header}"
        states = header[2:]
        kind = next((k for k in Kind if tuple(states) == STATES[k]), None)
        assert kind is not None, f"§7.3 table columns {states} are not the states of one kind, in order"
        kinds_seen.append(kind)
        for message_type, role_name, *cells in rows:
            assert len(cells) == len(states), f"§7.3 row {message_type}/{role_name} has {len(cells)} cells"
            for state, cell in zip(states, cells):
                key = (kind, state, message_type, Role(role_name))
                assert key not in found, f"§7.3 lists {key} twice"
                found[key] = None if cell == REFUSED else cell
    assert sorted(k.value for k in kinds_seen) == sorted(k.value for k in Kind)
    return found


def _types_of(kind: Kind) -> tuple[str, ...]:
    return tuple(t for t in MESSAGE_TYPES if cases.kind_of(t) in (kind, None))


# --- the spec and the table are one ------------------------------------------------


def test_spec_tables_match_the_python_table_exactly() -> None:
    spec = _spec_transitions()
    python = {
        (kind, state, message_type, role): LEGAL.get((kind, state, message_type, role))
        for kind in Kind
        for state in STATES[kind]
        for message_type in _types_of(kind)
        for role in Role
    }
    assert spec == python


def test_spec_tables_have_a_cell_for_every_state_type_and_sender() -> None:
    spec = _spec_transitions()
    for kind in Kind:
        for state in STATES[kind]:
            for message_type in _types_of(kind):
                for role in Role:
                    assert (kind, state, message_type, role) in spec


def test_spec_deadline_table_matches_the_python_table() -> None:
    (table,) = _tables(_section(SPEC.read_text(encoding="utf-8"), "7.5"))
    header, rows = table[0], table[1:]
    assert header == ["kind", "event", "from state", "to state"]
    spec = {(Kind(kind), from_state): to_state for kind, _event, from_state, to_state in rows}
    python = {(kind, s): t for kind, moves in DEADLINE_TRANSITIONS.items() for s, t in moves.items()}
    assert spec == python


# --- every combination is a row or refused ----------------------------------------


@pytest.mark.parametrize(
    ("kind", "state", "message_type", "role"),
    cases.all_combinations(),
    ids=lambda v: v.value if isinstance(v, (Kind, Role)) else str(v),
)
def test_every_combination_is_a_listed_transition_or_refused(
    kind: Kind, state: str, message_type: str, role: Role
) -> None:
    expected = LEGAL.get((kind, state, message_type, role))
    if expected is None:
        with pytest.raises(TransitionRefused):
            next_state(kind, state, message_type, role)
    else:
        assert next_state(kind, state, message_type, role) == expected


def test_every_row_names_states_and_types_that_exist() -> None:
    for row in TRANSITIONS:
        assert row.state in STATES[row.kind] and row.next_state in STATES[row.kind]
        assert row.message_type in MESSAGE_TYPES
        assert cases.kind_of(row.message_type) in (row.kind, None)


def test_no_transition_leads_back_to_none() -> None:
    assert all(row.next_state != NONE for row in TRANSITIONS)


def test_every_state_is_reachable_from_none() -> None:
    for kind in Kind:
        reached, frontier = {NONE}, [NONE]
        while frontier:
            state = frontier.pop()
            for row in TRANSITIONS:
                if row.kind is kind and row.state == state and row.next_state not in reached:
                    reached.add(row.next_state)
                    frontier.append(row.next_state)
            for source, target in DEADLINE_TRANSITIONS.get(kind, {}).items():
                if source == state and target not in reached:
                    reached.add(target)
                    frontier.append(target)
        assert reached == set(STATES[kind])


def test_every_open_state_has_a_way_out_and_no_terminal_state_has_one() -> None:
    for kind in Kind:
        for state in STATES[kind]:
            exits = {
                row.next_state
                for row in TRANSITIONS
                if row.kind is kind and row.state == state and row.next_state != state
            }
            if cases.is_terminal(kind, state):
                assert exits == set(), f"terminal {kind.value}/{state} has exits {exits}"
            else:
                assert exits, f"{kind.value}/{state} is a dead end"


# --- the rules of §7, one by one ----------------------------------------------------


def test_the_machine_knows_exactly_the_types_of_the_envelope_schema() -> None:
    envelope = json.loads((SPEC.parents[1] / "schemas" / "envelope.json").read_text(encoding="utf-8"))
    assert tuple(envelope["properties"]["type"]["enum"]) == MESSAGE_TYPES


def test_only_the_two_opening_types_open_a_case() -> None:
    assert {t for t in MESSAGE_TYPES if cases.opens_case(t)} == {"referral.submit", "verification.request"}
    assert OPENING_TYPES == {"referral.submit": Kind.REFERRAL, "verification.request": Kind.VERIFICATION}


def test_a_message_that_does_not_open_a_case_needs_an_existing_case() -> None:
    for kind in Kind:
        for message_type in MESSAGE_TYPES:
            if cases.opens_case(message_type):
                continue
            with pytest.raises(TransitionRefused) as refused:
                next_state(kind, NONE, message_type, Role.OPENER)
            assert refused.value.reason is Refusal.CASE_UNKNOWN


def test_opening_an_existing_case_again_is_refused() -> None:
    with pytest.raises(TransitionRefused) as refused:
        next_state(Kind.REFERRAL, "submitted", "referral.submit", Role.OPENER)
    assert refused.value.reason is Refusal.CASE_EXISTS


def test_a_type_of_the_other_kind_is_refused_in_every_state() -> None:
    for kind in Kind:
        for state in STATES[kind]:
            for message_type in MESSAGE_TYPES:
                if cases.kind_of(message_type) in (kind, None):
                    continue
                for role in Role:
                    with pytest.raises(TransitionRefused) as refused:
                        next_state(kind, state, message_type, role)
                    expected = Refusal.CASE_UNKNOWN if state == NONE and not cases.opens_case(message_type) else Refusal.WRONG_KIND
                    assert refused.value.reason is expected


def test_the_responder_cannot_accept_its_own_referral_from_the_wrong_side() -> None:
    with pytest.raises(TransitionRefused) as refused:
        next_state(Kind.REFERRAL, "submitted", "referral.accept", Role.OPENER)
    assert refused.value.reason is Refusal.WRONG_ROLE


def test_a_referral_is_closed_only_after_it_was_accepted() -> None:
    with pytest.raises(TransitionRefused) as refused:
        next_state(Kind.REFERRAL, "submitted", "referral.close", Role.RESPONDER)
    assert refused.value.reason is Refusal.WRONG_STATE
    assert next_state(Kind.REFERRAL, "accepted", "referral.close", Role.RESPONDER) == "closed"


def test_withdrawal_ends_an_open_referral_from_either_open_state() -> None:
    for state in ("submitted", "accepted"):
        assert next_state(Kind.REFERRAL, state, "referral.withdraw", Role.OPENER) == "withdrawn"


def test_terminal_states_accept_only_receipts() -> None:
    for kind in Kind:
        for state in cases.TERMINAL_STATES[kind]:
            for message_type in MESSAGE_TYPES:
                for role in Role:
                    if message_type == RECEIPT:
                        assert next_state(kind, state, message_type, role) == state
                    else:
                        with pytest.raises(TransitionRefused):
                            next_state(kind, state, message_type, role)


def test_a_receipt_never_moves_a_case() -> None:
    for row in TRANSITIONS:
        if row.message_type == RECEIPT:
            assert row.next_state == row.state
    for kind in Kind:
        assert cases.senders(kind, RECEIPT) == frozenset(Role)


def test_senders_of_each_type() -> None:
    opener, responder = frozenset({Role.OPENER}), frozenset({Role.RESPONDER})
    assert cases.senders(Kind.REFERRAL, "referral.submit") == opener
    assert cases.senders(Kind.REFERRAL, "referral.accept") == responder
    assert cases.senders(Kind.REFERRAL, "referral.decline") == responder
    assert cases.senders(Kind.REFERRAL, "referral.update") == frozenset(Role)
    assert cases.senders(Kind.REFERRAL, "referral.withdraw") == opener
    assert cases.senders(Kind.REFERRAL, "referral.close") == responder
    assert cases.senders(Kind.VERIFICATION, "verification.request") == opener
    assert cases.senders(Kind.VERIFICATION, "verification.response") == responder
    assert cases.senders(Kind.VERIFICATION, "verification.cancel") == opener


def test_assistance_feedback_updates_come_only_from_the_responder() -> None:
    for state in ("submitted", "accepted"):
        assert next_state(Kind.REFERRAL, state, "referral.update", Role.RESPONDER, "assistance_feedback") == state
        assert next_state(Kind.REFERRAL, state, "referral.update", Role.OPENER, "referral") == state
        with pytest.raises(TransitionRefused) as refused:
            next_state(Kind.REFERRAL, state, "referral.update", Role.OPENER, "assistance_feedback")
        assert refused.value.reason is Refusal.WRONG_ROLE


def test_role_of_names_the_opener_and_the_responder() -> None:
    assert cases.role_of("CN-GD", "HK", "CN-GD", "HK") is Role.OPENER
    assert cases.role_of("CN-GD", "HK", "HK", "CN-GD") is Role.RESPONDER


def test_a_message_between_other_parties_has_no_role_in_the_case() -> None:
    for sender, receiver in (("MO", "HK"), ("CN-GD", "MO"), ("HK", "HK")):
        with pytest.raises(ValueError):
            cases.role_of("CN-GD", "HK", sender, receiver)


def test_a_response_at_exactly_respond_by_is_on_time() -> None:
    assert not cases.deadline_passed(T0, T0)
    assert cases.deadline_passed(T0, T0 + timedelta(microseconds=1))


def test_a_request_past_its_deadline_is_expired() -> None:
    before, after = T0 - timedelta(seconds=1), T0 + timedelta(seconds=1)
    assert cases.effective_state(Kind.VERIFICATION, "requested", T0, before) == "requested"
    assert cases.effective_state(Kind.VERIFICATION, "requested", T0, after) == "expired"
    assert cases.effective_state(Kind.VERIFICATION, "answered", T0, after) == "answered"
    assert cases.effective_state(Kind.REFERRAL, "accepted", None, after) == "accepted"


def test_a_response_after_the_deadline_is_refused_as_deadline_passed() -> None:
    state = cases.effective_state(Kind.VERIFICATION, "requested", T0, T0 + timedelta(seconds=1))
    with pytest.raises(DeadlinePassed) as refused:
        next_state(Kind.VERIFICATION, state, "verification.response", Role.RESPONDER)
    assert refused.value.reason is Refusal.DEADLINE_PASSED


def test_a_request_cannot_be_cancelled_after_its_deadline() -> None:
    with pytest.raises(TransitionRefused) as refused:
        next_state(Kind.VERIFICATION, "expired", "verification.cancel", Role.OPENER)
    assert refused.value.reason is Refusal.TERMINAL


def test_deadline_comparison_needs_aware_datetimes() -> None:
    with pytest.raises(ValueError):
        cases.deadline_passed(T0.replace(tzinfo=None), T0)


def test_states_and_types_that_do_not_exist_are_errors_not_refusals() -> None:
    with pytest.raises(ValueError) as unknown_state:
        next_state(Kind.REFERRAL, "requested", "referral.update", Role.OPENER)
    assert not isinstance(unknown_state.value, TransitionRefused)
    with pytest.raises(ValueError) as unknown_type:
        next_state(Kind.REFERRAL, "submitted", "referral.reopen", Role.OPENER)
    assert not isinstance(unknown_type.value, TransitionRefused)


def test_a_refusal_names_only_our_own_vocabulary() -> None:
    with pytest.raises(TransitionRefused) as refused:
        next_state(Kind.REFERRAL, "closed", "referral.update", Role.OPENER)
    assert str(refused.value) == "terminal: referral.update from the opener of a referral case in state closed"


def test_refusal_codes_are_the_three_case_codes_of_the_catalogue() -> None:
    assert cases.REFUSAL_CODES[Refusal.CASE_UNKNOWN] == "case-unknown"
    assert cases.REFUSAL_CODES[Refusal.DEADLINE_PASSED] == "deadline-passed"
    others = set(Refusal) - {Refusal.CASE_UNKNOWN, Refusal.DEADLINE_PASSED}
    assert {cases.REFUSAL_CODES[reason] for reason in others} == {"case-state-conflict"}
    catalogue = _section(SPEC.read_text(encoding="utf-8"), "11.2")
    for code in set(cases.REFUSAL_CODES.values()):
        assert code in CATALOGUE
        assert f"| `{code}` |" in catalogue
