"""The endpoint role (docs/conformance.md): the suite plays the hub and pushes deliveries to an integrator's endpoint.

Each delivery is `{message, attestation, local_view}` (docs/protocol.md §9.3, §12.5): a
message signed with the sender's key, an attestation signed with a hub `receipt` key the
endpoint trusts. The suite checks the answer with its own code: a signed receipt from
the endpoint's jurisdiction naming the delivered message and its digest (§9.4,
PROTO-12.5-1), `accepted` or `rejected` with the expected code; `204` for a pushed
receipt (PROTO-9.4-2); a redelivery answered with the same receipt, byte for byte
(PROTO-9.4-3).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import time
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any

import aiohttp

from gateway.conformance import crafting, trust_lists, witness
from gateway.conformance.cases import Case, Result
from gateway.conformance.published_keys import test_key_path
from gateway.conformance.recipes import CaseRun, Sent, build_payload, resolve_value
from gateway.conformance.served_hub import ServedHub
from gateway.conformance.target import PreflightError, Target, check_clock, check_key_known, load_trust_document

_LEDGER_INDEX = itertools.count(1_000_000)


async def preflight(session: aiohttp.ClientSession, target: Target) -> dict[str, Any]:
    """Reachable (any HTTP answer to a GET of the push URL), clock within the skew, and the keys the suite signs
    with known to --trust: the sender's message key and the hub receipt key."""
    hub_key = target.hub_key or crafting.SigningKey.load(test_key_path("test-hub-receipt-1"))
    target.hub_key = hub_key
    check_key_known(target.key, target.jurisdiction, "message", target.trust, "--trust")
    check_key_known(hub_key, "hub", "receipt", target.trust, "--trust")
    if not any(key.owner == target.peer and key.use == "message" for key in target.trust.values()):
        raise PreflightError(f"--trust lists no message key of {target.peer}: the suite could not verify the endpoint's receipts")
    try:
        async with session.get(target.url) as response:
            date = response.headers.get("Date")
    except aiohttp.ClientSSLError as error:
        raise PreflightError(f"TLS with {target.url} failed: {error} (see --tls-ca, --tls-cert, --tls-key)") from None
    except (aiohttp.ClientError, OSError, TimeoutError) as error:
        raise PreflightError(f"cannot reach {target.url}: {type(error).__name__}: {error}") from None
    check_clock(date)
    return {"endpoint": target.url, "jurisdiction": target.peer}


@contextlib.asynccontextmanager
async def serving_hub(target: Target) -> AsyncIterator[None]:
    """With --serve-hub (endpoint role), the suite serves the endpoint's hub's trust list for the run's duration."""
    if target.serve_hub is None or target.hub_key is None:
        yield
        return
    publisher = trust_lists.TrustListPublisher(target.trust_document or load_trust_document(None), target.hub_key, target.endpoint_mode)
    served = ServedHub(*target.serve_hub, mode=target.endpoint_mode)
    served.serve(publisher.sound())
    try:
        await served.start()
    except OSError as error:
        raise PreflightError(f"cannot serve the hub at --serve-hub {target.serve_hub[0]}:{target.serve_hub[1]}: {error}") from None
    target.served_hub, target.trust_publisher = served, publisher
    try:
        yield
    finally:
        target.served_hub = target.trust_publisher = None
        await served.stop()


def attestation(hub_key: crafting.SigningKey, message: bytes, payload: dict[str, Any], local_view: dict[str, Any],
                **changes: Any) -> bytes:
    """The hub's `gba-attestation+jws` for a delivery of `message` (§9.2); `changes` break members on purpose."""
    statement = {"v": 1, "message_id": payload["id"], "message_digest": crafting.digest(message), "ledger_index": next(_LEDGER_INDEX),
                 "accepted_at": crafting.timestamp(datetime.now(timezone.utc)), "type": payload["type"], "from": payload["from"],
                 "to": payload["to"], "case": payload["case"], "local_view_digest": crafting.jcs_digest(local_view)}
    statement.update(changes)
    return crafting.compact(crafting.header_for(hub_key, crafting.ATTESTATION_TYP), crafting.dump(statement), hub_key.sign)


