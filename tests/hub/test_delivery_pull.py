"""Pull delivery at the hub: GET /v1/inbox and POST /v1/receipts (docs/protocol.md §12.4, §12.6, §12.7).

The receivers here are this test, speaking HTTP with request proofs and building receipts
by hand, so that every answer of the hub is checked exactly; the simulator's own flows
are tested end to end in tests/delivery/.
"""

from __future__ import annotations

import http.client
import json
import signal
import time
import threading
from datetime import timedelta

import pytest

from gateway.hub.delivery import DeliveryPolicy
from gateway.protocol.ids import new_uuid7
from gateway.protocol.jws import digest
from gateway.protocol.message import sign_message
from gateway.protocol.request_proof import make_request_proof
from gateway.protocol.statements import parse_delivery, verify_delivery
from gateway.protocol.timestamps import format_timestamp, utc_now
from tests.cli_runner import assert_refused, run_cli
from tests.hub.harness import Clock, query, running_hub, wait_for_row

GD, HK = "test-cn-gd-message-1", "test-hk-message-1"


class Party:
    """One jurisdiction talking to the hub: signs messages, request proofs and receipts."""

    def __init__(self, hub, key, clock=utc_now) -> None:
        self.hub, self.key, self.clock = hub, key, clock

    def proof(self, method: str, path: str, body: bytes | None = None) -> dict[str, str]:
        url = self.hub.settings.public_base_url + path.split("?")[0]
        return {"GBA-Request-Proof": make_request_proof(self.key, method, url, body, self.hub_now()).decode()}

    def hub_now(self):
        return self.clock()

    def inbox(self, after: int = -1, wait: int = 0, limit: int | None = None):
        query_string = f"?after={after}&wait={wait}" + (f"&limit={limit}" if limit else "")
        return self.hub.request("GET", "/v1/inbox" + query_string, headers=self.proof("GET", "/v1/inbox"))

    def deliveries(self, after: int = -1, wait: int = 0) -> tuple[list, int]:
        answer = self.inbox(after, wait)
        assert answer.status == 200, answer.body
        document = answer.json()
        return document["deliveries"], document["cursor"]

    def post_receipt(self, receipt: bytes, proof_key=None):
        headers = {"Content-Type": "application/jose"}
        signer = Party(self.hub, proof_key, self.clock) if proof_key is not None else self
        headers.update(signer.proof("POST", "/v1/receipts", receipt))
        return self.hub.request("POST", "/v1/receipts", receipt, headers)

    def message_view(self, message_id: str) -> dict:
        path = f"/v1/messages/{message_id}"
        answer = self.hub.request("GET", path, headers=self.proof("GET", path))
        assert answer.status == 200, answer.body
        return answer.json()


def receipt_for(compact: bytes, key, jurisdiction: str, status: str = "accepted", created=None) -> bytes:
    """The receipt (§6.11) a receiver signs for a delivered message."""
    delivered = json.loads(_payload(compact))
    body = {"message_id": delivered["id"], "message_digest": digest(compact), "status": status}
    if status == "rejected":
        body["code"] = "attestation-mismatch"
    return sign_message(
        {
            "v": 1, "id": new_uuid7(), "type": "receipt", "from": jurisdiction, "to": delivered["from"],
            "case": delivered["case"], "reply_to": delivered["id"],
            "created": format_timestamp(created or utc_now()), "purpose": "delivery_receipt",
            "legal_basis": {"basis": "public_interest", "statute": "GBA platform delivery acknowledgement"},
            "body": body,
        },
        key,
    )


def _payload(compact: bytes) -> bytes:
    from gateway.protocol import base64url

    return base64url.decode(compact.split(b".")[1])


def ledger_kinds(database_url: str) -> list[dict]:
    return [json.loads(row["entry"]) for row in query(database_url, "SELECT entry FROM ledger_entries ORDER BY idx")]


