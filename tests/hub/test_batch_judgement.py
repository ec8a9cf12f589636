"""A batch judges its messages as if they came one by one (gateway/hub/acceptance.py, `_commit_many`).

The group committer takes many messages into one transaction, and the hub judges them set-based: one lookup for
the run, each message judged against what the earlier ones of the run decided. Messages of one case often share a
batch (a receipt and the response after it, in one bulk body), so the test builds random scripts of many messages
over a few cases — openings, replies, endings, receipts, resends of identical bytes, ids reused with other bytes,
cases past their deadline — and sends each script twice with fresh ids: once as one bulk body (one batch) and once
message by message (a batch each). Every answer, every ledger entry and the final cases, messages and outbox rows
must be the same, up to the ids.
"""

from __future__ import annotations

import json
import random
from datetime import timedelta
from typing import Any

import pytest

from gateway.hub.delivery import DeliveryPolicy
from gateway.protocol import cases as machine
from gateway.protocol import base64url
from gateway.protocol.ids import new_uuid7
from gateway.protocol.jws import digest
from gateway.protocol.message import sign_message
from gateway.protocol.timestamps import format_timestamp
from tests.hub.harness import Clock, case_message, query, running_hub

OPENER, RESPONDER = machine.Role.OPENER, machine.Role.RESPONDER
PARTIES = {OPENER: ("CN-GD", "HK"), RESPONDER: ("HK", "CN-GD")}
KEYS = {"CN-GD": "test-cn-gd-message-1", "HK": "test-hk-message-1"}
BULK = "application/vnd.gba.jose-lines"
CASES = 12
STEPS = 120


FLOWS = (
    # (type, role) in the order a case lives them; a receipt acknowledges the last message sent to its sender.
    (("referral.submit", OPENER), ("receipt", RESPONDER), ("referral.update", OPENER), ("receipt", RESPONDER),
     ("referral.accept", RESPONDER), ("receipt", OPENER), ("referral.update", RESPONDER), ("receipt", OPENER),
     ("referral.withdraw", OPENER), ("receipt", RESPONDER)),
    (("referral.submit", OPENER), ("receipt", RESPONDER), ("referral.accept", RESPONDER), ("receipt", OPENER),
     ("referral.close", RESPONDER), ("receipt", OPENER)),
    (("referral.submit", OPENER), ("referral.update", OPENER), ("referral.withdraw", OPENER), ("receipt", RESPONDER)),
    (("verification.request", OPENER), ("receipt", RESPONDER), ("verification.response", RESPONDER), ("receipt", OPENER)),
    (("verification.request", OPENER), ("receipt", RESPONDER), ("verification.cancel", OPENER), ("receipt", RESPONDER)),
    # Without receipts between, a case can be opened and moved, or moved twice, by messages of one run.
    (("referral.submit", OPENER), ("referral.accept", RESPONDER), ("referral.close", RESPONDER), ("receipt", OPENER)),
    (("verification.request", OPENER), ("verification.response", RESPONDER), ("receipt", OPENER)),
)


def script(seed: int) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """A random script: setup steps (sent one by one before the clock moves two hours on) and main steps.

    A step is ("new", case, type, role, deadline hours) for a new message, ("resend", step) for the identical bytes
    of an earlier main step, or ("conflict", step) for an earlier main step's id with other bytes. Most steps follow
    each case's flow (a life of a case, `FLOWS`); the others repeat a step, resend, reuse an id, or send anything.
    """
    rng = random.Random(seed)
    flows = [FLOWS[3], *(rng.choice(FLOWS) for _ in range(CASES - 1))]
    position = [0] * CASES
    setup = [("new", 0, *flows[0][0], 1)]  # a request whose deadline has passed when the main phase answers it
    position[0] = 1
    for case in range(1, CASES):
        if rng.random() < 0.5:
            setup.append(("new", case, *flows[case][0], rng.choice([1, 3])))  # 1: past its deadline in the main phase
            position[case] = 1
    main: list[tuple[Any, ...]] = []
    for _ in range(STEPS):
        roll = rng.random()
        open_cases = [case for case in range(CASES) if position[case] < len(flows[case])]
        if open_cases and roll < 0.65:
            case = rng.choice(open_cases)
            main.append(("new", case, *flows[case][position[case]], 3))
            position[case] += 1
        elif main and roll < 0.73:
            news = [step for step in main if step[0] == "new"]
            main.append(news[-1])  # the same kind of message again: a second receipt of one target, a second answer
        elif main and roll < 0.82:
            main.append(("resend", rng.randrange(len(main))))
        elif main and roll < 0.9:
            main.append(("conflict", rng.randrange(len(main))))
        else:
            main.append(("new", rng.randrange(CASES), rng.choice(machine.MESSAGE_TYPES), rng.choice([OPENER, RESPONDER]), 3))
    return setup, main


