"""The hub role of the conformance runner (docs/conformance.md), and `run`, which drives either role.

For each case the runner crafts every step's request itself (gateway/conformance/crafting.py,
recipes.py), sends it over HTTP, and compares the answer with the step's expectation down
to the catalogue code, using only the suite's own checks and the shipped catalogue
(conformance/catalogue.json): never the hub's validators. A step without an expectation sets
the case up and must succeed. The endpoint role is gateway/conformance/endpoint.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any

import aiohttp
from aiohttp import web

from gateway.conformance import crafting, merkle, transport
from gateway.conformance.cases import Case, Result
from gateway.conformance.crafting import NotApplicable, StatementInvalid, TrustedKey
from gateway.conformance.recipes import CaseRun, Sent, answer_document, build_payload, speaks_for_others
from gateway.conformance.push_receiver import PushReceiver
from gateway.conformance.requirements import catalogue
from gateway.conformance.target import PreflightError, Target, check_clock, check_key_known, http_get


async def preflight(session: aiohttp.ClientSession, target: Target) -> dict[str, Any]:
    """Hub role: reachable (with the TLS given), a test system (unless allowed), clock within MAX_SKEW_SECONDS,
    the suite's key known to the target and to --trust; returns what `/v1/about` said."""
    try:
        status, headers, body = await http_get(session, target.url + "/v1/about")
    except aiohttp.ClientSSLError as error:
        raise PreflightError(f"TLS with {target.url} failed: {error} (see --tls-ca, --tls-cert, --tls-key)") from None
    except (aiohttp.ClientError, OSError, TimeoutError) as error:
        raise PreflightError(f"cannot reach {target.url}: {type(error).__name__}: {error}") from None
    if status != 200:
        raise PreflightError(f"GET /v1/about answered {status}: is {target.url} a GBA hub?")
    try:
        about = json.loads(body)
    except ValueError:
        raise PreflightError(f"GET /v1/about did not answer JSON: is {target.url} a GBA hub?") from None
    if about.get("mode") != "test" and not target.allow_production:
        raise PreflightError(f"{target.url} says it runs in mode {about.get('mode')!r}: the suite runs against test systems only "
                             "(--allow-production overrides)")
    check_clock(headers.get("Date"))
    check_key_known(target.key, target.jurisdiction, "message", target.trust, "--trust")
    try:
        status, _, body = await http_get(session, target.url + "/v1/trust-list")
        hub_keys = crafting.read_trust_list(json.loads(crafting.b64url_decode(body.split(b".")[1].decode())))
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError, IndexError, KeyError) as error:
        raise PreflightError(f"cannot read the target's trust list (GET /v1/trust-list): {type(error).__name__}") from None
    check_key_known(target.key, target.jurisdiction, "message", hub_keys, f"{target.url}'s trust list")
    try:
        status, _, body = await http_get(session, target.url + "/openapi.json")
        target.public_url = json.loads(body)["servers"][0]["url"].rstrip("/") if status == 200 else target.url
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError, KeyError, IndexError, TypeError):
        target.public_url = target.url
    return about


def _message_bytes(step: dict[str, Any], context: CaseRun) -> tuple[bytes, dict[str, Any] | None, str]:
    """The bytes a message step sends, their payload (None for a resend) and their sender."""
    if "resend" in step:
        earlier = context.sent[step["resend"]]
        return earlier.body, None, earlier.sender
    payload, by = build_payload(step, context)
    body = crafting.mutate(step.get("mutation", "none"), payload, context.signer(by), splice=step.get("splice"))
    return body, payload, payload["from"]