@pytest.fixture
def referral(example, test_key):
    def make(**changes) -> tuple[dict, bytes]:
        payload = dict(example("referral.submit"), id=new_uuid7(), case=new_uuid7(), created=format_timestamp(utc_now()))
        payload.update(changes)
        return payload, sign_message(payload, test_key(GD))

    return make


def test_an_inbox_answer_is_utf8_json_with_its_local_view_text_unescaped(database_url, referral, trust, schemas, test_key):
    _, compact = referral()
    with running_hub(database_url) as hub:
        hub.post_message(compact)
        answer = Party(hub, test_key(HK)).inbox(-1, 0)
        assert answer.status == 200 and answer.headers["content-type"] == "application/json; charset=utf-8"
        [delivery] = json.loads(answer.body.decode("utf-8"))["deliveries"]
        texts = verify_delivery(parse_delivery(json.dumps(delivery).encode()), trust, schemas).local_view.texts
        written = [text.text for text in texts if not text.text.isascii()]
        assert written, "the referral's local view holds Chinese text"
        assert all(json.dumps(text, ensure_ascii=False).encode("utf-8") in answer.body for text in written)
        assert b"\\u" not in answer.body


def test_a_pulled_delivery_verifies_end_to_end_and_its_receipt_reaches_the_sender(database_url, referral, test_key, trust, schemas):
    payload, compact = referral()
    with running_hub(database_url) as hub:
        gd, hk = Party(hub, test_key(GD)), Party(hub, test_key(HK))
        accepted = hub.post_message(compact).json()
        deliveries, cursor = hk.deliveries()
        assert len(deliveries) == 1
        delivery = parse_delivery(json.dumps(deliveries[0]).encode())
        verified = verify_delivery(delivery, trust, schemas)
        assert delivery.message == compact and verified.message.id == payload["id"]
        assert cursor == verified.attestation.ledger_index == json.loads(_payload(accepted["hub_receipt"].encode()))["ledger_index"]
        assert gd.message_view(payload["id"])["status"] == "delivered"

        receipt = receipt_for(compact, test_key(HK), "HK")
        answer = hk.post_receipt(receipt)
        assert answer.status == 202 and answer.json()["replayed"] is False
        assert hk.post_receipt(receipt).json()["replayed"] is True, "the identical receipt again is a resend"
        view = gd.message_view(payload["id"])
        assert view["status"] == "receipted" and view["receiver_receipt"] == receipt.decode()

        # The receipt travels to the sender, which acknowledges it by advancing its cursor.
        deliveries, gd_cursor = gd.deliveries()
        assert [parse_delivery(json.dumps(d).encode()).message for d in deliveries] == [receipt]
        assert gd.deliveries(after=gd_cursor) == ([], gd_cursor)
        receipt_id = json.loads(_payload(receipt))["id"]
        assert Party(hub, test_key(HK)).message_view(receipt_id)["status"] == "delivered"
    entries = ledger_kinds(database_url)
    received = [e for e in entries if e["kind"] == "receipt-received"]
    assert received == [
        {"v": 1, "kind": "receipt-received", "time": received[0]["time"], "message_id": payload["id"],
         "receipt_id": receipt_id, "status": "accepted", "attempts": 1}
    ]
    delivered = [e for e in entries if e["kind"] == "delivered"]
    assert [(e["message_id"], e["to"], e["attempts"]) for e in delivered] == [(receipt_id, "CN-GD", 1)]
    assert query(database_url, "SELECT count(*) AS n FROM outbox")[0]["n"] == 0


def test_a_leased_delivery_is_not_offered_again_until_its_lease_expires(database_url, referral, test_key):
    clock = Clock()
    payload, compact = referral()
    with running_hub(database_url, clock=clock) as hub:
        hk = Party(hub, test_key(HK))
        hub.post_message(compact)
        assert len(hk.deliveries()[0]) == 1
        assert hk.deliveries()[0] == [], "leased to the caller"
        clock.offset = timedelta(seconds=hub.settings.delivery.lease_seconds + 1)
        again, _ = hk.deliveries()
        assert [d["message"] for d in again] == [compact.decode()]
    assert query(database_url, "SELECT attempts FROM outbox")[0]["attempts"] == 2


