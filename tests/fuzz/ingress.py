"""A structure-aware fuzzer of the hub's ingress (issue 11): inputs made and signed with the published test keys.

Random bytes die at the first check; this fuzzer signs most of what it mutates, so that
its inputs reach the deep stages of the pipeline (docs/architecture.md, "The path of one
message through the hub"): payload JSON, schema, sender, route, adapters, the case's
transaction. Every input is drawn from a seeded `random.Random`, so a run is
reproducible from its seed and the number of the input (`Input.number`).

Families (weights in FAMILIES): `valid` (fresh and signed), `payload` (one member of the
payload replaced, removed or added, then signed), `envelope` (a plausible wrong `from`,
`to`, `type`, `created`, `id`, `case`, `reply_to`, `purpose` or `v`, signed), `json`
(signed bytes that break I-JSON: duplicates, NaN, deep nesting, invalid UTF-8, lone
surrogates, huge integers), `header` (signed with a mutated protected header), `bytes`
(a valid message with raw bytes flipped, cut, inserted or shuffled), `replay` (an
earlier input again, or its id with other bytes).

`stage_of(answer)` places each answer in the pipeline from its status and catalogue
code alone, so the report counts how far inputs got.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from gateway.contract import contract_dir
from gateway.keyfiles import read_private_key
from gateway.protocol import base64url
from gateway.protocol.keys import PrivateKey

STAGES = ("size", "jws", "key", "signature", "payload-json", "id", "freshness", "schema", "sender", "route", "adapters",
          "transaction", "accepted")
"""The hub's pipeline, in order; an input refused at a stage reached every stage before it."""
SIGNATURE_PASSED = STAGES.index("signature") + 1

_STAGE_OF_CODE = {
    "message-too-large": "size", "media-type-unsupported": "size", "request-timeout": "size",
    "jws-malformed": "jws", "jws-base64url-invalid": "jws", "alg-refused": "jws", "header-invalid": "jws",
    "header-parameter-refused": "jws", "typ-unexpected": "jws",
    "key-unknown": "key", "key-revoked": "key", "key-expired": "key", "key-not-yet-valid": "key", "key-use-mismatch": "key",
    "key-alg-mismatch": "key",
    "signature-invalid": "signature",
    "json-invalid-utf8": "payload-json", "json-syntax": "payload-json", "json-duplicate-key": "payload-json",
    "json-lone-surrogate": "payload-json", "json-nul-character": "payload-json", "json-non-finite-number": "payload-json",
    "json-number-out-of-range": "payload-json", "json-integer-too-large": "payload-json", "json-too-deep": "payload-json",
    "id-conflict": "id",
    "message-stale": "freshness", "message-from-future": "freshness",
    "schema-violation": "schema", "type-unknown": "schema", "version-unsupported": "schema", "jurisdiction-unknown": "schema",
    "self-addressed": "schema",
    "sender-mismatch": "sender",
    "route-refused": "route", "legal-basis-refused": "route",
    "identity-check-digit-invalid": "adapters", "identity-birth-date-invalid": "adapters", "scheme-unknown": "adapters",
    "reply-to-invalid": "transaction", "case-unknown": "transaction", "case-party-mismatch": "transaction",
    "case-state-conflict": "transaction", "deadline-passed": "transaction", "receipt-target-invalid": "transaction",
}

TYPES = ("referral.submit", "referral.accept", "referral.decline", "referral.update", "referral.withdraw", "referral.close",
         "verification.request", "verification.response", "verification.cancel", "receipt")
FAMILIES = {"valid": 8, "payload": 34, "envelope": 18, "json": 8, "header": 8, "bytes": 16, "replay": 8}
_KIDS = {"CN-GD": "test-cn-gd-message-1", "HK": "test-hk-message-1", "MO": "test-mo-message-1"}
_OTHER_KIDS = ("test-hk-message-revoked", "test-mo-message-expired", "test-cn-gd-message-future", "test-hub-receipt-1",
               "test-hub-checkpoint-1", "no-such-key")