def _proof(step: dict[str, Any], context: CaseRun, method: str, path: str, body: bytes) -> bytes | None:
    kind = step.get("proof", "valid")
    if kind == "none":
        return None
    if kind.startswith("replay:"):
        return context.sent[kind.split(":", 1)[1]].proof
    key = context.key(step.get("proof_by", step.get("by", "self")))
    url = context.target.public_url + path
    if kind == "valid":
        return crafting.request_proof(key, method, url, body)
    if kind == "stale":
        return crafting.request_proof(key, method, url, body, iat=int(time.time()) - 900)
    if kind == "wrong-method":
        return crafting.request_proof(key, "POST" if method == "GET" else "GET", url, body)
    if kind == "wrong-url":
        return crafting.request_proof(key, method, url + "x", body)
    if kind == "wrong-body":
        return crafting.request_proof(key, method, url, body + b" ")
    if kind == "extra-member":
        return crafting.request_proof(key, method, url, body, nonce="x")
    if kind == "flip-signature":
        return crafting.flip_signature(crafting.request_proof(key, method, url, body))
    raise ValueError(f"unknown proof {kind!r}")


def _request(step: dict[str, Any], context: CaseRun) -> tuple[str, str, bytes, dict[str, str], Sent]:
    """The HTTP request of a step: method, path, body, headers, and what it sent."""
    kind = step.get("request", "message")
    sent = Sent()
    if kind in ("message", "receipt", *_RAW):
        body, payload, sender = _message_bytes(step, context)
        sent = Sent(payload["id"] if payload else context.sent[step["resend"]].id,
                    payload["case"] if payload else context.sent[step["resend"]].case, sender, body, payload=payload)
        method, path = "POST", "/v1/receipts" if kind == "receipt" else "/v1/messages"
        headers = {"Content-Type": step.get("content_type", "application/jose")}
    elif kind == "bulk":
        lines = []
        for number, line in enumerate(step["lines"], 1):
            if "raw" in line:
                lines.append(line["raw"].encode("ascii"))
                continue
            line_body, payload, sender = _message_bytes(line, context)
            earlier = context.sent.get(line.get("resend", ""))
            line_sent = Sent(payload["id"] if payload else earlier.id, payload["case"] if payload else earlier.case, sender, line_body,
                             payload=payload)
            # Later lines (and steps) refer to a line by its name, as to a step (§12.9: a line sees earlier lines' effects).
            context.sent[line.get("name", f"line{number}")] = line_sent
            if payload is not None:
                context.payloads[line.get("name", f"line{number}")] = payload
            sent.lines.append(line_sent)
            lines.append(line_body)
        sent.recipes = step["lines"]
        method, path, body = "POST", "/v1/messages/bulk", b"\n".join(lines) + b"\n"
        headers = {"Content-Type": step.get("content_type", "application/vnd.gba.jose-lines")}
    elif kind == "status":
        method, path, body, headers = "GET", f"/v1/messages/{context.sent[step['of']].id}", b"", {}
    elif kind in _PULLS or kind in _PUBLIC_GETS:
        method, path, body, headers = "GET", {**_PULLS, **_PUBLIC_GETS}[kind][0], b"", {}
    elif kind == "http":
        method, path, body, headers = step["method"], step["path"], step.get("body", "").encode(), {}
    else:
        raise ValueError(f"unknown request {kind!r}")
    if kind in ("receipt", "status", *_PULLS):
        sent.proof = _proof(step, context, method, path, body)
        if sent.proof is not None:
            headers["GBA-Request-Proof"] = sent.proof.decode("ascii")
    if kind in _PULLS or kind in _PUBLIC_GETS:
        path += "?" + re.sub(r"\$([a-z-]+):([A-Za-z0-9_-]+)", lambda match: str(_query_value(match[1], match[2], context)),
                             step.get("query", {**_PULLS, **_PUBLIC_GETS}[kind][1]))
    return method, path, body, headers, sent


_PULLS = {"inbox": ("/v1/inbox", "after=-1&limit=500"), "ledger-entries": ("/v1/ledger/entries", ""),
          "ledger-inclusion": ("/v1/ledger/proof/inclusion", "")}
"""GET requests with a request proof: path and default query."""

_PUBLIC_GETS = {"ledger-consistency": ("/v1/ledger/proof/consistency", "")}
"""Public GET requests whose query names earlier steps' values: path and default query."""