def test_one_case_is_delivered_to_one_receiver_in_ledger_order(database_url, referral, example, test_key):
    payload, compact = referral()
    with running_hub(database_url) as hub:
        gd, hk = Party(hub, test_key(GD)), Party(hub, test_key(HK))
        hub.post_message(compact)
        hk.deliveries()
        hk.post_receipt(receipt_for(compact, test_key(HK), "HK"))
        accept = dict(example("referral.accept"), id=new_uuid7(), case=payload["case"], reply_to=payload["id"],
                      created=format_timestamp(utc_now()))
        accept_compact = sign_message(accept, test_key(HK))
        assert hub.post_message(accept_compact).status == 202
        first, cursor = gd.deliveries()
        assert [json.loads(_payload(d["message"].encode()))["type"] for d in first] == ["receipt"], "the accept waits for the receipt"
        second, _ = gd.deliveries(after=cursor)
        assert [d["message"] for d in second] == [accept_compact.decode()]


def test_a_withdrawal_supersedes_what_is_still_queued_for_the_case(database_url, referral, example, test_key):
    payload, compact = referral()
    withdraw = dict(example("referral.withdraw"), id=new_uuid7(), case=payload["case"], reply_to=None,
                    created=format_timestamp(utc_now()))
    with running_hub(database_url) as hub:
        gd, hk = Party(hub, test_key(GD)), Party(hub, test_key(HK))
        hub.post_message(compact)
        assert hub.post_message(sign_message(withdraw, test_key(GD))).status == 202
        deliveries, _ = hk.deliveries()
        assert [json.loads(_payload(d["message"].encode()))["id"] for d in deliveries] == [withdraw["id"]]
        assert gd.message_view(payload["id"])["status"] == "superseded"
    withdrawn = [e for e in ledger_kinds(database_url) if e["kind"] == "withdrawn"]
    assert [(e["case"], e["message_id"], e["superseded"]) for e in withdrawn] == [(payload["case"], withdraw["id"], [payload["id"]])]


def test_a_long_poll_answers_as_soon_as_a_delivery_is_ready(database_url, referral, test_key):
    payload, compact = referral()
    with running_hub(database_url) as hub:
        hk = Party(hub, test_key(HK))
        answers = []
        waiting = threading.Thread(target=lambda: answers.append(hk.inbox(wait=30)))
        waiting.start()
        _wait_until_polling(database_url)
        hub.post_message(compact)
        waiting.join(60)
        assert answers and [d["message"] for d in answers[0].json()["deliveries"]] == [compact.decode()]


def test_a_long_poll_ends_empty_when_the_hub_shuts_down(database_url, test_key):
    answers = []
    with running_hub(database_url) as hub:
        hk = Party(hub, test_key(HK))
        waiting = threading.Thread(target=lambda: answers.append(hk.inbox(after=7, wait=30)))
        waiting.start()
        _wait_until_polling(database_url)
    waiting.join(60)
    assert answers and answers[0].status == 200 and answers[0].json() == {"deliveries": [], "cursor": 7}


def _wait_until_polling(database_url: str) -> None:
    """Until the hub has used the request proof of the long poll (it is then waiting, or about to)."""
    wait_for_row(database_url, "SELECT 1 FROM request_proof_ids")


def test_receipts_come_only_from_the_caller_and_only_receipts(database_url, referral, test_key):
    payload, compact = referral()
    with running_hub(database_url) as hub:
        hk = Party(hub, test_key(HK))
        hub.post_message(compact)
        hk.deliveries()
        receipt = receipt_for(compact, test_key(HK), "HK")
        assert_refused(hk.post_receipt(receipt, proof_key=test_key(GD)), "sender-mismatch")
        other, other_compact = referral()
        assert_refused(Party(hub, test_key(GD)).post_receipt(other_compact), "receipt-expected")
        assert hk.post_receipt(receipt).status == 202
        second = receipt_for(compact, test_key(HK), "HK", status="rejected")
        assert_refused(hk.post_receipt(second), "receipt-target-invalid")