class Script:
    """One copy of a script: its own case ids, and labels that name its ids and digests by their place in the script."""

    def __init__(self, clock: Clock, example, test_key) -> None:
        self.clock, self.example, self.test_key = clock, example, test_key
        self.cases = [new_uuid7() for _ in range(CASES)]
        self.sent: dict[int, list[tuple[str, str, str, bytes]]] = {case: [] for case in range(CASES)}  # id, type, receiver, compact
        self.payloads: list[dict[str, Any]] = []
        self.lines: list[bytes] = []
        self.labels: dict[str, str] = {case_id: f"case-{number}" for number, case_id in enumerate(self.cases)}

    def build(self, step: tuple[Any, ...], label: str) -> bytes:
        if step[0] == "resend":
            compact = self.lines[step[1]]
        elif step[0] == "conflict":
            # Other bytes for the same id, and other bytes again for every conflict (its place in the script).
            earlier = timedelta(seconds=1 + len(self.payloads) % 250)
            payload = dict(self.payloads[step[1]], created=format_timestamp(self.clock().replace(microsecond=0) - earlier))
            compact = self._sign(payload)
        else:
            _, case, message_type, role, hours = step
            payload = self._payload(case, message_type, role, hours)
            compact = self._sign(payload)
            self.sent[case].append((payload["id"], message_type, payload["to"], compact))
            self.labels.setdefault(payload["id"], f"id-{label}")
        self.labels.setdefault(digest(compact), f"digest-{label}")
        self.payloads.append(json.loads(_payload_of(compact)))
        if not label.startswith("setup"):
            self.lines.append(compact)
        return compact

    def _sign(self, payload: dict[str, Any]) -> bytes:
        return sign_message(payload, self.test_key(KEYS[payload["from"]]))

    def _payload(self, case: int, message_type: str, role: machine.Role, hours: int) -> dict[str, Any]:
        now = self.clock().replace(microsecond=0)
        return case_message(self.example, message_type, self.cases[case], PARTIES[role], now, self.sent[case], now + timedelta(hours=hours))

    def normal(self, value: Any) -> Any:
        """`value` with this copy's ids and digests replaced by their labels, timestamps by "T", lists of ids sorted."""
        if isinstance(value, dict):
            return {key: "T" if key in ("time", "respond_by", "accepted_at") else self.normal(item) for key, item in value.items()}
        if isinstance(value, list):
            items = [self.normal(item) for item in value]
            return sorted(items) if all(isinstance(item, str) for item in items) else items
        if isinstance(value, str):
            return self.labels.get(value, value)
        return value


def _payload_of(compact: bytes) -> bytes:
    return base64url.decode(compact.split(b".")[1])


def _answer(document: dict[str, Any], copy: Script) -> tuple[Any, ...]:
    problem = document.get("problem") or {}
    return document["status"], problem.get("code"), document.get("replayed"), copy.normal(document.get("message_id"))


def _ledger_since(database_url: str, size: int, copy: Script) -> list[Any]:
    rows = query(database_url, "SELECT entry FROM ledger_entries WHERE idx >= $1 ORDER BY idx", size)
    return [copy.normal(json.loads(row["entry"])) for row in rows]


def _ledger_size(database_url: str) -> int:
    return query(database_url, "SELECT size FROM ledger_size")[0]["size"]


def _state(database_url: str, copy: Script) -> dict[str, Any]:
    cases = query(database_url, "SELECT id::text, kind, state, opener, responder, opened_by::text FROM cases WHERE id = ANY($1::uuid[])", copy.cases)
    messages = query(database_url, "SELECT id::text, status, receiver_receipt IS NOT NULL AS receipted FROM messages WHERE case_id = ANY($1::uuid[])", copy.cases)
    outbox = query(database_url, "SELECT message_id::text, state, attempts, is_receipt FROM outbox WHERE case_id = ANY($1::uuid[])", copy.cases)
    return {
        "cases": sorted(copy.normal([dict(row) for row in cases]), key=lambda row: row["id"]),
        "messages": sorted(copy.normal([dict(row) for row in messages]), key=lambda row: row["id"]),
        "outbox": sorted(copy.normal([dict(row) for row in outbox]), key=lambda row: row["message_id"]),
    }


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_batch_judges_its_messages_as_one_by_one_would(database_url, example, test_key, seed):
    setup, main = script(seed)
    clock = Clock()
    with running_hub(database_url, clock=clock, delivery=DeliveryPolicy(sweep_seconds=3600)) as hub:
        batched, single = Script(clock, example, test_key), Script(clock, example, test_key)
        for copy in (batched, single):
            for number, step in enumerate(setup):
                answer = hub.post_message(copy.build(step, f"setup-{number}"))
                assert answer.status == 202, (step, answer.body[:300])
        clock.offset = timedelta(hours=2)  # the setup's one-hour deadlines have passed: the main phase expires them

        size = _ledger_size(database_url)
        body = b"".join(batched.build(step, f"line-{number}") + b"\n" for number, step in enumerate(main))
        answer = hub.request("POST", "/v1/messages/bulk", body, {"Content-Type": BULK})
        assert answer.status == 200, answer.body[:400]
        batched_answers = [_answer(json.loads(line), batched) for line in answer.body.decode().splitlines()]
        batched_ledger = _ledger_since(database_url, size, batched)

        size = _ledger_size(database_url)
        single_answers = []
        for number, step in enumerate(main):
            answer = hub.post_message(single.build(step, f"line-{number}"))
            single_answers.append(_single(answer.status, answer.json(), single))
        single_ledger = _ledger_since(database_url, size, single)

    assert len(batched_answers) == len(main)
    mismatched = [(n, main[n], b, s) for n, (b, s) in enumerate(zip(batched_answers, single_answers)) if b != s]
    assert not mismatched, "\n".join(map(str, mismatched))
    assert batched_ledger == single_ledger
    assert _state(database_url, batched) == _state(database_url, single)
    # The scripts exercise what they are meant to: acceptances, refusals, replays, receipts and expiries.
    statuses = {answer[0] for answer in batched_answers}
    assert {202, 409, 422} <= statuses, statuses
    kinds = {entry["kind"] for entry in batched_ledger}
    assert {"accepted", "refused", "receipt-received", "withdrawn", "deadline-passed"} <= kinds, kinds
    assert any(answer[2] for answer in batched_answers), "a line resends an accepted line's bytes"


def _single(status: int, document: dict[str, Any], copy: Script) -> tuple[Any, ...]:
    """A single POST's answer in the form of a bulk result line (PROTO-12.9-2)."""
    if status == 202:
        return 202, None, document.get("replayed", False), copy.normal(document.get("message_id"))
    return status, document.get("code"), None, None