def stage_of(status: int, code: str | None) -> str:
    """The pipeline stage an answer shows the input reached: `accepted` for 202, else its refusal's stage."""
    if status == 202:
        return "accepted"
    if code is None:
        raise ValueError(f"an answer {status} without a catalogue code")
    stage = _STAGE_OF_CODE.get(code)
    if stage is None:
        raise ValueError(f"code {code} has no pipeline stage in tests/fuzz/ingress.py")
    return stage


@dataclass(frozen=True)
class Input:
    number: int
    family: str
    body: bytes


class IngressFuzzer:
    """Makes `Input`s for `POST /v1/messages` from a seed; signs with the published test keys."""

    def __init__(self, seed: int, now: datetime | None = None) -> None:
        self._random = random.Random(seed)
        self._now = now
        keys = contract_dir("keys") / "test"
        self._keys: dict[str, PrivateKey] = {kid: read_private_key(keys / f"{kid}.key.jwk") for kid in (*_KIDS.values(), *_OTHER_KIDS[:-1])}
        self._templates = {t: json.loads((contract_dir("schemas") / f"{t}.json").read_text("utf-8"))["examples"][0] for t in TYPES}
        self._sent: list[tuple[dict[str, Any], bytes]] = []
        self._number = 0

    def inputs(self, count: int) -> Iterator[Input]:
        families, weights = zip(*FAMILIES.items())
        for _ in range(count):
            family = self._random.choices(families, weights)[0]
            self._number += 1
            yield Input(self._number, family, getattr(self, f"_{family}")())

    # -- the families ------------------------------------------------------------------

    def _valid(self) -> bytes:
        return self._sign(self._fresh())

    def _payload(self) -> bytes:
        payload = self._fresh()
        path = self._random.choice(list(_paths(payload)))
        parent, key = _locate(payload, path)
        action = self._random.random()
        if action < 0.2 and isinstance(parent, dict):
            del parent[key]
        elif action < 0.3 and isinstance(parent, dict):
            parent[self._random.choice(["extra", "x", "unknown_member", "__proto__"])] = self._value()
        else:
            parent[key] = self._value()
        return self._sign(payload)

    def _envelope(self) -> bytes:
        payload = self._fresh()
        member = self._random.choice(["from", "to", "type", "created", "id", "case", "reply_to", "purpose", "v", "legal_basis"])
        options = {
            "from": ["CN-GD", "HK", "MO", "SG", "cn-gd", ""], "to": ["CN-GD", "HK", "MO", "TW", payload["from"]],
            "type": list(TYPES) + ["referral.cancel", "Referral.submit"],
            "created": [_stamp(self._clock() + timedelta(seconds=s)) for s in (-3600, -301, 299, 400, 86400)] + ["2026-11-29T00:00:00+08:00", "yesterday"],
            "id": [_uuid7(self._random).upper(), "00000000-0000-0000-0000-000000000000", self._earlier("id")],
            "case": [_uuid7(self._random), self._earlier("case")], "reply_to": [_uuid7(self._random), self._earlier("id"), None],
            "purpose": ["referral", "verification", "marketing", ""], "v": [0, 2, "1", 1.0],
            "legal_basis": [{}, {"basis": "consent"}, {"basis": "public_interest", "statute": "x" * 600}],
        }[member]
        payload[member] = copy.deepcopy(self._random.choice(options))
        return self._sign(payload)

    def _json(self) -> bytes:
        text = json.dumps(self._fresh(), ensure_ascii=False).encode("utf-8")
        fault = self._random.choice(["duplicate", "nan", "deep", "utf8", "surrogate", "integer", "nul", "trailing"])
        if fault == "duplicate":
            text = text[:-1] + b', "type": "referral.submit"}'
        elif fault == "nan":
            text = text[:-1] + b', "n": NaN}'
        elif fault == "deep":
            depth = self._random.choice([30, 64, 65, 200])
            text = text[:-1] + b', "deep": ' + b"[" * depth + b"]" * depth + b"}"
        elif fault == "utf8":
            text = text[:-1] + b', "s": "\xc3\x28"}'
        elif fault == "surrogate":
            text = text[:-1] + b', "s": "\\ud800"}'
        elif fault == "integer":
            text = text[:-1] + b', "i": 9007199254740993}'
        elif fault == "nul":
            text = text[:-1] + b', "s": "a\\u0000b"}'
        else:
            text = text + b" x"
        payload = self._fresh()
        return self._sign_raw(text, self._keys[_KIDS[payload["from"]]])

    def _header(self) -> bytes:
        payload = self._fresh()
        key = self._keys[_KIDS[payload["from"]]]
        header: dict[str, Any] = {"alg": key.alg, "kid": key.kid, "typ": "gba-case+jws"}
        change = self._random.choice(["alg", "kid", "typ", "extra", "missing"])
        if change == "alg":
            header["alg"] = self._random.choice(["none", "HS256", "EdDSA", "ES256", "RS256", "Ed448", "ed25519"])
        elif change == "kid":
            header["kid"] = self._random.choice(list(_KIDS.values()) + list(_OTHER_KIDS))
            key = self._keys.get(header["kid"], key)
        elif change == "typ":
            header["typ"] = self._random.choice(["gba-receipt+jws", "JWT", "gba-case+JWS", ""])
        elif change == "extra":
            header[self._random.choice(["crit", "b64", "jwk", "jku", "x5u", "x5c", "cty", "zip"])] = self._value()
        else:
            del header[self._random.choice(["alg", "kid", "typ"])]
        encoded = base64url.encode(json.dumps(header).encode()) + b"." + base64url.encode(json.dumps(payload).encode())
        return encoded + b"." + base64url.encode(key.sign(encoded))

    def _bytes(self) -> bytes:
        data = bytearray(self._sign(self._fresh()))
        for _ in range(self._random.randint(1, 4)):
            if not data:
                break
            action = self._random.randrange(5)
            position = self._random.randrange(len(data))
            if action == 0:
                data[position] ^= 1 << self._random.randrange(8)
            elif action == 1:
                del data[position:position + self._random.randint(1, 16)]
            elif action == 2:
                data[position:position] = self._random.randbytes(self._random.randint(1, 8))
            elif action == 3:
                data = data[:position]
            else:
                data[position:position] = self._random.choice([b".", b"=", b"+", b"/", b" ", b"\xff"])
        return bytes(data)

    def _replay(self) -> bytes:
        if not self._sent:
            return self._valid()
        payload, body = self._random.choice(self._sent)
        if self._random.random() < 0.5:
            return body  # identical bytes: the stored receipt again, or the same refusal
        changed = copy.deepcopy(payload)
        changed["created"] = _stamp(self._clock())
        return self._sign(changed)  # the same id with other bytes

    # -- helpers ------------------------------------------------------------------------

    def _clock(self) -> datetime:
        return self._now or datetime.now(timezone.utc)

    def _fresh(self) -> dict[str, Any]:
        """A template of a random type with a new id and case (or a case and reply of an earlier message)."""
        message_type = self._random.choice(TYPES)
        payload = copy.deepcopy(self._templates[message_type])
        payload["id"] = _uuid7(self._random)
        payload["created"] = _stamp(self._clock())
        if message_type in ("referral.submit", "verification.request") or not self._sent or self._random.random() < 0.3:
            payload["case"] = _uuid7(self._random)
        else:
            earlier, _ = self._random.choice(self._sent)
            payload["case"], payload["reply_to"] = earlier["case"], earlier["id"]
            payload["from"], payload["to"] = earlier["to"], earlier["from"]
            if message_type == "receipt" and isinstance(payload.get("body"), dict):
                payload["body"]["message_id"] = earlier["id"]
        return payload

    def _earlier(self, member: str) -> str:
        return self._random.choice(self._sent)[0][member] if self._sent else _uuid7(self._random)

    def _sign(self, payload: dict[str, Any]) -> bytes:
        sender, receiver = payload.get("from"), payload.get("to")
        known = isinstance(sender, str) and sender in _KIDS
        key = self._keys[_KIDS[sender]] if known else self._keys[_KIDS["CN-GD"]]
        body = self._sign_raw(json.dumps(payload, ensure_ascii=False).encode("utf-8"), key)
        plausible = known and isinstance(receiver, str) and receiver in _KIDS and all(isinstance(payload.get(m), str) for m in ("id", "case"))
        if plausible and len(self._sent) < 5000:
            self._sent.append((payload, body))
        return body

    @staticmethod
    def _sign_raw(payload: bytes, key: PrivateKey) -> bytes:
        header = json.dumps({"alg": key.alg, "kid": key.kid, "typ": "gba-case+jws"}).encode()
        signing_input = base64url.encode(header) + b"." + base64url.encode(payload)
        return signing_input + b"." + base64url.encode(key.sign(signing_input))

    def _value(self) -> Any:
        return self._random.choice([
            None, True, False, 0, -1, 1, 2**53, 2**53 + 1, -2**63, 1.5, 1e308, "", " ", "x" * 5000, "CHAN", "2026-02-30",
            "9999-12-31T23:59:59Z", "1899-12-31", "-1.00", "1e3", "HKD", "ZZZ", "\u202e\u0645", "\ud7ff", "𠀀", [], {}, [None],
            {"a": {"b": {"c": []}}}, ["referral"] * 50, _uuid7(self._random),
        ])


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(value, dict):
        for key, member in value.items():
            yield (*prefix, key)
            yield from _paths(member, (*prefix, key))
    elif isinstance(value, list):
        for index, member in enumerate(value):
            yield (*prefix, index)
            yield from _paths(member, (*prefix, index))


