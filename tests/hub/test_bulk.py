"""POST /v1/messages/bulk (docs/protocol.md §12.9): many signed messages a request, each judged, ledgered and
receipted as if it came alone, in the order of the lines, with one result a line."""

from __future__ import annotations

import json
from datetime import timedelta

from gateway.protocol.ids import new_uuid7
from gateway.protocol.jws import digest
from gateway.protocol.message import sign_message
from gateway.protocol.statements import verify_hub_receipt
from gateway.protocol.timestamps import format_timestamp, utc_now
from gateway.hub.limits import CallerLimit
from tests.cli_runner import assert_refused
from tests.hub.harness import query, running_hub

GD = "test-cn-gd-message-1"
MO = "test-mo-message-1"
BULK = "application/vnd.gba.jose-lines"


def fresh(payload: dict, **changes) -> dict:
    return {**payload, "id": new_uuid7(), "case": new_uuid7(), "created": format_timestamp(utc_now().replace(microsecond=0)), **changes}


def post_bulk(hub, lines: list[bytes], content_type: str = BULK, final_newline: bool = True):
    body = b"\n".join(lines) + (b"\n" if final_newline else b"")
    return hub.request("POST", "/v1/messages/bulk", body, {"Content-Type": content_type})


def results(answer) -> list[dict]:
    assert answer.status == 200, answer.body[:400]
    assert answer.headers["content-type"].startswith("application/x-ndjson")
    assert answer.body.endswith(b"\n")
    return [json.loads(line) for line in answer.body.decode().splitlines()]


def ledger(database_url: str) -> list[dict]:
    return [json.loads(row["entry"]) for row in query(database_url, "SELECT entry FROM ledger_entries ORDER BY idx")]


def verification_pair(example) -> tuple[dict, dict]:
    """A verification.request (MO -> CN-GD) and its cancellation: the second only makes sense after the first."""
    request = fresh(example("verification.request"))
    request["body"] = dict(request["body"], respond_by=format_timestamp(utc_now() + timedelta(hours=1)))
    cancel = dict(example("verification.cancel"), id=new_uuid7(), case=request["case"], reply_to=None,
                  created=format_timestamp(utc_now().replace(microsecond=0)))
    return request, cancel


def test_each_line_is_judged_alone_in_order_with_one_result_a_line(database_url, example, test_key, trust):
    gd, mo = test_key(GD), test_key(MO)
    referral = sign_message(fresh(example("referral.submit")), gd)
    request, cancel = verification_pair(example)
    stale = sign_message(fresh(example("referral.submit"), created=format_timestamp(utc_now() - timedelta(minutes=10))), gd)
    conflicting = sign_message(dict(json.loads(json.dumps(fresh(example("referral.submit")))), id=request["id"]), gd)
    lines = [referral, sign_message(request, mo), sign_message(cancel, mo), b"not a jws", stale, referral, conflicting]
    with running_hub(database_url) as hub:
        answer = results(post_bulk(hub, lines))
    assert [r["line"] for r in answer] == list(range(1, 8))
    assert [r["status"] for r in answer] == [202, 202, 202, 400, 422, 202, 409]
    assert [r.get("problem", {}).get("code") for r in answer] == [None, None, None, "jws-malformed", "message-stale", None, "id-conflict"]
    assert [r.get("replayed") for r in answer] == [False, False, False, None, None, True, None], "line 6 resends line 1's bytes (§8.2)"
    assert answer[5]["hub_receipt"] == answer[0]["hub_receipt"]
    assert answer[3]["problem"]["instance"] == "/v1/messages/bulk#line=4"
    # Each accepted line has its own hub receipt and ledger entry, in the order of the lines.
    receipts = [verify_hub_receipt(answer[n]["hub_receipt"].encode(), trust) for n in (0, 1, 2)]
    assert [r.message_digest for r in receipts] == [digest(lines[0]), digest(lines[1]), digest(lines[2])]
    assert receipts[0].ledger_index < receipts[1].ledger_index < receipts[2].ledger_index
    entries = ledger(database_url)
    kinds = [(e["kind"], e.get("message_id") or e.get("code")) for e in entries if e["kind"] in ("accepted", "refused", "cancelled")]
    assert kinds == [("accepted", json.loads(_payload(referral))["id"]), ("accepted", request["id"]), ("accepted", cancel["id"]),
                     ("cancelled", cancel["id"]), ("refused", "message-stale"), ("refused", "id-conflict")], (
        "authenticated refusals are ledgered, the unsigned line is not (§13)")
    (state,) = query(database_url, "SELECT state FROM cases WHERE id = $1", request["case"])
    assert state["state"] == "cancelled", "line 3 was judged after line 2 opened its case (PROTO-12.9-1)"


