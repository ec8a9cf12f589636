"""The hub role of the conformance runner (docs/conformance.md), and `run`, which drives either role.

For each case the runner crafts every step's request itself (gateway/conformance/crafting.py,
recipes.py), sends it over HTTP, and compares the answer with the step's expectation down
to the catalogue code, using only the suite's own checks and the shipped catalogue
(conformance/catalogue.json): never the hub's validators. A step without an expectation sets
the case up and must succeed. The endpoint role is gateway/conformance/endpoint.py.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from datetime import datetime, timezone
from typing import Any

import aiohttp

from gateway.conformance import crafting
from gateway.conformance.cases import Case, Result
from gateway.conformance.crafting import NotApplicable, StatementInvalid, TrustedKey
from gateway.conformance.recipes import CaseRun, Sent, answer_document, build_payload, speaks_for_others
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
    if kind in ("message", "receipt"):
        body, payload, sender = _message_bytes(step, context)
        sent = Sent(payload["id"] if payload else context.sent[step["resend"]].id,
                    payload["case"] if payload else context.sent[step["resend"]].case, sender, body, payload=payload)
        method, path = "POST", "/v1/messages" if kind == "message" else "/v1/receipts"
        headers = {"Content-Type": step.get("content_type", "application/jose")}
    elif kind == "status":
        method, path, body, headers = "GET", f"/v1/messages/{context.sent[step['of']].id}", b"", {}
    elif kind in _PULLS:
        method, path, body, headers = "GET", _PULLS[kind][0], b"", {}
    elif kind == "http":
        method, path, body, headers = step["method"], step["path"], step.get("body", "").encode(), {}
    else:
        raise ValueError(f"unknown request {kind!r}")
    if kind in ("receipt", "status", *_PULLS):
        sent.proof = _proof(step, context, method, path, body)
        if sent.proof is not None:
            headers["GBA-Request-Proof"] = sent.proof.decode("ascii")
    if kind in _PULLS:
        path += "?" + re.sub(r"\$([a-z-]+):([A-Za-z0-9_-]+)", lambda match: str(_query_value(match[1], match[2], context)),
                             step.get("query", _PULLS[kind][1]))
    return method, path, body, headers, sent


_PULLS = {"inbox": ("/v1/inbox", "after=-1&limit=500"), "ledger-entries": ("/v1/ledger/entries", ""),
          "ledger-inclusion": ("/v1/ledger/proof/inclusion", "")}
"""GET requests with a request proof: path and default query."""


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
        if target.client_certificate and speaks_for_others(case, context):
            raise NotApplicable("the case speaks for another jurisdiction, and the client certificate names only yours (PROTO-12.8-3)")
        for number, step in enumerate(case.steps, 1):
            if "after_seconds" in step:
                # The protocol's own clock must pass a point (a deadline): a wait for time, not for an event.
                await asyncio.sleep(max(0.0, (context.now - datetime.now(timezone.utc)).total_seconds() + step["after_seconds"]))
            method, path, body, headers, sent = _request(step, context)
            async with session.request(method, target.url + path, data=body or None, headers=headers) as response:
                raw = await response.read()
                answer = {"status": response.status, "content_type": response.content_type,
                          "body": raw[:8000].decode("utf-8", "replace")}
            result.evidence.append(_evidence(method, path, headers, body, answer))
            answer = dict(answer, raw=raw)
            sent.answer = answer
            name = step.get("name", f"step{number}")
            context.sent[name] = sent
            if sent.payload is not None:
                context.payloads[name] = sent.payload
            actual, wrong = judge_hub_step(step, sent, answer, context)
            if "expect" in step:
                result.actual = actual
            if wrong:
                result.verdict, result.reason = "fail", (f"step {number}: " if len(case.steps) > 1 else "") + "; ".join(wrong)
                result.actual = actual
                break
        else:
            result.verdict = "pass"
    except NotApplicable as reason:
        result.verdict, result.reason = "skip", str(reason)
    except (aiohttp.ClientError, OSError, TimeoutError) as error:
        result.reason = f"the request failed: {type(error).__name__}: {error}"
    result.seconds = time.monotonic() - started
    return result


def judge_hub_step(step: dict[str, Any], sent: Sent, answer: dict[str, Any], context: CaseRun) -> tuple[dict[str, Any], list[str]]:
    """What the answer was and how it differs from the step's expectation (a setup step: from success)."""
    document = answer_document(answer)
    actual: dict[str, Any] = {"status": answer["status"]}
    if isinstance(document, dict):
        actual.update({name: document[name] for name in ("code", "replayed") if name in document})
    expect = step.get("expect")
    if expect is None:
        if not 200 <= answer["status"] < 300:
            return actual, [f"a set-up request was answered {answer['status']} {actual.get('code', '')}".rstrip()]
        return actual, []
    wrong = [f"{name}: expected {value!r}, got {actual.get(name)!r}" for name, value in expect.items()
             if name in ("status", "code", "replayed") and actual.get(name) != value]
    if answer["status"] >= 400:
        wrong += problem_faults(answer, document, sent)
    if expect.get("hub_receipt"):
        wrong += hub_receipt_faults(document, sent, context.target.trust)
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
    if "message_status" in expect and isinstance(document, dict) and document.get("status") != expect["message_status"]:
        wrong.append(f"status of the message: expected {expect['message_status']!r}, got {document.get('status')!r}")
    return actual, wrong


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


def _personal_values(body: Any) -> list[str]:
    """The string values of a message body long enough to be data rather than a code: names, numbers, free text."""
    if isinstance(body, dict):
        return [value for item in body.values() for value in _personal_values(item)]
    if isinstance(body, list):
        return [value for item in body for value in _personal_values(item)]
    return [body] if isinstance(body, str) and len(body) >= 6 else []


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
        for number, case in enumerate(cases, 1):
            result = await run_case(session, target, case)
            results.append(result)
            if progress is not None:
                progress(number, len(cases), result)
    return about, results