def test_inbox_parameters_out_of_range_are_refused(database_url, test_key):
    with running_hub(database_url) as hub:
        hk = Party(hub, test_key(HK))
        assert_refused(hk.inbox(limit=501), "query-invalid")
        assert_refused(hk.inbox(after=-2), "query-invalid")
        answer = hub.request("GET", "/v1/inbox?wait=soon", headers=hk.proof("GET", "/v1/inbox"))
        assert_refused(answer, "query-invalid")
        # Not integers in ASCII digits: two signs, a superscript two, Arabic-Indic twelve (which `int` would take).
        for query in ("after=--1", "limit=%C2%B2", "after=%D9%A1%D9%A2", "after=1%0A", "wait=+1"):
            answer = hub.request("GET", f"/v1/inbox?{query}", headers=hk.proof("GET", "/v1/inbox"))
            assert_refused(answer, "query-invalid")
        assert_refused(hub.request("GET", "/v1/inbox"), "request-proof-missing")


def test_an_unacknowledged_delivery_is_dead_lettered_after_the_window_and_an_operator_retries_it(
    database_url, referral, test_key, tmp_path
):
    clock = Clock()
    payload, compact = referral()
    policy = DeliveryPolicy(retry_window_seconds=3600, sweep_seconds=0.05)
    with running_hub(database_url, clock=clock, delivery=policy) as hub:
        hub.post_message(compact)
        clock.offset = timedelta(hours=2)
        wait_for_row(database_url, "SELECT state FROM outbox WHERE state = 'dead'")
        metrics = hub.request("GET", "/metrics").body.decode()
        assert "gateway_dead_letters 1" in metrics and "gateway_outbox_depth 0" in metrics
        listed = run_cli("outbox", "list", "--state", "dead", "--database-url", database_url)
        assert listed.status == 0 and payload["id"] in listed.stdout and "never-acknowledged" in listed.stdout
        assert Party(hub, test_key(GD), clock).message_view(payload["id"])["status"] == "dead-lettered"
        clock.offset = timedelta(0)  # the operator retries now: a new window starts at the real clock the CLI reads
        retried = run_cli("outbox", "retry", payload["id"], "--database-url", database_url)
        assert retried.status == 0, retried.stderr
        deliveries, _ = Party(hub, test_key(HK), clock).deliveries()
        assert [d["message"] for d in deliveries] == [compact.decode()]
    kinds = [(e["kind"], e.get("message_id")) for e in ledger_kinds(database_url) if e["kind"] in ("dead-lettered", "retried")]
    assert kinds == [("dead-lettered", payload["id"]), ("retried", payload["id"])]


def test_a_delivery_past_its_window_is_not_offered_again_to_a_receiver_that_keeps_pulling_and_is_dead_lettered(
    database_url, referral, test_key
):
    """PROTO-12.4-4. The sweeper dead-letters only rows not leased; a receiver that pulls again each time its lease ran
    out would keep a message it never receipts leased, and offered, past its window, unless a pull skips such rows."""
    clock = Clock()
    payload, compact = referral()
    with running_hub(database_url, clock=clock, delivery=DeliveryPolicy(retry_window_seconds=3600, sweep_seconds=3600)) as hub:
        hk = Party(hub, test_key(HK), clock)
        hub.post_message(compact)
        deliveries, _ = hk.deliveries()
        assert [d["message"] for d in deliveries] == [compact.decode()]
        clock.offset = timedelta(hours=2)  # its lease and its window have passed; no sweep has run
        deliveries, cursor = hk.deliveries()
        assert deliveries == [] and cursor == -1, "a delivery past its window is not offered again"
    with running_hub(database_url, clock=clock, delivery=DeliveryPolicy(retry_window_seconds=3600, sweep_seconds=0.05)):
        wait_for_row(database_url, "SELECT state FROM outbox WHERE state = 'dead'")
    dead = [e for e in ledger_kinds(database_url) if e["kind"] == "dead-lettered"]
    assert [(e["message_id"], e["attempts"]) for e in dead] == [(payload["id"], 1)]