def _query_value(kind: str, name: str, context: CaseRun) -> int:
    """`$cursor:STEP` (the cursor an inbox step got), `$ledger-index:STEP` (the ledger index its hub receipt names)
    and `$ledger-size:STEP` (that index + 1, the tree head of a one-message commit)."""
    if kind == "cursor":
        return answer_document(context.sent[name].answer)["cursor"]
    index = ledger_index(context.sent[name])
    if kind == "ledger-index":
        return index
    if kind == "ledger-size":
        return index + 1
    raise ValueError(f"unknown query value ${kind}")


def ledger_index(sent: Sent) -> int:
    """The ledger index the hub receipt of an accepted message names (§9.1; the step verified the receipt)."""
    receipt = answer_document(sent.answer)["hub_receipt"]
    return json.loads(crafting.b64url_decode(receipt.split(".")[1]))["ledger_index"]


def _evidence(method: str, path: str, headers: dict[str, str], body: bytes, answer: dict[str, Any]) -> dict[str, Any]:
    return {"request": {"method": method, "path": path, "headers": headers, "bytes": len(body), "sha256": crafting.digest(body),
                        "body": body[:4000].decode("ascii", "replace")}, "response": answer}


async def run_hub_case(session: aiohttp.ClientSession, target: Target, case: Case) -> Result:
    started = time.monotonic()
    result = Result(case.id, case.title, list(case.requirements), "error", case.expect, tags=list(case.tags))
    context = CaseRun(target)
    try:
        check_profile(case, target)
        if target.client_certificate and case.profile != "mutual-tls" and speaks_for_others(case, context):
            raise NotApplicable("the case speaks for another jurisdiction, and the client certificate names only yours (PROTO-12.8-3)")
        for number, step in enumerate(case.steps, 1):
            if "after_seconds" in step:
                # The protocol's own clock must pass a point (a deadline): a wait for time, not for an event.
                await asyncio.sleep(max(0.0, (context.now - datetime.now(timezone.utc)).total_seconds() + step["after_seconds"]))
            wrong: list[str] = []
            for _ in range(_repetitions(step, target)):
                wrong = await _run_step(session, target, step, number, context, result)
                if wrong:
                    break
            if wrong:
                result.verdict, result.reason = "fail", (f"step {number}: " if len(case.steps) > 1 else "") + "; ".join(wrong)
                break
        else:
            result.verdict = "pass"
    except NotApplicable as reason:
        result.verdict, result.reason = "skip", str(reason)
    except (aiohttp.ClientError, OSError, TimeoutError) as error:
        result.reason = f"the request failed: {type(error).__name__}: {error}"
    result.seconds = time.monotonic() - started
    return result


async def _answer_push(target: Target, step: dict[str, Any], context: CaseRun, result: Result) -> list[str]:
    """Wait for the hub to push step `push`'s message to the suite (--receive-at), check the delivery (§9.3), and answer
    it as `answer` says: `receipt` (an accepted receipt from --to), `http-500`, `wrong-media-type` (that receipt as
    text/plain), `wrong-digest` (a receipt naming another digest), `third-party` (a receipt signed by a third
    jurisdiction). With `expect.redelivered`, this push is the hub trying again after an earlier bad answer."""
    receiver = target.push_receiver
    assert receiver is not None, "check_profile requires --receive-at"
    sent = context.sent[step["push"]]
    redelivery = step.get("expect", {}).get("redelivered", False)
    push = await receiver.next_push(sent.body, target.push_wait_seconds)
    if push is None:
        return [f"the hub did not push the message {'again after the bad answer ' if redelivery else ''}within "
                f"{target.push_wait_seconds:g} s" + (" (PROTO-12.5-2)" if redelivery else " (PROTO-12.4-1)")]
    wrong = inbox_faults({"deliveries": [json.loads(push.body)]}, sent, target.trust)
    kind = step["answer"]
    if kind == "http-500":
        response = web.Response(status=500)
    else:
        by = "third" if kind == "third-party" else "peer"
        edits = [["set", "/body/message_digest", "$wrong-digest"]] if kind == "wrong-digest" else []
        payload, _ = build_payload({"template": "receipt", "by": by, "receipt_of": step["push"], "edits": edits}, context)
        receipt = crafting.mutate("none", payload, context.signer(by))
        response = web.Response(status=200, body=receipt, content_type="text/plain" if kind == "wrong-media-type" else "application/jose")
    push.answer.set_result(response)
    result.evidence.append({"request": {"method": "POST", "path": "(the hub pushed to --receive-at)", "headers": {}, "bytes": len(push.body),
                                        "sha256": crafting.digest(push.body), "body": push.body[:4000].decode("utf-8", "replace")},
                            "response": {"status": response.status, "content_type": response.content_type,
                                         "body": (response.body or b"")[:4000].decode("utf-8", "replace")}})
    if "expect" in step:
        result.actual = {"pushed": True, "redelivered": redelivery}
    return wrong


