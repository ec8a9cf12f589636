"""Case rules at ingress, each refusal with its code (docs/protocol.md §5.2, §5.5, §7)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from gateway.config import Route
from gateway.protocol.ids import new_uuid7
from gateway.protocol.jws import digest
from gateway.protocol.message import sign_message
from gateway.protocol.timestamps import format_timestamp, utc_now
from tests.cli_runner import assert_refused
from tests.hub.harness import Clock, hub_settings, running_hub

KEYS = {"CN-GD": "test-cn-gd-message-1", "HK": "test-hk-message-1", "MO": "test-mo-message-1"}


class Case:
    """Messages of one case, built from the schema examples."""

    def __init__(self, example, test_key, clock=utc_now):
        self.example, self.test_key, self.clock = example, test_key, clock
        self.id = new_uuid7()

    def message(self, message_type: str, sender: str, receiver: str, **changes) -> tuple[dict, bytes]:
        payload = self.example(message_type)
        payload.update(id=new_uuid7(), case=self.id, created=format_timestamp(self.clock().replace(microsecond=0)))
        payload["from"], payload["to"] = sender, receiver
        body = changes.pop("body", {})
        payload.update(changes)
        payload["body"].update(body)
        return payload, sign_message(payload, self.test_key(KEYS[sender]))


@pytest.fixture
def hub(database_url):
    with running_hub(database_url) as running:
        yield running


def test_a_reply_in_an_unknown_case_is_refused(hub, example, test_key):
    _, compact = Case(example, test_key).message("referral.accept", "HK", "CN-GD", reply_to=new_uuid7())
    assert_refused(hub.post_message(compact), "case-unknown")


def test_a_decline_after_an_accept_is_a_state_conflict(hub, example, test_key):
    case = Case(example, test_key)
    submit, compact = case.message("referral.submit", "CN-GD", "HK")
    assert hub.post_message(compact).status == 202
    assert hub.post_message(case.message("referral.accept", "HK", "CN-GD", reply_to=submit["id"])[1]).status == 202
    assert_refused(hub.post_message(case.message("referral.decline", "HK", "CN-GD", reply_to=submit["id"])[1]), "case-state-conflict")


def test_a_third_jurisdiction_cannot_write_into_a_case(hub, example, test_key):
    case = Case(example, test_key)
    assert hub.post_message(case.message("referral.submit", "CN-GD", "HK")[1]).status == 202
    assert_refused(hub.post_message(case.message("referral.update", "MO", "HK")[1]), "case-party-mismatch")


def test_a_reply_to_that_names_no_message_of_the_case_is_refused(hub, example, test_key):
    case = Case(example, test_key)
    assert hub.post_message(case.message("referral.submit", "CN-GD", "HK")[1]).status == 202
    assert_refused(hub.post_message(case.message("referral.accept", "HK", "CN-GD", reply_to=new_uuid7())[1]), "reply-to-invalid")


def test_a_receipt_for_a_message_not_addressed_to_its_sender_is_refused(hub, example, test_key):
    case = Case(example, test_key)
    submit, compact = case.message("referral.submit", "CN-GD", "HK")
    assert hub.post_message(compact).status == 202
    body = {"message_id": submit["id"], "message_digest": digest(compact), "status": "accepted"}
    receipt = case.message("receipt", "CN-GD", "HK", reply_to=submit["id"], body=body)[1]
    assert_refused(hub.post_message(receipt), "receipt-target-invalid")


def test_the_receiver_acknowledges_with_a_receipt_that_leaves_the_case_as_it_was(hub, example, test_key):
    case = Case(example, test_key)
    submit, compact = case.message("referral.submit", "CN-GD", "HK")
    assert hub.post_message(compact).status == 202
    body = {"message_id": submit["id"], "message_digest": digest(compact), "status": "accepted"}
    assert hub.post_message(case.message("receipt", "HK", "CN-GD", reply_to=submit["id"], body=body)[1]).status == 202
    assert hub.post_message(case.message("referral.accept", "HK", "CN-GD", reply_to=submit["id"])[1]).status == 202


def test_a_request_whose_deadline_has_already_passed_is_refused(hub, example, test_key):
    case = Case(example, test_key)
    past = format_timestamp(utc_now().replace(microsecond=0) - timedelta(minutes=1))
    assert_refused(hub.post_message(case.message("verification.request", "CN-GD", "HK", body={"respond_by": past})[1]), "deadline-passed")


def test_a_response_after_the_deadline_is_refused(database_url, example, test_key):
    clock = Clock()
    with running_hub(database_url, clock=clock) as hub:
        case = Case(example, test_key, clock)
        soon = format_timestamp(clock().replace(microsecond=0) + timedelta(minutes=10))
        request, compact = case.message("verification.request", "CN-GD", "HK", body={"respond_by": soon})
        assert hub.post_message(compact).status == 202
        clock.offset = timedelta(minutes=11)
        late = case.message("verification.response", "HK", "CN-GD", reply_to=request["id"])[1]
        assert_refused(hub.post_message(late), "deadline-passed")


def test_a_route_requiring_consent_refuses_another_legal_basis(database_url, example, test_key):
    routes = tuple(replace(route, require_consent=True) for route in hub_settings(database_url).routes)
    with running_hub(database_url, routes=routes) as hub:
        case = Case(example, test_key)
        basis = {"basis": "statutory_duty", "statute": "PIPL art. 13(1)(iii)"}
        answer = hub.post_message(case.message("referral.submit", "CN-GD", "HK", legal_basis=basis)[1])
    assert_refused(answer, "legal-basis-refused")
    assert answer.json()["where"] == "/legal_basis/basis"
    assert isinstance(routes[0], Route)
