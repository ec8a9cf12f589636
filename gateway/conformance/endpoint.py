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

import itertools
import json
import time
from datetime import datetime, timezone
from typing import Any

import aiohttp

from gateway.conformance import crafting
from gateway.conformance.cases import Case, Result
from gateway.conformance.published_keys import test_key_path
from gateway.conformance.recipes import CaseRun, Sent, build_payload, resolve_value
from gateway.conformance.target import PreflightError, Target, check_clock, check_key_known

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


def attestation(hub_key: crafting.SigningKey, message: bytes, payload: dict[str, Any], local_view: dict[str, Any],
                **changes: Any) -> bytes:
    """The hub's `gba-attestation+jws` for a delivery of `message` (§9.2); `changes` break members on purpose."""
    statement = {"v": 1, "message_id": payload["id"], "message_digest": crafting.digest(message), "ledger_index": next(_LEDGER_INDEX),
                 "accepted_at": crafting.timestamp(datetime.now(timezone.utc)), "type": payload["type"], "from": payload["from"],
                 "to": payload["to"], "case": payload["case"], "local_view_digest": crafting.jcs_digest(local_view)}
    statement.update(changes)
    return crafting.compact(crafting.header_for(hub_key, crafting.ATTESTATION_TYP), crafting.dump(statement), hub_key.sign)


def _delivery(step: dict[str, Any], context: CaseRun) -> tuple[bytes, Sent, dict[str, Any]]:
    """The delivery object a step pushes, what it delivered, and the message's payload.

    `again: STEP` pushes that step's delivery object again, byte for byte; `redeliver: STEP` pushes its
    message again with a fresh attestation, as a hub's retry does (§12.4)."""
    if "again" in step:
        earlier = context.sent[step["again"]]
        return earlier.delivery, earlier, context.payloads[step["again"]]
    target = context.target
    if "redeliver" in step:
        earlier = context.sent[step["redeliver"]]
        message, payload = earlier.body, context.payloads[step["redeliver"]]
    else:
        payload, by = build_payload(step, context)
        message = crafting.mutate(step.get("mutation", "none"), payload, context.signer(by), splice=step.get("splice"))
    local_view: dict[str, Any] = {"texts": [], "schemes": [], "times": []}
    changes = {name: resolve_value(value, payload, context) for name, value in step.get("attest", {}).items()}
    assert target.hub_key is not None, "the preflight loads the hub key"
    signer = target.hub_key if step.get("attestation_key") != "sender" else context.key("self")
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
            body, sent, payload = _delivery(step, context)
            headers = {"Content-Type": step.get("content_type", "application/json")}
            async with session.post(target.url, data=body, headers=headers) as response:
                raw = await response.read()
                answer = {"status": response.status, "content_type": response.content_type, "body": raw[:8000].decode("utf-8", "replace"),
                          "raw": raw}
            result.evidence.append({"request": {"method": "POST", "path": target.url, "headers": headers, "bytes": len(body),
                                                "sha256": crafting.digest(body), "body": body[:4000].decode("utf-8", "replace")},
                                    "response": {k: v for k, v in answer.items() if k != "raw"}})
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


def judge_endpoint_step(step: dict[str, Any], sent: Sent, answer: dict[str, Any], context: CaseRun,
                        previous: Sent | None) -> tuple[dict[str, Any], list[str]]:
    """What the endpoint answered and how it differs from the step's expectation (none: an accepted receipt).

    `{"refused": CODE}` accepts either way a receiver may refuse a delivery it cannot attribute: a problem
    with that code, or a `rejected` receipt with it; never an accepted receipt."""
    expect = step.get("expect", {"status": 200, "receipt": "accepted"})
    actual: dict[str, Any] = {"status": answer["status"]}
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
