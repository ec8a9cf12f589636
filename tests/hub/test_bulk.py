"""POST /v1/messages/bulk (docs/protocol.md §12.9): many signed messages a request, each judged, ledgered and
receipted as if it came alone, in the order of the lines, with one result a line."""

from __future__ import annotations

import json
import socket
from datetime import timedelta
from urllib.parse import urlsplit

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


def test_a_line_reusing_an_earlier_lines_id_is_refused_id_conflict_even_when_another_check_fails(
    database_url, example, test_key
):
    """Posted one after the other, the second message gets id-conflict: `accept` looks the id up once a check fails.
    A bulk body judges its lines in order (PROTO-12.9-1), so the same two lines get the same answers."""
    gd = test_key(GD)
    first = fresh(example("referral.submit"))
    stale = fresh(example("referral.submit"), id=first["id"], created=format_timestamp(utc_now() - timedelta(minutes=10)))
    refused_first = fresh(example("referral.submit"), created=format_timestamp(utc_now() - timedelta(minutes=10)))
    reusing_refused = fresh(example("referral.submit"), id=refused_first["id"],
                            created=format_timestamp(utc_now() - timedelta(minutes=11)))
    lines = [sign_message(first, gd), sign_message(stale, gd), sign_message(refused_first, gd), sign_message(reusing_refused, gd)]
    with running_hub(database_url) as hub:
        answer = results(post_bulk(hub, lines))
    assert [(r["status"], r.get("problem", {}).get("code")) for r in answer] == [
        (202, None), (409, "id-conflict"), (422, "message-stale"), (422, "message-stale")
    ], "an id only an earlier refused line named was not used: that line's own refusal stands"
    kinds = [(e["kind"], e.get("code")) for e in ledger(database_url) if e["kind"] in ("accepted", "refused")]
    assert kinds == [("accepted", None), ("refused", "id-conflict"), ("refused", "message-stale"), ("refused", "message-stale")]


def test_a_line_over_the_message_size_limit_is_refused_on_its_own(database_url, example, test_key):
    """Each line is judged as `POST /v1/messages` would judge it alone (PROTO-12.9-1), its size limit included."""
    gd = test_key(GD)
    small = sign_message(fresh(example("referral.submit")), gd)
    big_payload = fresh(example("referral.submit"))
    big_payload["body"] = dict(big_payload["body"], notes="x" * 5000)
    big = sign_message(big_payload, gd)
    with running_hub(database_url, max_message_bytes=4096) as hub:
        assert len(small) <= 4096 < len(big)
        assert_refused(hub.post_message(big), "message-too-large")
        answer = results(post_bulk(hub, [small, big]))
    assert [(r["status"], r.get("problem", {}).get("code")) for r in answer] == [(202, None), (413, "message-too-large")]
    assert query(database_url, "SELECT count(*) AS n FROM messages")[0]["n"] == 1


def test_a_body_with_too_many_lines_is_refused_before_the_rest_arrives(database_url, example, test_key):
    """PROTO-12.9-3: refused as soon as a byte of the line past the limit arrives; the rest of the body is never sent."""
    gd = test_key(GD)
    lines = [sign_message(fresh(example("referral.submit")), gd) for _ in range(4)]
    head = b"\n".join(lines) + b"\n"  # four lines; the body declares room for far more, which never comes
    with running_hub(database_url, bulk_max_lines=3, max_request_bytes=64 * 1024) as hub:
        parts = urlsplit(hub.base_url)
        with socket.create_connection((parts.hostname, parts.port), timeout=30) as client:
            client.sendall(f"POST /v1/messages/bulk HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: {BULK}\r\n"
                           f"Content-Length: {len(head) + 10_000}\r\n\r\n".encode() + head)
            answer = client.makefile("rb").read()  # the hub answers and closes without waiting for the rest
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.split()[1] == b"413", answer[:300]
    assert b'"code":"message-too-large"' in rest.replace(b" ", b"")
    assert query(database_url, "SELECT count(*) AS n FROM messages")[0]["n"] == 0


def test_lines_ended_refuses_a_byte_of_the_line_past_the_limit_wherever_the_chunks_split(database_url):
    from gateway.hub.http import _lines_ended
    from gateway.protocol.errors import ProtocolError

    def read(chunks: list[bytes], max_lines: int) -> bool:
        ended = 0
        try:
            for chunk in chunks:
                ended = _lines_ended(chunk, ended, max_lines)
        except ProtocolError as refusal:
            assert refusal.code == "message-too-large"
            return False
        return True

    body = b"a\nbb\nccc\n"
    for split in range(len(body) + 1):
        chunks = [body[:split], body[split:]]
        assert read(chunks, 3) and read(chunks, 4), split
        assert not read(chunks, 2), split
        assert read([body[:split], body[split:-1]], 3), "three lines, the last without its line feed"
        assert not read([body[:split], body[split:] + b"d"], 3), split
    assert read([b"\n\n"], 2) and not read([b"\n\n\n"], 2), "empty lines count"


def test_a_batch_that_fails_unexpectedly_answers_its_lines_each_and_the_body_still_gets_its_results(
    database_url, example, test_key
):
    """PROTO-12.9-2: one result a line, whatever fails. A fault in the batch is each line's `internal-error`, as
    `POST /v1/messages` would answer it alone, and a resend of those lines is then accepted once."""
    failures = {"left": 0}  # armed once the hub has started (its first batch imports the trust list)

    async def fail_once(batch_size: int) -> None:
        if failures["left"]:
            failures["left"] -= 1
            raise ValueError("an unexpected fault inside the batch")

    gd = test_key(GD)
    lines = [sign_message(fresh(example("referral.submit")), gd) for _ in range(3)]
    with running_hub(database_url, before_commit=fail_once) as hub:
        failures["left"] = 1
        first = results(post_bulk(hub, lines))
        assert query(database_url, "SELECT count(*) AS n FROM messages")[0]["n"] == 0, "nothing of the failed batch is written"
        again = results(post_bulk(hub, lines))
    assert [(r["status"], r["problem"]["code"]) for r in first] == [(500, "internal-error")] * 3
    assert [(r["status"], r["replayed"]) for r in again] == [(202, False)] * 3
    assert query(database_url, "SELECT count(*) AS n FROM messages")[0]["n"] == 3


def _payload(compact: bytes) -> bytes:
    import base64

    segment = compact.split(b".")[1]
    return base64.urlsafe_b64decode(segment + b"=" * (-len(segment) % 4))