def check_profile(case: Case, target: Target) -> None:
    """NotApplicable unless the target offers the set-up the case's `profile` needs (docs/conformance.md, "Profiles")."""
    if case.profile == "mutual-tls" and not target.client_certificate:
        raise NotApplicable("the run has no client certificate (--tls-cert): the mutual-TLS cases need a hub that asks for one")
    if case.profile == "rate-limit" and not target.rate_burst:
        raise NotApplicable("no --rate-burst: the suite does not know the hub's per-jurisdiction budget and does not flood it blindly")
    if case.profile == "push-receiver" and target.push_receiver is None:
        raise NotApplicable("no --receive-at: the suite is not the push endpoint of --to, so it cannot answer the hub's pushes")
    if case.profile == "body-deadline" and not target.body_deadline:
        raise NotApplicable("no --body-deadline: the suite does not know how long the hub waits for a body")


def _repetitions(step: dict[str, Any], target: Target) -> int:
    """How many times a step is sent (each time with a fresh message): `repeat` is a number, `burst` or `burst+1`."""
    repeat = step.get("repeat", 1)
    if repeat in ("burst", "burst+1"):
        return (target.rate_burst or 0) + (repeat == "burst+1")
    return int(repeat)


async def _run_step(session: aiohttp.ClientSession, target: Target, step: dict[str, Any], number: int, context: CaseRun,
                    result: Result) -> list[str]:
    """Send one step's request and judge the answer; what differs from the expectation."""
    if "push" in step:
        return await _answer_push(target, step, context, result)
    if "poll_seconds" in step:
        # The hub finishes what a push answer started after the answer: the status is read again until it says what the
        # step expects or the step's deadline passes.
        deadline = time.monotonic() + step["poll_seconds"]
        while True:
            wrong = await _run_step(session, target, {k: v for k, v in step.items() if k != "poll_seconds"}, number, context, result)
            if not wrong or time.monotonic() > deadline:
                return wrong
            await asyncio.sleep(0.2)
    method, path, body, headers, sent = _request(step, context)
    kind = step.get("request", "message")
    if kind in _RAW:
        answer = await _raw(target, step, method, path, headers, body)
    elif "tls" in step:
        connector = aiohttp.TCPConnector(ssl=transport.client_context(target, step["tls"]))
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60), connector=connector) as other:
            try:
                answer = await _exchange(other, target, method, path, body, headers)
            except (aiohttp.ClientError, OSError) as error:
                if step.get("expect", {}).get("handshake") != "refused":
                    raise
                answer = {"status": None, "content_type": "", "body": f"no HTTP answer: {type(error).__name__}", "raw": b""}
    else:
        answer = await _exchange(session, target, method, path, body, headers)
    result.evidence.append(_evidence(method, path, headers, body, {k: v for k, v in answer.items() if k != "raw"}))
    sent.answer = answer
    name = step.get("name", f"step{number}")
    context.sent[name] = sent
    if sent.payload is not None:
        context.payloads[name] = sent.payload
    actual, wrong = judge_hub_step(step, sent, answer, context)
    if "expect" in step or wrong:
        result.actual = actual
    return wrong


async def _exchange(session: aiohttp.ClientSession, target: Target, method: str, path: str, body: bytes,
                    headers: dict[str, str]) -> dict[str, Any]:
    async with session.request(method, target.url + path, data=body or None, headers=headers) as response:
        raw = await response.read()
        return {"status": response.status, "content_type": response.content_type, "body": raw[:8000].decode("utf-8", "replace"),
                "raw": raw, "retry_after": response.headers.get("Retry-After")}