def test_a_receipt_leased_to_a_push_is_not_acknowledged_by_an_inbox_cursor(database_url, referral, test_key):
    """PROTO-12.6-2 acknowledges the receipts an earlier inbox answer returned. A receiver moving from push to pull may
    pull while a process still pushes it a receipt: that receipt is acknowledged by the push's 204 or delivered again,
    never taken as seen because the cursor passed it."""
    payload, compact = referral()
    with running_hub(database_url) as hub:
        gd, hk = Party(hub, test_key(GD)), Party(hub, test_key(HK))
        hub.post_message(compact)
        hk.deliveries()
        assert hk.post_receipt(receipt_for(compact, test_key(HK), "HK")).status == 202
        (receipt,) = query(database_url, "SELECT message_id, ledger_index FROM outbox WHERE is_receipt")
        # What a push process's claim leaves on the row (outbox.claim_for_push), while its push is in flight.
        query(database_url, "UPDATE outbox SET claimed_by = 'gateway:0123456789ab', attempts = 1,"
                            " lease_until = now() + interval '1 hour' WHERE is_receipt")
        deliveries, cursor = gd.deliveries(after=receipt["ledger_index"])
        assert deliveries == [] and cursor == receipt["ledger_index"]
    assert query(database_url, "SELECT count(*) AS n FROM outbox WHERE is_receipt")[0]["n"] == 1, "still to be delivered"
    assert not [e for e in ledger_kinds(database_url) if e["kind"] == "delivered" and e["message_id"] == str(receipt["message_id"])]


def test_a_passed_verification_deadline_is_ledgered(database_url, example, test_key):
    clock = Clock()
    request = dict(example("verification.request"), id=new_uuid7(), case=new_uuid7(), created=format_timestamp(utc_now()))
    request["body"] = dict(request["body"], respond_by=format_timestamp(utc_now() + timedelta(hours=1)))
    with running_hub(database_url, clock=clock, delivery=DeliveryPolicy(sweep_seconds=0.05)) as hub:
        assert hub.post_message(sign_message(request, test_key("test-mo-message-1"))).status == 202
        clock.offset = timedelta(hours=2)
        wait_for_row(database_url, "SELECT state FROM cases WHERE state = 'expired'")
    passed = [e for e in ledger_kinds(database_url) if e["kind"] == "deadline-passed"]
    assert [(e["case"], e["respond_by"]) for e in passed] == [(request["case"], request["body"]["respond_by"])]


def test_a_cancellation_supersedes_the_queued_request_and_is_delivered_itself(database_url, example, test_key):
    mo, gd = test_key("test-mo-message-1"), test_key(GD)
    request = dict(example("verification.request"), id=new_uuid7(), case=new_uuid7(), created=format_timestamp(utc_now()))
    request["body"] = dict(request["body"], respond_by=format_timestamp(utc_now() + timedelta(hours=1)))
    cancel = dict(example("verification.cancel"), id=new_uuid7(), case=request["case"], reply_to=None, created=format_timestamp(utc_now()))
    with running_hub(database_url) as hub:
        assert hub.post_message(sign_message(request, mo)).status == 202
        assert hub.post_message(sign_message(cancel, mo)).status == 202
        deliveries, _ = Party(hub, gd).deliveries()
        assert [json.loads(_payload(d["message"].encode()))["type"] for d in deliveries] == ["verification.cancel"]
        assert Party(hub, mo).message_view(request["id"])["status"] == "superseded"
    cancelled = [e for e in ledger_kinds(database_url) if e["kind"] == "cancelled"]
    assert [(e["case"], e["message_id"], e["superseded"]) for e in cancelled] == [(request["case"], cancel["id"], [request["id"]])]