def _delivery(step: dict[str, Any], context: CaseRun, signer: crafting.Signer | None = None) -> tuple[bytes, Sent, dict[str, Any]]:
    """The delivery object a step pushes, what it delivered, and the message's payload.

    `again: STEP` pushes that step's delivery object again, byte for byte; `redeliver: STEP` pushes its
    message again with a fresh attestation, as a hub's retry does (§12.4). `signer` signs the message
    instead of the step's party (a key a served trust list introduced)."""
    if "again" in step:
        earlier = context.sent[step["again"]]
        return earlier.delivery, earlier, context.payloads[step["again"]]
    target = context.target
    if "redeliver" in step:
        earlier = context.sent[step["redeliver"]]
        message, payload = earlier.body, context.payloads[step["redeliver"]]
    else:
        payload, by = build_payload(step, context)
        message = crafting.mutate(step.get("mutation", "none"), payload, signer or context.signer(by), splice=step.get("splice"))
    local_view: dict[str, Any] = {"texts": [], "schemes": [], "times": []}
    changes = {name: resolve_value(value, payload, context) for name, value in step.get("attest", {}).items()}
    assert target.hub_key is not None, "the preflight loads the hub key"
    signer = {"sender": context.key("self"), "unknown": trust_lists.new_message_key("hub")}.get(step.get("attestation_key", ""), target.hub_key)
    statement = attestation(signer, message, payload, local_view, **changes)
    if step.get("attestation_mutation") == "flip-signature":
        statement = crafting.flip_signature(statement)
    delivery: dict[str, Any] = {"message": message.decode("ascii"), "attestation": statement.decode("ascii"), "local_view": local_view}
    if step.get("delivery") == "extra-member":
        delivery["note"] = "x"
    body = json.dumps(delivery, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    attested = changes.get("message_digest", crafting.digest(message))
    # A receipt answers what the hub attested: its id, digest, sender and case (§9.2: "to the right sender").
    return body, Sent(changes.get("message_id", payload["id"]), changes.get("case", payload["case"]), changes.get("from", payload["from"]),
                      message, digest=attested, delivery=body), payload


async def run_endpoint_case(session: aiohttp.ClientSession, target: Target, case: Case) -> Result:
    started = time.monotonic()
    result = Result(case.id, case.title, list(case.requirements), "error", case.expect, tags=list(case.tags))
    context = CaseRun(target)
    context.readdress_borrowed = False
    try:
        for number, step in enumerate(case.steps, 1):
            if "witness" in step:
                result.actual, wrong = await _witness_step(session, step, context, result)
                if wrong:
                    result.verdict, result.reason = "fail", "; ".join(wrong)
                    break
                continue
            if "trust_list" in step:
                body, sent, payload, answer = await _push_under_trust_list(session, step, context, result)
            else:
                body, sent, payload = _delivery(step, context)
                answer = await _push(session, target, body, step, result)
            name = step.get("name", f"step{number}")
            context.payloads[name] = payload
            previous = context.sent.get(step.get("again", step.get("redeliver", "")))
            context.sent[name] = Sent(sent.id, sent.case, sent.sender, sent.body, answer=answer, digest=sent.digest, delivery=sent.delivery)
            actual, wrong = judge_endpoint_step(step, context.sent[name], answer, context, previous)
            result.actual = actual
            if wrong:
                result.verdict, result.reason = "fail", (f"step {number}: " if len(case.steps) > 1 else "") + "; ".join(wrong)
                break
        else:
            result.verdict = "pass"
    except crafting.NotApplicable as reason:
        result.verdict, result.reason = "skip", str(reason)
    except (aiohttp.ClientError, OSError, TimeoutError) as error:
        result.reason = f"the request failed: {type(error).__name__}: {error}"
    result.seconds = time.monotonic() - started
    return result


async def _push(session: aiohttp.ClientSession, target: Target, body: bytes, step: dict[str, Any], result: Result) -> dict[str, Any]:
    """POST one delivery to the endpoint; its answer, with the exchange added to the evidence."""
    headers = {"Content-Type": step.get("content_type", "application/json")}
    async with session.post(target.url, data=body, headers=headers) as response:
        raw = await response.read()
        answer = {"status": response.status, "content_type": response.content_type, "body": raw[:8000].decode("utf-8", "replace"),
                  "raw": raw}
    result.evidence.append({"request": {"method": "POST", "path": target.url, "headers": headers, "bytes": len(body),
                                        "sha256": crafting.digest(body), "body": body[:4000].decode("utf-8", "replace")},
                            "response": {k: v for k, v in answer.items() if k != "raw"}})
    return answer


async def _post_witness(session: aiohttp.ClientSession, url: str, body: bytes, result: Result) -> tuple[int, str, bytes]:
    async with session.post(url, data=body, headers={"Content-Type": "text/plain"}) as response:
        raw = await response.read()
        answer = (response.status, response.content_type, raw)
    result.evidence.append({"request": {"method": "POST", "path": url, "headers": {}, "bytes": len(body), "sha256": crafting.digest(body),
                                        "body": body.decode("utf-8", "replace")},
                            "response": {"status": answer[0], "content_type": answer[1], "body": raw[:4000].decode("utf-8", "replace")}})
    return answer


async def _witness_step(session: aiohttp.ClientSession, step: dict[str, Any], context: CaseRun,
                        result: Result) -> tuple[dict[str, Any], list[str]]:
    """Learn the size the witness holds for the suite's log, send the add-checkpoint request `step["witness"]` names
    (gateway/conformance/witness.py), and judge the answer as C2SP tlog-witness says (PROTO-13.5-1)."""
    target = context.target
    if not target.witness_url:
        raise crafting.NotApplicable("no --witness: the suite knows no witness of the endpoint's jurisdiction to test")
    publics = [crafting.b64url_decode(key.jwk["x"]) for key in target.trust.values() if key.owner == target.peer and key.use == "witness"]
    if not publics:
        raise crafting.NotApplicable(f"--trust lists no witness key of {target.peer}: the suite could not verify a cosignature")
    log_key = crafting.SigningKey.load(test_key_path("test-hub-checkpoint-1"))
    url = target.witness_url.rstrip("/") + "/add-checkpoint"
    status, content_type, raw = await _post_witness(session, url, witness.sync_request(target.log_origin, log_key), result)
    if status == 200:
        held = 1
    elif status == 409 and raw.strip().isdigit():
        held = int(raw)
    else:
        return {"status": status}, [f"the witness answered {status} to a first checkpoint of the suite's log, not 200 or 409 with its "
                                    f"size: is the log {witness.log_vkey(target.log_origin, log_key)} in its configuration?"]
    request = witness.craft(step["witness"], target.log_origin, log_key, held)
    status, content_type, raw = await _post_witness(session, url, request.body, result)
    expect = step["expect"]
    actual: dict[str, Any] = {"status": status}
    if status != expect["status"]:
        return actual, [f"status: expected {expect['status']}, got {status} (PROTO-13.5-1)"]
    wrong = []
    if expect.get("size") == "held":
        actual["size"] = raw.decode("ascii", "replace").strip()
        if raw != f"{held}\n".encode() or content_type != witness.TLOG_SIZE:
            wrong.append(f"a 409 must carry the size the witness holds ({held}) as {witness.TLOG_SIZE}, got {content_type} "
                         f"{raw[:40]!r} (PROTO-13.5-1)")
    if expect.get("cosigned"):
        faults = []
        for public in publics:
            try:
                witness.verify_cosignature(raw, request.checkpoint, public)
                break
            except witness.CosignatureInvalid as error:
                faults.append(str(error))
        else:
            wrong.append(f"{faults[0]} (PROTO-13.5-1)")
        # Recorded before it answered: asked from old 0 again, it must name the size it just cosigned.
        status, content_type, raw = await _post_witness(session, url, witness.sync_request(target.log_origin, log_key), result)
        if (status, raw) != (409, f"{request.size}\n".encode()):
            wrong.append(f"after cosigning size {request.size} the witness answered {status} {raw[:40]!r} from old 0, "
                         f"not 409 with that size: it did not record what it cosigned (PROTO-13.5-1)")
    return actual, wrong


async def _push_under_trust_list(session: aiohttp.ClientSession, step: dict[str, Any], context: CaseRun,
                                 result: Result) -> tuple[bytes, Sent, dict[str, Any], dict[str, Any]]:
    """Serve the list `step["trust_list"]` names (gateway/conformance/trust_lists.py) introducing a fresh key of the
    sender, and push messages signed with that key until the endpoint has fetched the list; then push one more, the
    judged one: its answer shows whether the endpoint took the list (accepted) or refused it (`key-unknown`)."""
    target = context.target
    served, publisher = target.served_hub, target.trust_publisher
    if served is None or publisher is None:
        raise crafting.NotApplicable("no --serve-hub: the suite does not play the endpoint's hub, so it cannot serve it a trust list")
    fault = step["trust_list"]
    if fault == "test-mode" and target.endpoint_mode != "production":
        raise crafting.NotApplicable("the endpoint is not declared a production consumer (--endpoint-mode production)")
    new_key = trust_lists.new_message_key(target.jurisdiction)
    signer = crafting.Signer(new_key, {})
    signed_list = publisher.craft(fault, new_key, target.jurisdiction, target.key)
    served.serve(signed_list)
    deadline = time.monotonic() + target.trust_fetch_seconds
    try:
        while True:
            # An endpoint reads a new list when a statement names a kid it does not know (at most once per its own
            # interval) or on its own schedule: each push names the new kid; the wait ends at the fetch or the deadline.
            body, _, _ = _delivery(step, context, signer)
            await _push(session, target, body, step, result)
            if served.fetches:
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise crafting.NotApplicable(f"the endpoint did not fetch GET /v1/trust-list from the suite within {target.trust_fetch_seconds:g} s "
                                             "(is --serve-hub its hub URL? a longer --trust-fetch-wait for an endpoint that fetches on a schedule)")
            await served.wait_for_fetch(min(1.0, remaining))
            if served.fetches:
                break
        result.evidence.append({"request": {"method": "GET", "path": f"/v1/trust-list (the endpoint fetched it from the suite, "
                                                             f"{served.fetches} time(s)): {trust_lists.FAULTS[fault]}",
                                            "headers": {}, "bytes": 0, "sha256": "", "body": ""},
                                "response": {"status": 200, "content_type": "application/jose", "body": signed_list[:8000].decode("ascii")}})
        body, sent, payload = _delivery(step, context, signer)
        return body, sent, payload, await _push(session, target, body, step, result)
    finally:
        served.serve(publisher.sound())


def judge_endpoint_step(step: dict[str, Any], sent: Sent, answer: dict[str, Any], context: CaseRun,
                        previous: Sent | None) -> tuple[dict[str, Any], list[str]]:
    """What the endpoint answered and how it differs from the step's expectation (none: an accepted receipt).

    `{"problem": CODE}` wants a 4xx problem with that code and nothing else (PROTO-12.5-3). `{"refused": CODE}` accepts either way a receiver may refuse a delivery it cannot attribute: a problem
    with that code, or a `rejected` receipt with it; never an accepted receipt."""
    expect = step.get("expect", {"status": 200, "receipt": "accepted"})
    actual: dict[str, Any] = {"status": answer["status"]}
    if "problem" in expect:
        if not 400 <= answer["status"] < 500:
            return actual, [f"status: expected a 4xx problem, got {answer['status']} (PROTO-12.5-3)"]
        actual["code"] = _problem_code(answer)
        wrong = [] if actual["code"] == expect["problem"] else [f"code: expected {expect['problem']!r}, got {actual['code']!r}"]
        if answer["content_type"] != "application/problem+json":
            wrong.append(f"a refusal with Content-Type {answer['content_type']!r}, not application/problem+json (PROTO-12.5-3)")
        return actual, wrong
    if "refused" in expect:
        if answer["status"] >= 400:
            code = _problem_code(answer)
            actual["code"] = code
            return actual, ([] if code == expect["refused"] else [f"code: expected {expect['refused']!r}, got {code!r}"])
        expect = {"status": 200, "receipt": "rejected", "code": expect["refused"]}
    if answer["status"] != expect["status"]:
        code = _problem_code(answer) if answer["status"] >= 400 else None
        if code:
            actual["code"] = code
        return actual, [f"status: expected {expect['status']}, got {answer['status']}" + (f" ({code})" if code else "")]
    if expect["status"] == 204:
        return actual, (["a pushed receipt was answered with a body: a receipt of a receipt (PROTO-9.4-2)"] if answer["raw"] else [])
    receipt, wrong = receipt_faults(answer, sent, context.target)
    actual["receipt"] = receipt.get("status")
    if "code" in receipt:
        actual["code"] = receipt["code"]
    if not wrong:
        if receipt.get("status") != expect.get("receipt"):
            wrong.append(f"receipt status: expected {expect.get('receipt')!r}, got {receipt.get('status')!r}")
        elif "code" in expect and receipt.get("code") != expect["code"]:
            wrong.append(f"receipt code: expected {expect['code']!r}, got {receipt.get('code')!r}")
    if previous is not None and answer["raw"] != previous.answer.get("raw"):
        wrong.append("the redelivery was answered with another receipt, not the same bytes (PROTO-9.4-3)")
    return actual, wrong


def _problem_code(answer: dict[str, Any]) -> str | None:
    try:
        document = json.loads(answer["raw"])
    except ValueError:
        return None
    return document.get("code") if isinstance(document, dict) else None


def receipt_faults(answer: dict[str, Any], sent: Sent, target: Target) -> tuple[dict[str, Any], list[str]]:
    """The receipt body of a push answer, and how it differs from §9.4 and §6.11: media type, signed by the endpoint's
    jurisdiction, addressed to the sender in the case, naming the delivered message's id and digest."""
    if answer["content_type"] != "application/jose":
        return {}, [f"a receipt with Content-Type {answer['content_type']!r}, not application/jose (PROTO-12.5-1)"]
    try:
        payload = crafting.verify_compact(answer["raw"], target.trust, crafting.MESSAGE_TYP, target.peer, "message")
    except crafting.StatementInvalid as error:
        return {}, [f"the receipt does not verify: {error} (PROTO-9.4-1)"]
    body = payload.get("body") if isinstance(payload.get("body"), dict) else {}
    faults = []
    if payload.get("type") != "receipt":
        faults.append(f"the answer is a {payload.get('type')!r}, not a receipt (PROTO-9.4-1)")
    if (payload.get("from"), payload.get("to"), payload.get("case")) != (target.peer, sent.sender, sent.case):
        faults.append("the receipt is not from the endpoint to the message's sender in its case (§9.4)")
    if payload.get("reply_to") != sent.id or body.get("message_id") != sent.id:
        faults.append("the receipt's reply_to and body.message_id are not the delivered message's id (PROTO-6.11-1)")
    if body.get("message_digest") != sent.digest:
        faults.append("the receipt names another digest than the one the hub attested for the message (PROTO-6.11-1, PROTO-9.4-1)")
    if ("code" in body) != (body.get("status") == "rejected"):
        faults.append("the receipt carries a code exactly when it is not rejected (PROTO-6.11-2)")
    return body, faults
