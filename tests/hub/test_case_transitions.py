"""Every case transition of docs/protocol.md §7.3, generated from the table and sent over HTTP.

For each kind, state, message type and sending role, the test drives a fresh case into
the state with real messages, sends the message, and compares the hub's answer with
what `gateway.protocol.cases` (the table) says: accepted, or refused with the code
`REFUSAL_CODES` names.
"""

from __future__ import annotations

from datetime import timedelta

from gateway.protocol import cases as machine
from gateway.protocol.ids import new_uuid7
from gateway.protocol.message import sign_message
from tests.hub.harness import Clock, case_message, running_hub

PARTIES = {machine.Role.OPENER: ("CN-GD", "HK"), machine.Role.RESPONDER: ("HK", "CN-GD")}
KEYS = {"CN-GD": "test-cn-gd-message-1", "HK": "test-hk-message-1"}
OPENER, RESPONDER = machine.Role.OPENER, machine.Role.RESPONDER

SETUP = {
    (machine.Kind.REFERRAL, "submitted"): [("referral.submit", OPENER)],
    (machine.Kind.REFERRAL, "accepted"): [("referral.submit", OPENER), ("referral.accept", RESPONDER)],
    (machine.Kind.REFERRAL, "declined"): [("referral.submit", OPENER), ("referral.decline", RESPONDER)],
    (machine.Kind.REFERRAL, "withdrawn"): [("referral.submit", OPENER), ("referral.withdraw", OPENER)],
    (machine.Kind.REFERRAL, "closed"): [("referral.submit", OPENER), ("referral.accept", RESPONDER), ("referral.close", RESPONDER)],
    (machine.Kind.VERIFICATION, "requested"): [("verification.request", OPENER)],
    (machine.Kind.VERIFICATION, "answered"): [("verification.request", OPENER), ("verification.response", RESPONDER)],
    (machine.Kind.VERIFICATION, "cancelled"): [("verification.request", OPENER), ("verification.cancel", OPENER)],
    (machine.Kind.VERIFICATION, "expired"): [("verification.request", OPENER)],
}


class CaseDriver:
    """Builds and sends the messages of one case, remembering what was sent to whom."""

    def __init__(self, hub, clock, example, test_key) -> None:
        self.hub, self.clock, self.example, self.test_key = hub, clock, example, test_key
        self.case = new_uuid7()
        self.sent: list[tuple[str, str, str, bytes]] = []  # (id, type, receiver, compact)

    def message(self, message_type: str, role: machine.Role) -> bytes:
        sender, receiver = PARTIES[role]
        now = self.clock().replace(microsecond=0)
        payload = case_message(self.example, message_type, self.case, (sender, receiver), now, self.sent, now + timedelta(hours=1))
        compact = sign_message(payload, self.test_key(KEYS[sender]))
        self.sent.append((payload["id"], message_type, receiver, compact))
        return compact

    def send(self, message_type: str, role: machine.Role):
        return self.hub.post_message(self.message(message_type, role))


def _expected(kind: machine.Kind, state: str, message_type: str, role: machine.Role, driver: CaseDriver, purpose: str) -> str | None:
    if message_type == machine.RECEIPT:
        sender = PARTIES[role][0]
        return None if any(entry[2] == sender for entry in driver.sent) else "receipt-target-invalid"
    try:
        machine.next_state(kind, state, message_type, role, purpose)
        return None
    except machine.TransitionRefused as refused:
        return machine.REFUSAL_CODES[refused.reason]


def test_every_transition_of_the_table_is_enforced_over_http(database_url, example, test_key):
    clock = Clock()
    mismatches = []
    checked = 0
    with running_hub(database_url, clock=clock) as hub:
        for message_type in machine.MESSAGE_TYPES:  # state "none": no such case yet
            driver = CaseDriver(hub, clock, example, test_key)
            answer = driver.send(message_type, OPENER)
            expected = None if machine.opens_case(message_type) else "case-unknown"
            checked += 1
            if answer.code != expected or (expected is None and answer.status != 202):
                mismatches.append(("none", message_type, "opener", expected, answer.status, answer.code))
        for (kind, state), steps in SETUP.items():
            for message_type in machine.MESSAGE_TYPES:
                for role in machine.Role:
                    clock.offset = timedelta(0)
                    driver = CaseDriver(hub, clock, example, test_key)
                    for step_type, step_role in steps:
                        setup = driver.send(step_type, step_role)
                        assert setup.status == 202, (kind, state, step_type, setup.code)
                    if state == "expired":
                        clock.offset = timedelta(hours=2)
                    purpose = example(message_type)["purpose"]
                    expected = _expected(kind, state, message_type, role, driver, purpose)
                    answer = driver.send(message_type, role)
                    checked += 1
                    if answer.code != expected or (expected is None and answer.status != 202):
                        mismatches.append((kind.value, state, message_type, role.value, expected, answer.status, answer.code))
    assert not mismatches, "\n".join(map(str, mismatches))
    assert checked == len(machine.MESSAGE_TYPES) * (1 + 2 * len(SETUP))