def test_a_long_poll_its_client_gave_up_on_claims_nothing(database_url, example, test_key):
    """A long poll whose client closed the connection must not lease what arrives afterwards: nobody reads that answer,
    and a receipt counted as returned there would be acknowledged by the client's next cursor unseen (PROTO-12.6-2)."""
    import select
    import socket
    from urllib.parse import urlsplit

    hk, gd = test_key(HK), test_key(GD)
    referral = sign_message(dict(example("referral.submit"), id=new_uuid7(), case=new_uuid7(), created=format_timestamp(utc_now())), gd)
    with running_hub(database_url, long_polls_per_jurisdiction=1) as hub:
        party = Party(hub, hk)
        parts = urlsplit(hub.base_url)
        deadline = time.monotonic() + 20
        client = None
        while True:
            assert time.monotonic() < deadline, "the long poll never started"
            if client is None or select.select([client], [], [], 0)[0]:  # none yet, or it was answered (refused): again
                if client is not None:
                    client.close()
                client = socket.create_connection((parts.hostname, parts.port))
                headers = "".join(f"{name}: {value}\r\n" for name, value in party.proof("GET", "/v1/inbox").items())
                client.sendall(f"GET /v1/inbox?after=-1&wait=20 HTTP/1.1\r\nHost: {parts.netloc}\r\n{headers}\r\n".encode())
            elif party.inbox(wait=0).status == 429:  # the long poll holds HK's only long-poll place: it is running
                break
        client.close()
        # The client is gone; a message for HK arrives while the abandoned poll still waits.
        assert hub.post_message(referral).status == 202
        deadline = time.monotonic() + 20
        while (answer := party.inbox(wait=1)).status == 429:  # the abandoned poll still holds the place
            assert time.monotonic() < deadline, "the abandoned long poll never ended"
        assert answer.status == 200
        deliveries = answer.json()["deliveries"] or party.deliveries(wait=5)[0]
    assert [d["message"] for d in deliveries] == [referral.decode()], "offered at once, not leased to a dead poll"
    (row,) = query(database_url, "SELECT attempts FROM outbox")
    assert row["attempts"] == 1, "one attempt: the delivery just made"


def test_a_pull_from_a_process_without_the_payload_key_is_unavailable_and_claims_nothing(database_url, referral, test_key):
    """A process whose host lacks the key a message was sealed under (a rotation not yet copied to it) answers a pull
    503 with Retry-After and gives the claim back, since pulls go in ledger order; a process with the key delivers."""
    import secrets

    from gateway.store.payloads import PayloadKeys

    old = secrets.token_bytes(32)
    rotated = PayloadKeys({"k1": old, "k2": secrets.token_bytes(32)}, "the rotated ring")
    behind = PayloadKeys({"k1": old}, "a ring not yet copied")
    payload, compact = referral()
    with running_hub(database_url, payload_keys=rotated) as up_to_date, running_hub(database_url, payload_keys=behind) as lagging:
        assert up_to_date.post_message(compact).status == 202  # sealed under k2
        answer = Party(lagging, test_key(HK)).inbox()
        assert answer.status == 503 and answer.json()["code"] == "unavailable" and answer.headers.get("retry-after") == "1"
        row = query(database_url, "SELECT o.attempts, o.lease_until, m.status, m.payload_key FROM outbox o"
                                  " JOIN messages m ON m.id = o.message_id WHERE o.message_id = $1::uuid", payload["id"])[0]
        assert (row["attempts"], row["lease_until"], row["status"], row["payload_key"]) == (0, None, "accepted", "k2")
        deliveries, _ = Party(up_to_date, test_key(HK)).deliveries()
        assert [parse_delivery(json.dumps(d).encode()).message for d in deliveries] == [compact]