def test_a_resent_body_is_answered_from_the_stored_receipts_and_accepts_nothing_twice(database_url, example, test_key):
    gd = test_key(GD)
    lines = [sign_message(fresh(example("referral.submit")), gd) for _ in range(5)]
    with running_hub(database_url) as hub:
        first = results(post_bulk(hub, lines, final_newline=False))
        again = results(post_bulk(hub, lines))
    assert [r["status"] for r in first] == [202] * 5 and not any(r["replayed"] for r in first)
    assert [r["status"] for r in again] == [202] * 5 and all(r["replayed"] for r in again)
    assert [r["hub_receipt"] for r in again] == [r["hub_receipt"] for r in first]
    assert query(database_url, "SELECT count(*) AS n FROM messages")[0]["n"] == 5
    assert sum(e["kind"] == "accepted" for e in ledger(database_url)) == 5


def test_lines_over_the_signers_budget_are_rate_limited_on_their_own_and_not_ledgered(database_url, example, test_key):
    gd = test_key(GD)
    lines = [sign_message(fresh(example("referral.submit")), gd) for _ in range(4)]
    with running_hub(database_url, caller_limit=CallerLimit(rate_per_second=0.001, burst=2, in_flight=100)) as hub:
        answer = results(post_bulk(hub, lines))
    assert [r["status"] for r in answer] == [202, 202, 429, 429]
    assert answer[2]["problem"]["code"] == "rate-limited"
    assert [e["kind"] for e in ledger(database_url) if e["kind"] in ("accepted", "refused")] == ["accepted", "accepted"]


def test_a_bulk_request_refused_as_a_whole_judges_no_line_and_writes_nothing(database_url, example, test_key):
    gd = test_key(GD)
    lines = [sign_message(fresh(example("referral.submit")), gd) for _ in range(4)]
    with running_hub(database_url, bulk_max_lines=3, max_request_bytes=64 * 1024) as hub:
        before = len(ledger(database_url))
        assert_refused(post_bulk(hub, lines), "message-too-large")  # four lines, three allowed
        assert_refused(post_bulk(hub, lines[:1], content_type="application/jose"), "media-type-unsupported")
        assert_refused(hub.request("POST", "/v1/messages/bulk", b"", {"Content-Type": BULK}), "jws-malformed")
        too_big = b"\n".join(lines[:1] * 30)  # over 64 KiB
        assert_refused(hub.request("POST", "/v1/messages/bulk", too_big, {"Content-Type": BULK}), "message-too-large")
    assert query(database_url, "SELECT count(*) AS n FROM messages")[0]["n"] == 0
    assert len(ledger(database_url)) == before


def test_a_single_message_post_still_refuses_a_body_over_the_message_limit(database_url, example, test_key):
    """The bulk body's larger cap does not leak into POST /v1/messages (PROTO-12.2-1)."""
    with running_hub(database_url, max_message_bytes=4096) as hub:
        body = sign_message(fresh(example("referral.submit")), test_key(GD))
        assert_refused(hub.post_message(body + b"A" * 4096), "message-too-large")
        assert results(post_bulk(hub, [body]))[0]["status"] == 202, "the same message fits a bulk body"


def _payload(compact: bytes) -> bytes:
    import base64

    segment = compact.split(b".")[1]
    return base64.urlsafe_b64decode(segment + b"=" * (-len(segment) % 4))