def _locate(value: Any, path: tuple[Any, ...]) -> tuple[Any, Any]:
    for step in path[:-1]:
        value = value[step]
    return value, path[-1]


def _stamp(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _uuid7(generator: random.Random) -> str:
    """A UUIDv7 whose time is now and whose randomness comes from `generator` (reproducible per seed)."""
    import time

    millis = int(time.time() * 1000)
    value = (millis << 80) | (0x7 << 76) | (generator.getrandbits(12) << 64) | (0b10 << 62) | generator.getrandbits(62)
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


# -- driving a hub ---------------------------------------------------------------------------


@dataclass
class Report:
    """What a fuzz run did: inputs per family, how far they got, the codes seen, and every server error."""

    seed: int
    inputs: int = 0
    seconds: float = 0.0
    families: dict[str, int] = None  # type: ignore[assignment]
    stopped_at: dict[str, int] = None  # type: ignore[assignment]
    codes: dict[str, int] = None  # type: ignore[assignment]
    other_requests: int = 0
    server_errors: list[dict[str, Any]] = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self.families, self.stopped_at, self.codes, self.server_errors = {}, {}, {}, []

    def reached(self) -> dict[str, int]:
        """Inputs that reached each stage (an input stopped at a stage reached it and every stage before)."""
        counts, total = {}, 0
        for stage in reversed(STAGES):
            total += self.stopped_at.get(stage, 0)
            counts[stage] = total
        return {stage: counts[stage] for stage in STAGES}

    def passed_signature(self) -> int:
        return sum(self.stopped_at.get(stage, 0) for stage in STAGES[SIGNATURE_PASSED:])

    def to_document(self) -> dict[str, Any]:
        return {
            "format": "gba-fuzz-report/v1", "seed": self.seed, "inputs": self.inputs, "seconds": round(self.seconds, 1),
            "inputs_per_s": round(self.inputs / self.seconds, 1) if self.seconds else None,
            "families": self.families, "stopped_at": {s: self.stopped_at.get(s, 0) for s in STAGES}, "reached": self.reached(),
            "passed_signature": self.passed_signature(), "codes": dict(sorted(self.codes.items())),
            "other_requests": self.other_requests, "server_errors": self.server_errors,
        }


OTHER_SHARE = 0.1
"""The share of requests that go to the other resources (inbox, receipts, messages, ledger) instead of ingress."""


async def drive(base_url: str, seed: int, count: int, concurrency: int = 16, public_base_url: str | None = None,
                progress: Any = None) -> Report:
    """Send `count` ingress inputs (and OTHER_SHARE as many requests to the other resources) at `base_url`."""
    import asyncio
    import hashlib
    import time

    import aiohttp

    from gateway.protocol.request_proof import make_request_proof

    fuzzer = IngressFuzzer(seed)
    others = random.Random(seed + 1)
    report = Report(seed)
    queue: asyncio.Queue[Input | None] = asyncio.Queue(maxsize=concurrency * 4)
    public = (public_base_url or base_url).rstrip("/")

    def record_error(what: str, status: int, body: bytes, text: str) -> None:
        if len(report.server_errors) < 50:
            report.server_errors.append({"request": what, "status": status, "sha256": hashlib.sha256(body).hexdigest(), "answer": text[:300]})
        else:
            report.server_errors.append({"request": what, "status": status})

    async def other(session: aiohttp.ClientSession) -> None:
        path = others.choice([
            "/v1/inbox", "/v1/inbox?after=-1&wait=0&limit=5", "/v1/inbox?after=x", "/v1/inbox?limit=0", "/v1/ledger/entries?start=0",
            "/v1/ledger/entries?start=-1&limit=99999", "/v1/ledger/proof/inclusion?index=0&size=1", "/v1/ledger/proof/inclusion?index=5&size=2",
            "/v1/ledger/proof/consistency?from=1&to=2", "/v1/ledger/proof/consistency?from=3&to=1", "/v1/ledger/checkpoint?size=1",
            f"/v1/messages/{_uuid7(others)}", "/v1/messages/not-a-uuid", "/v1/receipts",
        ])
        method = "POST" if path == "/v1/receipts" else "GET"
        body = fuzzer._valid() if method == "POST" and others.random() < 0.7 else others.randbytes(others.randint(0, 64))
        kid = others.choice(list(_KIDS.values()) + ["test-hub-receipt-1"])
        headers = {"Content-Type": "application/jose"}
        proof_kind = others.random()
        if proof_kind < 0.6:
            proof = make_request_proof(fuzzer._keys[kid], method, public + path.split("?")[0], body if method == "POST" else None,
                                       datetime.now(timezone.utc))
            if proof_kind < 0.1:
                proof = proof[:-3] + b"AAA"
            headers["GBA-Request-Proof"] = proof.decode()
        elif proof_kind < 0.8:
            headers["GBA-Request-Proof"] = others.choice(["", "x", "a.b.c", "e" * 2000])
        async with session.request(method, base_url + path, data=body if method == "POST" else None, headers=headers) as answer:
            text = await answer.text()
            report.other_requests += 1
            if answer.status >= 500:
                record_error(f"{method} {path}", answer.status, body, text)

    async def worker(session: aiohttp.ClientSession) -> None:
        while (item := await queue.get()) is not None:
            report.families[item.family] = report.families.get(item.family, 0) + 1
            try:
                async with session.post(base_url + "/v1/messages", data=item.body, headers={"Content-Type": "application/jose"}) as answer:
                    text = await answer.text()
            except aiohttp.ClientError as error:  # a hub that hangs up without an answer is a failure to report
                report.inputs += 1
                record_error(f"POST /v1/messages #{item.number} ({item.family})", 0, item.body, type(error).__name__)
                continue
            code = None
            if answer.content_type == "application/problem+json":
                code = json.loads(text).get("code")
            report.inputs += 1
            if answer.status >= 500 or (answer.status != 202 and code is None):
                record_error(f"POST /v1/messages #{item.number} ({item.family})", answer.status, item.body, text)
            else:
                stage = stage_of(answer.status, code)
                report.stopped_at[stage] = report.stopped_at.get(stage, 0) + 1
                if code:
                    report.codes[code] = report.codes.get(code, 0) + 1
            if others.random() < OTHER_SHARE:
                await other(session)
            if progress is not None and report.inputs % 1000 == 0:
                progress(report)

    started = time.monotonic()
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        workers = [asyncio.create_task(worker(session)) for _ in range(concurrency)]
        try:
            for item in fuzzer.inputs(count):
                await queue.put(item)
        finally:  # the workers finish what is queued and stop, whatever happened to the producer
            for _ in workers:
                await queue.put(None)
            await asyncio.gather(*workers)
    report.seconds = time.monotonic() - started
    return report