def _receipted_for_gd(hub, hk: Party, referral_compact: bytes, test_key) -> str:
    """Send a referral to HK through `hub`, have HK pull it and send its receipt: the receipt's id (queued for CN-GD)."""
    assert hub.post_message(referral_compact).status == 202
    deliveries, _ = hk.deliveries()
    assert [d["message"] for d in deliveries] == [referral_compact.decode()]
    receipt = receipt_for(referral_compact, test_key(HK), "HK")
    assert hk.post_receipt(receipt).status == 202
    return json.loads(_payload(receipt))["id"]


def test_a_pulled_receipt_whose_answer_died_with_its_process_is_offered_again_and_never_acknowledged_unseen(
    database_url, tmp_path, referral, test_key
):
    """The defect of docs/performance.md, "Eighth pass": a process commits a pull's lease, then dies before its answer
    leaves. Another process must offer what it leased again at once, so that its answer's cursor does not pass a
    receipt the receiver never saw, which the receiver's next request would acknowledge (PROTO-12.6-2)."""
    from tests.hub.harness import TEST_PAYLOAD_KEYS, payload_keys_variable, serve_process

    ring = payload_keys_variable(TEST_PAYLOAD_KEYS.keys)
    _, first = referral()
    _, second = referral()
    with running_hub(database_url) as hub:
        hk = Party(hub, test_key(HK))
        first_receipt = _receipted_for_gd(hub, hk, first, test_key)
        with serve_process(tmp_path, database_url, {**ring, "GATEWAY_KILL_POINT": "pull-leased:1"}, name="dying") as (process, dying):
            with pytest.raises((ConnectionError, http.client.HTTPException)):  # killed with the lease committed
                Party(dying, test_key(GD)).inbox()
            assert process.wait(60) == -signal.SIGKILL
        (lease,) = query(database_url, "SELECT attempts, lease_until, lease_process FROM outbox WHERE message_id = $1::uuid", first_receipt)
        assert lease["attempts"] == 1 and lease["lease_until"] > utc_now(), "leased by the pull whose answer never left"
        shown = json.loads(run_cli("outbox", "show", first_receipt, "--database-url", database_url).stdout)
        assert (shown["claimed_by"], shown["lease_process"]) == ("inbox:CN-GD", lease["lease_process"]), "the operator sees who"
        second_receipt = _receipted_for_gd(hub, hk, second, test_key)
        # The dying process's connections close with it; the database notices within moments (docs/operations.md).
        wait_for_row(database_url, "SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name = $1)",
                     lease["lease_process"])

        gd = Party(hub, test_key(GD))
        deliveries, cursor = gd.deliveries()
        receipts = [json.loads(_payload(parse_delivery(json.dumps(d).encode()).message))["id"] for d in deliveries]
        assert receipts == [first_receipt, second_receipt], "the lost lease offered again, in ledger order"
        assert gd.deliveries(after=cursor) == ([], cursor)
    delivered = {e["message_id"]: e["attempts"] for e in ledger_kinds(database_url) if e["kind"] == "delivered"}
    assert delivered == {first_receipt: 2, second_receipt: 1}, "each acknowledged after it was returned"
    assert query(database_url, "SELECT count(*) AS n FROM outbox")[0]["n"] == 0


def test_a_delivery_leased_by_another_live_process_is_not_offered_again(database_url, referral, test_key):
    """The other side of the rule above: a lease taken by a process that is alive holds, wherever the next pull goes,
    so that a receiver may ask for its next page while it is still answering the last (PROTO-12.6-1)."""
    _, compact = referral()
    with running_hub(database_url) as one, running_hub(database_url) as other:
        assert one.post_message(compact).status == 202
        assert [d["message"] for d in Party(one, test_key(HK)).deliveries()[0]] == [compact.decode()]
        assert Party(other, test_key(HK)).deliveries()[0] == [], "leased by a live process"
    (row,) = query(database_url, "SELECT attempts FROM outbox")
    assert row["attempts"] == 1