_RAW = ("declared-too-large", "slow-body")
"""Message requests written by hand (gateway/conformance/transport.py): a Content-Length over the size limit with
no body, and a body that stops half-way."""

_DECLARED_TOO_LARGE = 64 * 1024 * 1024
"""A Content-Length far over any message size limit (PROTO-4.5-1): the hub must answer before reading a byte."""


async def _raw(target: Target, step: dict[str, Any], method: str, path: str, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    if step["request"] == "declared-too-large":
        declared, sent_part, within = _DECLARED_TOO_LARGE, b"", 30.0
    else:
        assert target.body_deadline is not None, "check_profile requires --body-deadline"
        # Half the body, then nothing: the hub must give up at its deadline, so the answer is awaited a margin past it.
        declared, sent_part, within = len(body), body[: len(body) // 2], target.body_deadline + 15.0
    try:
        return await transport.raw_exchange(target, method, path, dict(headers, **{"Content-Length": str(declared)}), sent_part, within)
    except (TimeoutError, asyncio.IncompleteReadError):
        return {"status": None, "content_type": "", "body": f"no answer within {within:g} s", "raw": b""}


def judge_hub_step(step: dict[str, Any], sent: Sent, answer: dict[str, Any], context: CaseRun) -> tuple[dict[str, Any], list[str]]:
    """What the answer was and how it differs from the step's expectation (a setup step: from success)."""
    document = answer_document(answer)
    actual: dict[str, Any] = {"status": answer["status"]}
    if isinstance(document, dict):
        actual.update({name: document[name] for name in ("code", "replayed", "where") if name in document})
    expect = step.get("expect")
    if expect is None:
        if answer["status"] is None or not 200 <= answer["status"] < 300:
            return actual, [f"a set-up request was answered {answer['status']} {actual.get('code', '')}".rstrip()]
        return actual, []
    if expect.get("handshake") == "refused":
        if answer["status"] is not None:
            return actual, [f"the hub answered {answer['status']} to a client whose certificate its authority did not issue (PROTO-12.8-1)"]
        return actual, []
    if answer["status"] is None:
        return actual, [answer["body"]]
    wrong = [f"{name}: expected {value!r}, got {actual.get(name)!r}" for name, value in expect.items()
             if name in ("status", "code", "replayed", "where") and actual.get(name) != value]
    if answer["status"] >= 400:
        wrong += problem_faults(answer, document, sent)
    if expect.get("retry_after") and not (answer.get("retry_after") or "").isdigit():
        wrong.append(f"Retry-After is {answer.get('retry_after')!r}, not a number of seconds (PROTO-12.8-4)")
    if expect.get("closed") and not answer.get("closed"):
        wrong.append("the hub kept the connection open after refusing a body it did not read (PROTO-12.8-5)")
    if expect.get("hub_receipt"):
        wrong += hub_receipt_faults(document, sent, context.target.trust)
    if "lines" in expect:
        wrong += bulk_faults(answer, expect["lines"], sent, context)
    if "delivers" in expect:
        wrong += inbox_faults(document, context.sent[expect["delivers"]], context.target.trust)
    if "withholds" in expect and not inbox_faults(document, context.sent[expect["withholds"]], context.target.trust):
        wrong.append("a message was offered before an earlier message of its case was acknowledged (PROTO-12.4-2)")
    if "entry_of" in expect:
        wrong += entry_faults(document, context.sent[expect["entry_of"]], context.payloads.get(expect["entry_of"], {}))
    if "hides" in expect and isinstance(document, dict):
        hidden = ledger_index(context.sent[expect["hides"]])
        if any(item.get("index") == hidden for item in document.get("entries", [])):
            wrong.append("the ledger shows an entry to a jurisdiction that is not its party (PROTO-13.6-1)")
    if "inclusion_of" in expect:
        wrong += inclusion_faults(document, context.sent[expect["inclusion_of"]])
    if "consistent" in expect:
        wrong += consistency_faults(document, *(context.sent[name] for name in expect["consistent"]))
    if "message_status" in expect and isinstance(document, dict) and document.get("status") != expect["message_status"]:
        wrong.append(f"status of the message: expected {expect['message_status']!r}, got {document.get('status')!r}")
    return actual, wrong


def bulk_faults(answer: dict[str, Any], expected: list[dict[str, Any]], sent: Sent, context: CaseRun) -> list[str]:
    """How a bulk answer differs from §12.9: NDJSON, one result a line in order, each line's result as expected (status,
    code, replayed), a verified hub receipt for each accepted line and a catalogue problem for each refused one."""
    if answer["content_type"] != "application/x-ndjson":
        return [f"a bulk answer with Content-Type {answer['content_type']!r}, not application/x-ndjson (PROTO-12.9-2)"]
    try:
        results = [json.loads(text) for text in answer["raw"].decode("utf-8").splitlines()]
    except ValueError:
        return ["a bulk answer whose lines are not JSON objects (PROTO-12.9-2)"]
    if len(results) != len(expected) or any(not isinstance(r, dict) or r.get("line") != n for n, r in enumerate(results, 1)):
        return [f"{len(results)} results for {len(expected)} lines, or not numbered 1, 2, ... in order (PROTO-12.9-2)"]
    wrong: list[str] = []
    bodies = iter(sent.lines)
    for number, (result, want, recipe) in enumerate(zip(results, expected, sent.recipes), 1):
        problem = result.get("problem") if isinstance(result.get("problem"), dict) else {}
        got = {"status": result.get("status"), "code": problem.get("code"), "replayed": result.get("replayed")}
        wrong += [f"line {number}: {name} expected {value!r}, got {got.get(name)!r}" for name, value in want.items() if got.get(name) != value]
        line_sent = None if "raw" in recipe else next(bodies)
        if result.get("status") == 202 and line_sent is not None:
            wrong += [f"line {number}: {fault}" for fault in hub_receipt_faults(result, line_sent, context.target.trust)]
        elif result.get("status") != 202:
            fake = {"content_type": "application/problem+json", "status": result.get("status")}
            wrong += [f"line {number}: {fault}" for fault in problem_faults(fake, problem, line_sent or Sent())]
            if problem.get("status") != result.get("status"):
                wrong.append(f"line {number}: the line's status is not its problem's (PROTO-12.9-2)")
    return wrong


def problem_faults(answer: dict[str, Any], document: Any, sent: Sent) -> list[str]:
    """How a refusal differs from §11.1 and §12.1-6: media type, a catalogue code with its status and requirement,
    and no value of the refused input (the message's id and case) in `detail` or `where`."""
    if answer["content_type"] != "application/problem+json":
        return [f"a refusal with Content-Type {answer['content_type']!r}, not application/problem+json (PROTO-12.1-6)"]
    if not isinstance(document, dict):
        return ["a refusal whose body is not a problem object (PROTO-12.1-6)"]
    entry = catalogue().get(document.get("code"))
    if entry is None:
        return [f"code {document.get('code')!r} is not in the catalogue (PROTO-11.3-1)"]
    faults = []
    if (document.get("status"), answer["status"], document.get("requirement"), document.get("title")) != (
            entry.status, entry.status, entry.requirement, entry.title):
        faults.append(f"the problem's status, title or requirement is not the catalogue's for {entry.code} (PROTO-11.1-1)")
    echoed = [value for value in (sent.id, sent.case) if value and value in f"{document.get('detail', '')}{document.get('where', '')}"]
    if echoed:
        faults.append("the problem echoes a value of the refused message (PROTO-11.1-2)")
    return faults


_RECEIPT_MEMBERS = {"v", "message_id", "message_digest", "ledger_index", "accepted_at"}


def hub_receipt_faults(document: Any, sent: Sent, trust: dict[str, TrustedKey]) -> list[str]:
    """How an acceptance's hub receipt differs from §9.1: signed by a hub receipt key, exactly its members, naming
    the message sent and its digest."""
    if not isinstance(document, dict) or not isinstance(document.get("hub_receipt"), str):
        return ["the acceptance carries no hub_receipt (PROTO-12.1-1)"]
    try:
        payload = crafting.verify_compact(document["hub_receipt"].encode("ascii"), trust, crafting.RECEIPT_TYP, "hub", "receipt")
    except (StatementInvalid, UnicodeEncodeError) as error:
        return [f"the hub receipt does not verify: {error} (PROTO-9.1-1)"]
    faults = []
    if set(payload) != _RECEIPT_MEMBERS:
        faults.append(f"the hub receipt has members {sorted(payload)}, want {sorted(_RECEIPT_MEMBERS)} (PROTO-9.1-3)")
    if payload.get("message_id") != sent.id or payload.get("message_digest") != crafting.digest(sent.body):
        faults.append("the hub receipt does not name the message sent and its digest (PROTO-9.1-1, PROTO-5.6-1)")
    if document.get("message_id") != sent.id:
        faults.append("the answer's message_id is not the id of the message sent (PROTO-12.1-1)")
    return faults


def inbox_faults(document: Any, sent: Sent, trust: dict[str, TrustedKey]) -> list[str]:
    """How an inbox answer fails to deliver `sent` as §9.2 and §9.3 say: its exact bytes, with an attestation naming it."""
    deliveries = document.get("deliveries") if isinstance(document, dict) else None
    if not isinstance(deliveries, list):
        return ["the inbox answer has no deliveries list (PROTO-12.6-1)"]
    mine = [d for d in deliveries if isinstance(d, dict) and d.get("message") == sent.body.decode("ascii")]
    if not mine:
        return ["the message is not in the receiver's inbox as the exact bytes accepted (PROTO-12.4-1, PROTO-2.2-1)"]
    delivery = mine[0]
    if set(delivery) != {"message", "attestation", "local_view"}:
        return [f"a delivery with members {sorted(delivery)} (PROTO-9.3-1)"]
    try:
        attestation = crafting.verify_compact(str(delivery["attestation"]).encode("ascii"), trust, crafting.ATTESTATION_TYP, "hub", "receipt")
    except (StatementInvalid, UnicodeEncodeError) as error:
        return [f"the attestation does not verify: {error} (PROTO-9.2-1)"]
    faults = []
    if attestation.get("message_id") != sent.id or attestation.get("message_digest") != crafting.digest(sent.body):
        faults.append("the attestation does not name the message and its digest (PROTO-9.2-1)")
    if attestation.get("local_view_digest") != crafting.jcs_digest(delivery["local_view"]):
        faults.append("the attestation's local_view_digest is not the digest of the local view (PROTO-9.2-1)")
    return faults


def entry_faults(document: Any, sent: Sent, payload: dict[str, Any]) -> list[str]:
    """How the ledger's answer fails to show the entry of `sent`'s acceptance as §13.1 says: at the index its hub
    receipt names, of kind accepted, naming the message and its digest, in canonical form, with no personal data."""
    entries = document.get("entries") if isinstance(document, dict) else None
    index = ledger_index(sent)
    mine = [item for item in entries or [] if isinstance(item, dict) and item.get("index") == index]
    if not mine:
        return [f"no entry at the index {index} the hub receipt names (PROTO-13.1-3)"]
    raw = crafting.b64_decode(mine[0]["entry"])
    entry = json.loads(raw)
    faults = []
    if (entry.get("kind"), entry.get("message_id"), entry.get("message_digest")) != ("accepted", sent.id, crafting.digest(sent.body)):
        faults.append("the entry at that index does not record the acceptance of the message (PROTO-13.1-3)")
    if crafting.jcs(entry) != raw:
        faults.append("the entry is not in its canonical form (PROTO-13.1-2)")
    text = raw.decode("utf-8")
    if any(value in text for value in _personal_values(payload.get("body"))):
        faults.append("the entry holds a value of the message body (PROTO-13.1-1)")
    return faults


def _proof_hashes(document: dict[str, Any], name: str) -> list[bytes]:
    return [crafting.b64_decode(item) for item in document[name]]


def inclusion_faults(document: Any, sent: Sent) -> list[str]:
    """How an inclusion proof answer fails §13.2 and §13.6 for `sent`'s acceptance: the entry at the index its hub receipt
    names, recording that acceptance, with a proof of exactly RFC 9162 §2.1.3 to the root the answer names."""
    index = ledger_index(sent)
    try:
        entry = crafting.b64_decode(document["entry"])
        root = crafting.b64_decode(document["root"])
        proof = _proof_hashes(document, "proof")
        size = document["size"]
    except (TypeError, KeyError, ValueError):
        return ["the inclusion proof answer lacks index, size, entry, root or proof in base64 (§13.6)"]
    faults = []
    if document.get("index") != index:
        faults.append(f"the inclusion proof is for index {document.get('index')!r}, not {index} (§13.6)")
    if json.loads(entry).get("message_digest") != crafting.digest(sent.body):
        faults.append("the entry of the inclusion proof does not record the message (PROTO-13.1-3)")
    try:
        merkle.verify_inclusion(merkle.leaf_hash(entry), index, size, proof, root)
    except merkle.ProofInvalid as error:
        faults.append(f"the inclusion proof does not verify: {error} (PROTO-13.2-2)")
    return faults


def consistency_faults(document: Any, first: Sent, second: Sent) -> list[str]:
    """How a consistency proof answer fails RFC 9162 §2.1.4 between the tree heads two inclusion steps verified."""
    try:
        heads = [answer_document(step.answer) for step in (first, second)]
        (size1, root1), (size2, root2) = ((head["size"], crafting.b64_decode(head["root"])) for head in heads)
        proof = _proof_hashes(document, "proof")
    except (TypeError, KeyError, ValueError):
        return ["the consistency proof answer lacks from, to or a base64 proof (§13.6)"]
    if (document.get("from"), document.get("to")) != (size1, size2):
        return [f"the consistency proof is from {document.get('from')!r} to {document.get('to')!r}, not {size1} to {size2} (§13.6)"]
    try:
        merkle.verify_consistency(size1, size2, proof, root1, root2)
    except merkle.ProofInvalid as error:
        return [f"the consistency proof does not verify: {error} (PROTO-13.2-2)"]
    return []


def _personal_values(body: Any) -> list[str]:
    """The string values of a message body long enough to be data rather than a code: names, numbers, free text."""
    if isinstance(body, dict):
        return [value for item in body.values() for value in _personal_values(item)]
    if isinstance(body, list):
        return [value for item in body for value in _personal_values(item)]
    return [body] if isinstance(body, str) and len(body) >= 6 else []


@contextlib.asynccontextmanager
async def receiving_pushes(target: Target) -> AsyncIterator[None]:
    """With --receive-at (hub role), the suite is --to's push endpoint for the run's duration."""
    if target.receive_at is None:
        yield
        return
    receiver = PushReceiver(*target.receive_at)
    try:
        await receiver.start()
    except OSError as error:
        raise PreflightError(f"cannot listen at --receive-at {target.receive_at[0]}:{target.receive_at[1]}: {error}") from None
    target.push_receiver = receiver
    try:
        yield
    finally:
        target.push_receiver = None
        await receiver.stop()


async def run(target: Target, cases: list[Case], progress: Any = None) -> tuple[dict[str, Any], list[Result]]:
    """Preflight, then every case in order; progress(number, total, result) after each."""
    from gateway.conformance import endpoint

    connector = aiohttp.TCPConnector(ssl=target.ssl) if target.ssl is not None else None
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60), connector=connector) as session:
        if cases and cases[0].role == "endpoint":
            about = await endpoint.preflight(session, target)
            run_case = endpoint.run_endpoint_case
        else:
            about = await preflight(session, target)
            run_case = run_hub_case
        results = []
        async with endpoint.serving_hub(target), receiving_pushes(target):
            for number, case in enumerate(cases, 1):
                result = await run_case(session, target, case)
                results.append(result)
                if progress is not None:
                    progress(number, len(cases), result)
    return about, results
