"""End-to-end benchmarks (issue 12): full pipeline, bulk re-verification, scale-out.

The workload is the household re-verification: CN-GD sends a `verification.request` to HK and
one to MO (three household members each, a new case each), HK and MO answer each with a
`verification.response`; each of the four messages is accepted, delivered and receipted, and
each receipt is delivered back to the message's sender. A household counts when all of that
happened.

One run does, in order (every step bounded in time, everything started is stopped at the end,
even after a failure or SIGTERM):
  1. starts the embedded PostgreSQL in a temporary directory (or a fresh database on the server
     of `--database-url`) and makes a TLS CA and server certificate for 127.0.0.1 (`--no-tls`:
     plain HTTP) and one payload key for encryption at rest (GATEWAY_PAYLOAD_KEYS, shared by
     every hub process);
  2. measures the ceilings: Ed25519 sign/s and verify/s, PostgreSQL COPY rows/s into a scratch
     copy of `messages`, and the echo server through the simulators' own client stack;
  3. starts N hub processes (`gateway serve`, same database, each on its own port; N = 1, or 3
     for scale-out, with a phase on 2 between them under `--two-hubs`), every jurisdiction on pull
     delivery; the simulators send each request to the next hub in turn, or under `--affinity` to
     a hub of their own while it answers;
  4. starts three jurisdiction simulators as processes of their own (multiprocessing): each is an
     asyncio loop that long-polls its inbox (`limit` 500), verifies every delivery (attestation,
     message signature, schema, end to end with gateway.protocol), signs a `receipt` for every
     message that is not a receipt and, for a request, the `verification.response` answering it
     (gateway.simulator.application), sends them (single `POST /v1/messages`, or
     `POST /v1/messages/bulk` bodies in bulk mode), checks each hub receipt and advances its
     cursor only past what it stored and receipted. CN-GD is also the load generator: it keeps
     `--households-in-flight` households open, signing each request just before it is sent;
  5. measures: `pipeline` and `scaleout` a window of `--seconds` after a warm-up; `bulk` a fixed
     number of households (`--households`) from the first request to the last receipt;
  6. drains (no new households; every open one finishes or the drain times out), stops the
     simulators and hubs, and checks the ledger: `gateway ledger verify`, and in SQL that every
     message sent was accepted exactly once (lost, duplicated), that each response and receipt
     is ledgered after the message it answers (misordered), that indexes run without a gap and
     that every stored payload is sealed.

Prints one JSON object (stable keys: `pipeline_per_s`, `accepted_per_s`, `households_per_hour`,
`p50_ms`, `p95_ms`, `p99_ms`, `ratio_to_echo`, `cpu_us_per_message`, `ceilings`, `stages`,
`lost`, `duplicated`, `misordered`, `ledger_verified`, ...; see bench/README.md) and exits 0, or
1 when the run is not valid (`errors`, `problems`).
"""

from __future__ import annotations

import argparse
import array
import asyncio
import base64
import bisect
import contextlib
import json
import math
import multiprocessing
import os
import random
import secrets
import signal
import statistics
import ssl
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))

import accept  # noqa: E402  (bench/accept.py: database, hub configuration, processes, CPU accounting)
import ceilings  # noqa: E402

from gateway.keyfiles import read_private_key  # noqa: E402
from gateway.protocol import jws  # noqa: E402
from gateway.protocol.errors import ProtocolError  # noqa: E402
from gateway.protocol.ids import new_uuid7  # noqa: E402
from gateway.protocol.message import sign_message  # noqa: E402
from gateway.protocol.request_proof import make_request_proof  # noqa: E402
from gateway.protocol.schema import MessageSchemas  # noqa: E402
from gateway.protocol import strict_json  # noqa: E402
from gateway.protocol.statements import delivery_from_document, verify_delivery, verify_hub_receipt  # noqa: E402
from gateway.protocol.timestamps import format_timestamp, utc_now  # noqa: E402
from gateway.protocol.trust import load_trust_list  # noqa: E402
from gateway.simulator.application import Application  # noqa: E402
from gateway.simulator.rules import Rules  # noqa: E402

JOSE = "application/jose"
BULK = "application/vnd.gba.jose-lines"
BULK_PATH = "/v1/messages/bulk"
MESSAGE_KEYS = {"CN-GD": "test-cn-gd-message-1", "HK": "test-hk-message-1", "MO": "test-mo-message-1"}
RESPONDERS = ("HK", "MO")
HOUSEHOLDS_1650000 = 1_650_000
MESSAGES_PER_HOUSEHOLD = 4
"""End-to-end messages per household: two requests and two responses (their four receipts ride along)."""
ACCEPTED_PER_HOUSEHOLD = 8
"""Messages the hub accepts per household: the four above and their four receipts."""
BULK_MAX_BYTES = 1_000_000
"""A bulk body stays under the hub's default `max_request_bytes` (1 MiB)."""
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
KIND_CODES = {"request": 0, "response": 1, "receipt": 2}
PERCENTILES = (50, 90, 95, 99, 99.9)


def _say(message: str) -> None:
    print(f"pipeline: {message}", file=sys.stderr, flush=True)


# =============================================================================================
# The jurisdiction simulators (each its own process)
# =============================================================================================


@dataclass
class SimSettings:
    code: str
    hub_urls: list[str]
    cafile: str | None
    bulk: bool
    bulk_lines: int
    bulk_concurrency: int
    inbox_limit: int
    poll_wait: int
    connections: int
    households_in_flight: int = 0
    seed: int = 0
    home: int | None = None
    """Under `--affinity`, the index of this jurisdiction's own hub in `hub_urls`."""


class Failed(Exception):
    """A message refused for good (a 4xx problem other than 408/429): counted, never retried."""


@dataclass
class Outgoing:
    message_id: str
    kind: str
    compact: bytes
    future: asyncio.Future[Any]
    attempts: int = 0

    @property
    def digest(self) -> str:
        return jws.digest(self.compact)


class Hubs:
    """The hub processes' base URLs; round-robin, skipping one that failed recently (failover).

    With a `home` hub (`--affinity`), every request goes there while it has not failed in the last 3 s, and to the
    others in turn meanwhile, as a balancer that routes each caller by its address (HAProxy's `balance source`)
    and takes a failed backend out of rotation."""

    def __init__(self, urls: list[str], home: int | None = None) -> None:
        self.urls = urls
        self.down_until = [0.0] * len(urls)
        self.next = random.randrange(len(urls))
        self.home = home

    def pick(self) -> int:
        now = time.monotonic()
        if self.home is not None and self.down_until[self.home] <= now:
            return self.home
        for _ in range(len(self.urls)):
            index = self.next % len(self.urls)
            self.next += 1
            if self.down_until[index] <= now:
                return index
        return min(range(len(self.urls)), key=lambda i: self.down_until[i])

    def failed(self, index: int) -> None:
        self.down_until[index] = time.monotonic() + 3.0


RECEIPTED_REMEMBERED = 200_000
"""Receipted message ids a simulator remembers to recognise a redelivery: minutes of traffic at these rates."""


class Jurisdiction:
    """One simulated jurisdiction: inbox, reception, answers, sending; CN-GD also generates households."""

    def __init__(self, settings: SimSettings, control: Any) -> None:
        self.s = settings
        self.code = settings.code
        self.control = control
        self.key = read_private_key(accept.KEYS / f"{MESSAGE_KEYS[self.code]}.key.jwk")
        self.trust = load_trust_list((accept.KEYS / "trust-list.json").read_bytes())
        self.schemas = MessageSchemas()
        self.app = Application(self.code, self.key, Rules(), utc_now)
        self.hubs = Hubs(settings.hub_urls, settings.home)
        self.templates = {t["to"]: t for t in accept.message_templates() if t["type"] == "verification.request"}
        self.session: Any = None
        self.stopping = False
        self.generating = False
        # what happened
        self.errors: Counter[str] = Counter()
        self.transport: Counter[str] = Counter()
        self.counts: Counter[str] = Counter()
        self.sent_ids = bytearray()
        self.ttr_time = array.array("d")
        self.ttr_latency = array.array("d")
        self.ttr_kind = array.array("b")
        self.post_time = array.array("d")
        self.post_latency = array.array("d")
        self.post_lines = array.array("i")
        # state
        self.awaiting_receipt: dict[str, tuple[float, int]] = {}
        self.answered: dict[str, Outgoing] = {}
        self.receipted: dict[str, None] = {}
        """Ids of messages whose receipt was accepted, the latest `RECEIPTED_REMEMBERED` in order (see `_take`)."""
        self.pending_indexes: list[int] = []
        self.cursor_moved = asyncio.Event()  # set when the lowest pending delivery is answered (the safe cursor moves)
        self.max_seen = -1
        self.case_last_index: dict[str, int] = {}
        self.poll_log: list[tuple[float, float, int, int, int, int]] = []
        """(sent, answered, hub index, after, cursor, deliveries) of every inbox answer: for diagnosis."""
        self.tasks: set[asyncio.Task[Any]] = set()
        self.queue: list[Outgoing] = []
        self.queue_ready = asyncio.Event()
        self.bulk_in_flight = 0
        # CN-GD: households
        self.household_of_case: dict[str, int] = {}
        self.household_remaining: dict[int, int] = {}
        self.household_cases: dict[int, tuple[str, str]] = {}
        self.household_limit: int | None = None
        self.households_started = 0
        self.households_done = 0
        self.households_failed = 0
        self.done_time = array.array("d")
        self.done_cases: list[str] = []
        self.slots: asyncio.Semaphore | None = None
        # HK, MO: when the receipt of each response came back, by case
        self.response_receipted: dict[str, float] = {}

    # --- HTTP -------------------------------------------------------------------------------

    async def _post(self, path: str, body: bytes, content_type: str, lines: int) -> tuple[int, int, bytes]:
        """One POST to the next live hub: (hub index, status, body); status 0 for no answer."""
        import aiohttp

        index = self.hubs.pick()
        started = time.monotonic()
        try:
            async with self.session.post(self.hubs.urls[index] + path, data=body,
                                         headers={"Content-Type": content_type}) as answer:
                data = await answer.read()
                status = answer.status
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as error:
            self.transport[type(error).__name__] += 1
            self.hubs.failed(index)
            return index, 0, b""
        done = time.monotonic()
        self.post_time.append(done)
        self.post_latency.append(done - started)
        self.post_lines.append(lines)
        return index, status, data

    def _refusal(self, status: int, data: bytes) -> str:
        try:
            code = json.loads(data).get("code")
        except (ValueError, AttributeError):
            code = None
        return f"{status} {code or 'no-problem-code'}"

    def _accepted(self, item: Outgoing, answer: bytes | dict[str, Any]) -> None:
        """A `202` for `item` (an answer's body, or a bulk line's result): settled once its hub receipt verifies, else
        counted as an error."""
        try:
            self._check_hub_receipt(item, json.loads(answer) if isinstance(answer, bytes) else answer)
        except (ProtocolError, ValueError, KeyError, TypeError, AttributeError) as error:
            self.errors[f"hub receipt: {getattr(error, 'code', type(error).__name__)}"] += 1
            _settle(item.future, Failed("hub receipt"))
            return
        self.counts[f"accepted_{item.kind}"] += 1
        _settle(item.future, True)

    def _check_hub_receipt(self, item: Outgoing, document: dict[str, Any]) -> None:
        receipt = verify_hub_receipt(document["hub_receipt"].encode("ascii"), self.trust)
        if receipt.message_id != item.message_id or receipt.message_digest != item.digest:
            raise ProtocolError("attestation-mismatch", "the hub receipt names another message")
        if document.get("replayed"):
            self.counts["replayed"] += 1

    def send(self, message_id: str, kind: str, compact: bytes) -> asyncio.Future[Any]:
        """Hand a signed message to the sender: single POSTs or bulk bodies; the future ends with its hub receipt
        (or Failed). Retries identical bytes after no answer, 408, 429 or 5xx."""
        loop = asyncio.get_running_loop()
        item = Outgoing(message_id, kind, compact, loop.create_future())
        self.sent_ids += uuid.UUID(message_id).bytes
        self.counts[f"sent_{kind}"] += 1
        if kind != "receipt":
            self.awaiting_receipt[message_id] = (time.monotonic(), KIND_CODES[kind])
        if self.s.bulk:
            self.queue.append(item)
            self.queue_ready.set()
        else:
            self._spawn(self._send_single(item))
        return item.future

    async def _send_single(self, item: Outgoing) -> None:
        while True:
            item.attempts += 1
            _, status, data = await self._post("/v1/messages", item.compact, JOSE, 1)
            if status == 202:
                self._accepted(item, data)
                return
            if status:
                problem = self._refusal(status, data)
                self.errors[problem] += 1
                if status not in RETRY_STATUSES:
                    _settle(item.future, Failed(problem))
                    return
            await asyncio.sleep(_backoff(item.attempts))

    async def _bulk_worker(self) -> None:
        while not self.stopping:
            if not self.queue:
                self.queue_ready.clear()
                await self.queue_ready.wait()
                continue
            if len(self.queue) < self.s.bulk_lines and self.bulk_in_flight > 0:
                await asyncio.sleep(0.005)  # let a body fill while another is in flight
            take, size = 0, 0
            while take < len(self.queue) and take < self.s.bulk_lines:
                length = len(self.queue[take].compact) + 1
                if take and size + length > BULK_MAX_BYTES:
                    break
                size += length
                take += 1
            batch = self.queue[:take]
            del self.queue[:take]
            if not batch:
                continue
            self.bulk_in_flight += 1
            try:
                await self._send_bulk(batch)
            finally:
                self.bulk_in_flight -= 1

    async def _send_bulk(self, batch: list[Outgoing]) -> None:
        body = b"".join(item.compact + b"\n" for item in batch)
        for item in batch:
            item.attempts += 1
        _, status, data = await self._post(BULK_PATH, body, BULK, len(batch))
        retry: list[Outgoing] = []
        if status == 200:
            results = [json.loads(line) for line in data.splitlines() if line.strip()]
            if len(results) != len(batch):
                self.errors[f"bulk answer with {len(results)} lines for {len(batch)}"] += 1
                retry = batch
            for item, result in zip(batch, results) if not retry else ():
                line_status = result.get("status")
                if line_status == 202:
                    self._accepted(item, result)
                    continue
                problem = f"{line_status} {(result.get('problem') or {}).get('code', 'no-problem-code')}"
                self.errors[problem] += 1
                if line_status in RETRY_STATUSES:
                    retry.append(item)
                else:
                    _settle(item.future, Failed(problem))
        else:
            if status:
                self.errors[f"bulk {self._refusal(status, data)}"] += 1
                if status not in RETRY_STATUSES:
                    for item in batch:
                        _settle(item.future, Failed(f"bulk {status}"))
                    return
            retry = batch
        if retry:
            await asyncio.sleep(_backoff(max(item.attempts for item in retry)))
            self.queue[:0] = retry  # identical bytes, first in line
            self.queue_ready.set()

    # --- the inbox ----------------------------------------------------------------------------

    def _safe_cursor(self) -> int:
        """Past every delivery stored and, for a message, receipted (PROTO-12.6-2)."""
        return self.pending_indexes[0] - 1 if self.pending_indexes else self.max_seen

    async def inbox_loop(self) -> None:
        import aiohttp

        failures = 0
        while not self.stopping:
            index = self.hubs.pick()
            url = self.hubs.urls[index] + "/v1/inbox"
            after = self._safe_cursor()
            # A cursor held back by answers still in flight leaves unacknowledged the receipts it would pass, and each
            # holds back the next message of its case (PROTO-12.4-2, PROTO-12.6-2). A long poll with it could find
            # nothing and wait out `poll_wait` while those answers land: ask without waiting instead, and if nothing
            # came, wait here for the cursor to move (below).
            held_back = bool(self.pending_indexes)
            polled = time.monotonic()
            proof = make_request_proof(self.key, "GET", url, None, utc_now()).decode("ascii")
            query = {"after": str(after), "wait": "0" if held_back else str(self.s.poll_wait), "limit": str(self.s.inbox_limit)}
            try:
                async with self.session.get(url, params=query, headers={"GBA-Request-Proof": proof},
                                            timeout=aiohttp.ClientTimeout(total=self.s.poll_wait + 30)) as answer:
                    data = await answer.read()
                    status = answer.status
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as error:
                if self.stopping:
                    return
                self.transport[f"inbox {type(error).__name__}"] += 1
                self.hubs.failed(index)
                failures += 1
                await asyncio.sleep(_backoff(failures))
                continue
            if status != 200:
                self.errors[f"inbox {self._refusal(status, data)}"] += 1
                failures += 1
                await asyncio.sleep(_backoff(failures))
                continue
            failures = 0
            try:  # read strictly once, as a receiver must (§4, §12.6); each delivery is then taken from the document
                document = strict_json.loads(data, part="inbox answer")
                document["deliveries"], document["cursor"]
            except (ProtocolError, KeyError, TypeError) as error:
                self.errors[f"inbox answer not {{deliveries, cursor}}: {type(error).__name__}"] += 1
                await asyncio.sleep(_backoff(1))
                continue
            self.counts["inbox_polls"] += 1
            if len(self.poll_log) < 200_000:
                self.poll_log.append((polled, time.monotonic(), index, after, document["cursor"], len(document["deliveries"])))
            for item in document["deliveries"]:
                try:
                    self._take(item)
                except Exception as error:  # noqa: BLE001 - counted (the run is invalid), the loop goes on
                    self.errors[f"delivery not handled: {type(error).__name__}: {error}"[:200]] += 1
            self.max_seen = max(self.max_seen, document["cursor"])
            if held_back and not document["deliveries"]:
                self.cursor_moved.clear()
                if self._safe_cursor() == after:
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self.cursor_moved.wait(), self.s.poll_wait)

    def _take(self, item: dict[str, Any]) -> None:
        """Verify one delivery end to end and act on it."""
        self.counts["deliveries"] += 1
        try:
            delivery = delivery_from_document(item)
            verified = verify_delivery(delivery, self.trust, self.schemas)
            if verified.message.receiver != self.code:
                raise ProtocolError("attestation-mismatch", "addressed to another jurisdiction")
        except ProtocolError as refusal:
            self.errors[f"delivery refused: {refusal.code}"] += 1
            return
        message, index = verified.message, verified.attestation.ledger_index
        last = self.case_last_index.get(message.case, -1)
        if index < last:
            self.counts["misordered_deliveries"] += 1
        self.case_last_index[message.case] = index
        if message.type == "receipt":
            self._receipt_back(message.reply_to, message.case)
            return
        if message.id in self.answered or message.id in self.receipted:
            # A redelivery: its receipt is on its way, byte for byte, or already accepted. The second case comes after a
            # process is killed: its leases are offered again at once, and a pull that leased a message just before its
            # receipt was accepted hands it out again just after. A new receipt would be refused (the target is
            # receipted, PROTO-9.4-2), so none is sent.
            self.counts["redeliveries"] += 1
            return
        bisect.insort(self.pending_indexes, index)
        self._spawn(self._answer(message, index))

    async def _answer(self, message: Any, index: int) -> None:
        receipt = self.app.receipt(message_id=message.id, digest=message.digest, sender=message.sender,
                                   case=message.case, status="accepted")
        response = None
        if message.type == "verification.request":
            decision = self.app.decide(message, None)
            response = decision.outgoing[0]
        receipt_item = self.send(receipt.id, "receipt", receipt.compact)
        self.answered[message.id] = receipt_item  # type: ignore[assignment]
        response_future = None
        if response is not None and self.s.bulk:
            response_future = self.send(response.id, "response", response.compact)  # same body, after the receipt
        try:
            await receipt_item
        except Failed:
            self._drop_pending(index)
            return
        self._drop_pending(index)
        self.answered.pop(message.id, None)
        self.receipted[message.id] = None
        if len(self.receipted) > RECEIPTED_REMEMBERED:
            del self.receipted[next(iter(self.receipted))]  # the oldest: long past any lease
        if message.type == "verification.response":
            self._household_step(message.case)
        if response is not None:
            if response_future is None:
                response_future = self.send(response.id, "response", response.compact)
            with contextlib.suppress(Failed):
                await response_future

    def _drop_pending(self, index: int) -> None:
        position = bisect.bisect_left(self.pending_indexes, index)
        if position < len(self.pending_indexes) and self.pending_indexes[position] == index:
            del self.pending_indexes[position]
            if position == 0:
                self.cursor_moved.set()

    def _receipt_back(self, message_id: str | None, case: str) -> None:
        waiting = self.awaiting_receipt.pop(message_id or "", None)
        if waiting is None:
            self.counts["receipts_unmatched"] += 1
            return
        now = time.monotonic()
        sent, kind = waiting
        self.ttr_time.append(now)
        self.ttr_latency.append(now - sent)
        self.ttr_kind.append(kind)
        if kind == KIND_CODES["request"]:
            self._household_step(case)
        else:
            self.response_receipted[case] = now
            self.case_last_index.pop(case, None)

    # --- CN-GD: households ------------------------------------------------------------------------

    def _household_step(self, case: str) -> None:
        household = self.household_of_case.get(case)
        if household is None:
            self.counts["household_unknown_case"] += 1
            return
        self.household_remaining[household] -= 1
        if self.household_remaining[household] == 0:
            self._household_end(household, done=True)

    def _household_end(self, household: int, done: bool) -> None:
        if self.household_remaining.pop(household, None) is None:
            return
        cases = self.household_cases.pop(household)
        for case in cases:
            self.household_of_case.pop(case, None)
            self.case_last_index.pop(case, None)
        if done:
            self.households_done += 1
            self.done_time.append(time.monotonic())
            self.done_cases.extend(cases)
        else:
            self.households_failed += 1
        assert self.slots is not None
        self.slots.release()

    def _sign_request(self, receiver: str, case: str, now: datetime) -> tuple[str, bytes]:
        payload = dict(self.templates[receiver])
        payload["id"] = new_uuid7()
        payload["case"] = case
        payload["created"] = format_timestamp(now)
        payload["body"] = dict(payload["body"], as_of=now.date().isoformat(),
                               respond_by=format_timestamp((now + timedelta(days=14)).replace(microsecond=0)))
        return payload["id"], sign_message(payload, self.key)

    async def generate(self) -> None:
        self.slots = asyncio.Semaphore(self.s.households_in_flight)
        while self.generating and not self.stopping:
            if self.household_limit is not None and self.households_started >= self.household_limit:
                break
            await self.slots.acquire()
            if not self.generating or self.stopping:
                self.slots.release()
                break
            household = self.households_started
            self.households_started += 1
            now = utc_now()
            cases = (new_uuid7(), new_uuid7())
            self.household_cases[household] = cases
            self.household_remaining[household] = 4  # two request receipts back, two responses receipted
            for case in cases:
                self.household_of_case[case] = household
            for receiver, case in zip(RESPONDERS, cases):
                message_id, compact = self._sign_request(receiver, case, now)
                future = self.send(message_id, "request", compact)
                future.add_done_callback(lambda f, h=household: self._request_sent(f, h))
            if self.households_started % 16 == 0:
                await asyncio.sleep(0)
        self.generating = False

    def _request_sent(self, future: asyncio.Future[Any], household: int) -> None:
        if future.cancelled() or future.exception() is not None:
            self._household_end(household, done=False)

    # --- the process --------------------------------------------------------------------------

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            error = task.exception()
            self.errors[f"simulator error: {type(error).__name__}: {error}"[:200]] += 1

    def status(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "generating": self.generating,
            "households_started": self.households_started,
            "households_done": self.households_done,
            "households_failed": self.households_failed,
            "households_open": len(self.household_remaining),
            "awaiting_receipt": len(self.awaiting_receipt),
            "pending": len(self.pending_indexes),
            "queued": len(self.queue) + self.bulk_in_flight,
            "tasks": len(self.tasks),
            "counts": dict(self.counts),
            "errors": sum(self.errors.values()),
        }

    def report(self) -> dict[str, Any]:
        return {
            "status": self.status(),
            "errors": dict(self.errors),
            "transport": dict(self.transport),
            "sent_ids": bytes(self.sent_ids),
            "ttr_time": self.ttr_time.tobytes(), "ttr_latency": self.ttr_latency.tobytes(),
            "ttr_kind": self.ttr_kind.tobytes(),
            "post_time": self.post_time.tobytes(), "post_latency": self.post_latency.tobytes(),
            "post_lines": self.post_lines.tobytes(),
            "done_time": self.done_time.tobytes(), "done_cases": self.done_cases,
            "response_receipted": self.response_receipted,
            "receipt_not_back": sorted(self.awaiting_receipt),
            "poll_log": self.poll_log,
        }

    def _on_command(self) -> None:
        try:
            command, argument = self.control.recv()
        except (EOFError, OSError):
            self.stopping = True
            self.finished.set()
            return
        if command == "start":
            self.household_limit = argument.get("households")
            self.generating = True
            self._spawn(self.generate())
        elif command == "stop_generating":
            self.generating = False
        elif command == "status":
            self.control.send(("status", self.status()))
        elif command == "report":
            self.control.send(("report", self.report()))
        elif command == "shutdown":
            self.stopping = True
            self.finished.set()

    async def run(self) -> None:
        import aiohttp

        context = ssl.create_default_context(cafile=self.s.cafile) if self.s.cafile else None
        connector = aiohttp.TCPConnector(limit=self.s.connections, ssl=context if context is not None else True)
        self.finished = asyncio.Event()
        async with aiohttp.ClientSession(connector=connector, skip_auto_headers=("User-Agent",),
                                         timeout=aiohttp.ClientTimeout(total=120, sock_connect=10)) as session:
            self.session = session
            loop = asyncio.get_running_loop()
            loop.add_reader(self.control.fileno(), self._on_command)
            workers = [loop.create_task(self.inbox_loop())]
            if self.s.bulk:
                workers += [loop.create_task(self._bulk_worker()) for _ in range(self.s.bulk_concurrency)]
            self.control.send(("ready", os.getpid()))
            await self.finished.wait()
            loop.remove_reader(self.control.fileno())
            # Let the long poll in progress answer first: a poll abandoned at the hub goes on and leases
            # deliveries that nobody reads (and a later cursor would acknowledge such receipts unseen).
            await asyncio.wait(workers[:1], timeout=self.s.poll_wait + 10)
            for task in [*workers, *self.tasks]:
                task.cancel()
            await asyncio.gather(*workers, *self.tasks, return_exceptions=True)


def _settle(future: asyncio.Future[Any], outcome: Any) -> None:
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


def _backoff(attempt: int) -> float:
    ceiling = min(2.0, 0.05 * 2 ** min(attempt - 1, 10))
    return random.uniform(ceiling / 2, ceiling)


def simulator_process(settings: SimSettings, control: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the orchestrator decides when we stop
    random.seed(settings.seed or None)
    try:
        asyncio.run(Jurisdiction(settings, control).run())
    except BaseException as error:  # noqa: BLE001 - reported to the orchestrator
        with contextlib.suppress(Exception):
            control.send(("error", f"{type(error).__name__}: {error}\n{traceback.format_exc()[-3000:]}"))
        raise
    finally:
        control.close()


class Simulators:
    """The three simulator processes and their control pipes."""

    def __init__(self, hub_urls: list[str], cafile: str | None, arguments: argparse.Namespace, bulk: bool,
                 households_in_flight: int) -> None:
        context = multiprocessing.get_context("fork")
        self.processes: dict[str, Any] = {}
        self.pipes: dict[str, Any] = {}
        for code in accept.JURISDICTIONS:
            settings = self.settings(code, hub_urls, cafile, arguments, bulk, households_in_flight)
            mine, theirs = context.Pipe(duplex=True)
            process = context.Process(target=simulator_process, args=(settings, theirs), daemon=True,
                                      name=f"simulator-{code}")
            process.start()
            theirs.close()
            self.processes[code], self.pipes[code] = process, mine
        for code in accept.JURISDICTIONS:
            self._expect(code, "ready", 60)

    @staticmethod
    def settings(code: str, hub_urls: list[str], cafile: str | None, arguments: argparse.Namespace, bulk: bool,
                 households_in_flight: int) -> SimSettings:
        """The settings of jurisdiction `code`'s simulator: under `--affinity`, its own hub is the jurisdiction's
        position (CN-GD, HK, MO) modulo the hubs."""
        number = accept.JURISDICTIONS.index(code)
        return SimSettings(
            code=code, hub_urls=list(hub_urls), cafile=cafile, bulk=bulk, bulk_lines=arguments.bulk_lines,
            bulk_concurrency=arguments.bulk_concurrency, inbox_limit=arguments.inbox_limit,
            poll_wait=arguments.poll_wait, connections=arguments.connections,
            households_in_flight=households_in_flight if code == "CN-GD" else 0,
            seed=number + 1, home=number % len(hub_urls) if arguments.affinity else None,
        )

    def pids(self) -> dict[str, int]:
        return {code: process.pid for code, process in self.processes.items()}

    def _expect(self, code: str, what: str, timeout: float) -> Any:
        pipe = self.pipes[code]
        if not pipe.poll(timeout):
            raise RuntimeError(f"simulator {code} did not answer {what!r} within {timeout:.0f} s")
        kind, value = pipe.recv()
        if kind == "error":
            raise RuntimeError(f"simulator {code} failed: {value}")
        if kind != what:
            raise RuntimeError(f"simulator {code} answered {kind!r}, expected {what!r}")
        return value

    def command(self, code: str, command: str, argument: Any = None) -> None:
        self.pipes[code].send((command, argument or {}))

    def status(self) -> dict[str, dict[str, Any]]:
        for code in accept.JURISDICTIONS:
            self.command(code, "status")
        return {code: self._expect(code, "status", 30) for code in accept.JURISDICTIONS}

    def reports(self) -> dict[str, dict[str, Any]]:
        for code in accept.JURISDICTIONS:
            self.command(code, "report")
        return {code: self._expect(code, "report", 120) for code in accept.JURISDICTIONS}

    def stop(self) -> None:
        for code, process in self.processes.items():
            with contextlib.suppress(OSError, BrokenPipeError):
                self.command(code, "shutdown")
        for process in self.processes.values():
            process.join(15)
            if process.is_alive():
                process.kill()
                process.join(5)
        for pipe in self.pipes.values():
            with contextlib.suppress(OSError):
                pipe.close()


# =============================================================================================
# The orchestrator
# =============================================================================================


@dataclass
class Hub:
    number: int
    port: int
    url: str
    process: subprocess.Popen[bytes] | None = None
    killed: bool = False


class Cpu:
    """CPU seconds of every role, read from /proc at the start and end of a measured window."""

    def __init__(self, hubs: list[Hub], postmaster: int | None, simulators: dict[str, int]) -> None:
        self.hubs, self.postmaster, self.simulators = hubs, postmaster, simulators
        self.database_kinds: dict[int, str] = {}  # pid -> what the process is, from the latest snapshot

    def snapshot(self) -> dict[str, Any]:
        return {
            "hubs": {hub.number: accept.process_tree_cpu(hub.process.pid) for hub in self.hubs
                     if hub.process is not None and not hub.killed},
            "database": accept.process_tree_cpu(self.postmaster, self.database_kinds) if self.postmaster else None,
            "simulators": {code: accept.cpu_seconds(pid) for code, pid in self.simulators.items()},
            "orchestrator": sum(os.times()[:2]),
            "machine": accept.machine_busy_seconds(),
        }

    def database_by_kind(self, before: dict[str, Any], after: dict[str, Any]) -> dict[str, float] | None:
        """The database's CPU seconds in the window by process kind (client backends, walwriter, autovacuum...)."""
        if before["database"] is None or after["database"] is None:
            return None
        found = accept.tree_cpu_by_kind(before["database"], after["database"], self.database_kinds)
        return {kind: round(value, 3) for kind, value in sorted(found.items(), key=lambda item: -item[1])}

    @staticmethod
    def delta(before: dict[str, Any], after: dict[str, Any], killed_cpu: float = 0.0) -> dict[str, Any]:
        hub = sum(accept.tree_cpu_delta(before["hubs"].get(number, {}), tree) for number, tree in after["hubs"].items())
        hub += killed_cpu
        result: dict[str, Any] = {"hub": round(hub, 3)}
        result["database"] = (round(accept.tree_cpu_delta(before["database"], after["database"]), 3)
                              if before["database"] is not None and after["database"] is not None else None)
        for code, value in after["simulators"].items():
            previous = before["simulators"].get(code)
            result[code] = round(value - previous, 3) if value is not None and previous is not None else None
        result["orchestrator"] = round(after["orchestrator"] - before["orchestrator"], 3)
        if before["machine"] is not None and after["machine"] is not None:
            own = sum(value or 0.0 for value in result.values())
            result["machine"] = round(after["machine"] - before["machine"], 3)
            result["other"] = round(max(0.0, result["machine"] - own), 3)
        return result


def database_by_kind(seconds: dict[str, float] | None, result: dict[str, Any]) -> dict[str, Any]:
    """`database_cpu_s_by_kind` and `database_cpu_us_per_message_by_kind`: the database's CPU by process kind,
    in seconds and in µs per end-to-end message (scaled as `cpu_us_per_message["database"]` is)."""
    if seconds is None:
        return {}
    total, per_message = result["cpu_s"].get("database"), result["cpu_us_per_message"].get("database")
    scale = per_message / total if total and per_message is not None else None
    return {"database_cpu_s_by_kind": seconds,
            "database_cpu_us_per_message_by_kind": ({kind: round(value * scale, 1) for kind, value in seconds.items()}
                                                    if scale is not None else None)}


def fetch_metrics(hubs: list[Hub], cafile: str | None) -> dict[str, float] | None:
    """The sum over live hubs of `gateway_stage_seconds_total` and `gateway_stage_count_total` by stage;
    None when no hub exposes them."""
    context = ssl.create_default_context(cafile=cafile) if cafile else None
    totals: dict[str, float] = {}
    found = False
    for hub in hubs:
        if hub.killed:
            continue
        text = accept.metrics_text(hub.url, context)
        if text is None:
            continue
        for key, value in accept.stage_totals(text).items():
            found = True
            totals[key] = totals.get(key, 0.0) + value
    return totals if found else None


def percentiles(values: Sequence[float]) -> dict[str, float]:
    ordered = sorted(values)
    result = {}
    for share in PERCENTILES:
        key = f"p{share:g}_ms".replace(".", "_")
        result[key] = round(_rank(ordered, share) * 1000, 2) if ordered else None
    result["max_ms"] = round(ordered[-1] * 1000, 2) if ordered else None
    result["count"] = len(ordered)
    return result


def _rank(ordered: Sequence[float], share: float) -> float:
    return ordered[accept.rank(len(ordered), share)]


def histogram(values: Sequence[float]) -> dict[str, Any]:
    """A compact latency distribution: percentiles 1..99 (+99.9) in ms, and counts in log-spaced buckets."""
    ordered = sorted(values)
    if not ordered:
        return {"percentiles_ms": {}, "buckets_ms": [], "counts": []}
    edges = [round(0.1 * 10 ** (step / 10), 4) for step in range(0, 56)]  # 0.1 ms .. ~31.6 s, 10 per decade
    counts = [0] * (len(edges) + 1)
    for value in ordered:
        counts[bisect.bisect_right(edges, value * 1000)] += 1
    return {
        "percentiles_ms": {str(share): round(_rank(ordered, share) * 1000, 2) for share in [*range(1, 100), 99.9]},
        "buckets_ms": edges,
        "counts": counts,
        "note": "counts[i] = values below buckets_ms[i] (and at least buckets_ms[i-1]); the last count is above the last edge",
    }


def _floats(data: bytes) -> array.array:
    values = array.array("d")
    values.frombytes(data)
    return values


def window_stats(reports: dict[str, dict[str, Any]], start: float, end: float) -> dict[str, Any]:
    """What the simulators recorded between `start` and `end` (monotonic seconds)."""
    ttr_all, ttr_by_kind = [], {kind: [] for kind in KIND_CODES if kind != "receipt"}
    by_second: list[list[float]] = [[] for _ in range(math.ceil(end - start) or 1)]
    names = {code: kind for kind, code in KIND_CODES.items()}
    posts, post_lines = [], 0
    for report in reports.values():
        kinds = array.array("b")
        kinds.frombytes(report["ttr_kind"])
        for moment, latency, kind in zip(_floats(report["ttr_time"]), _floats(report["ttr_latency"]), kinds):
            if start <= moment <= end:
                ttr_all.append(latency)
                ttr_by_kind[names[kind]].append(latency)
                by_second[min(int(moment - start), len(by_second) - 1)].append(latency)
        lines = array.array("i")
        lines.frombytes(report["post_lines"])
        for moment, latency, count in zip(_floats(report["post_time"]), _floats(report["post_latency"]), lines):
            if start <= moment <= end:
                posts.append(latency)
                post_lines += count
    return {"ttr": ttr_all, "ttr_by_kind": ttr_by_kind, "ttr_by_second": by_second, "posts": posts, "post_lines": post_lines}


def by_second(latencies: list[list[float]], start: float) -> dict[str, Any]:
    """The window second by second, by the moment each receipt came back: how many, and their median and
    worst time to receipt. A tail that comes from one stall (a checkpoint, a pause) shows as a few bad seconds;
    `started_at` puts second 0 on the clock of the servers' logs."""
    return {
        "started_at": datetime.fromtimestamp(time.time() - (time.monotonic() - start), timezone.utc)
        .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "receipts": [len(values) for values in latencies],
        "p50_ms": [round(statistics.median(values) * 1000, 1) if values else None for values in latencies],
        "max_ms": [round(max(values) * 1000, 1) if values else None for values in latencies],
    }


def household_times(reports: dict[str, dict[str, Any]]) -> list[float]:
    """When each household was complete: CN-GD had both request receipts back and both responses receipted,
    and HK and MO each had the receipt of their response back (the latest of the three moments)."""
    cn = reports["CN-GD"]
    done = _floats(cn["done_time"])
    cases = cn["done_cases"]
    receipted = {**reports["HK"]["response_receipted"], **reports["MO"]["response_receipted"]}
    times = []
    for number, moment in enumerate(done):
        hk, mo = receipted.get(cases[2 * number]), receipted.get(cases[2 * number + 1])
        if hk is None or mo is None:
            continue
        times.append(max(moment, hk, mo))
    return sorted(times)


# --- database checks ------------------------------------------------------------------------------


async def _receipts_not_back(connection: Any, ids: list[str]) -> list[dict[str, Any]]:
    """For messages whose receipt never reached their sender: what the database says about that receipt."""
    rows = await connection.fetch(
        "SELECT t.id::text AS message_id, t.type, t.status AS message_status, r.id::text AS receipt_id, "
        "r.ledger_index AS receipt_index, r.status AS receipt_status, r.delivered_by, "
        "o.state AS outbox_state, o.attempts, o.claimed_by, o.lease_until::text AS lease_until, "
        "(SELECT convert_from(e.entry, 'UTF8') FROM ledger_entries e WHERE e.message_id = r.id::text "
        " AND position('\"kind\":\"delivered\"'::bytea IN e.entry) > 0 LIMIT 1) AS delivered_entry "
        "FROM unnest($1::uuid[]) AS wanted(id) JOIN messages t ON t.id = wanted.id "
        "LEFT JOIN messages r ON r.reply_to = t.id AND r.type = 'receipt' "
        "LEFT JOIN outbox o ON o.message_id = r.id ORDER BY t.id", [uuid.UUID(value) for value in ids[:50]])
    return [dict(row) for row in rows]


async def _integrity(dsn: str, sent: bytes, not_back: list[str] | None = None) -> dict[str, Any]:
    import asyncpg

    connection = await asyncpg.connect(dsn, timeout=15, command_timeout=600)
    try:
        ids = [uuid.UUID(bytes=sent[offset:offset + 16]) for offset in range(0, len(sent), 16)]
        await connection.execute("CREATE TEMP TABLE bench_sent (id uuid NOT NULL)")
        await connection.copy_records_to_table("bench_sent", records=[(value,) for value in ids])
        await connection.execute("ANALYZE bench_sent")
        accepted_kind = "position('\"kind\":\"accepted\"'::bytea IN e.entry) > 0"
        row = await connection.fetchrow(f"""
            WITH per_id AS (
                SELECT s.id, count(DISTINCT e.idx) AS entries
                FROM bench_sent s
                LEFT JOIN ledger_entries e ON e.message_id = s.id::text AND {accepted_kind}
                GROUP BY s.id
            )
            SELECT count(*) FILTER (WHERE entries = 0) AS no_entry,
                   count(*) FILTER (WHERE entries > 1) AS many_entries,
                   count(*) AS distinct_sent
            FROM per_id""")
        not_stored = await connection.fetchval(
            "SELECT count(*) FROM (SELECT DISTINCT id FROM bench_sent) s LEFT JOIN messages m ON m.id = s.id "
            "WHERE m.id IS NULL")
        duplicate_entries = await connection.fetchval(f"""
            SELECT count(*) FROM (SELECT e.message_id FROM ledger_entries e WHERE {accepted_kind}
                                  GROUP BY e.message_id HAVING count(*) > 1) d""")
        index_mismatch = await connection.fetchval(
            "SELECT count(*) FROM messages m LEFT JOIN ledger_entries e ON e.idx = m.ledger_index "
            "WHERE e.message_id IS DISTINCT FROM m.id::text")
        response_before_request = await connection.fetchval(
            "SELECT count(*) FROM messages q JOIN messages r ON r.case_id = q.case_id "
            "WHERE q.type = 'verification.request' AND r.type = 'verification.response' AND r.ledger_index <= q.ledger_index")
        receipt_before_target = await connection.fetchval(
            "SELECT count(*) FROM messages r JOIN messages t ON t.id = r.reply_to "
            "WHERE r.type = 'receipt' AND r.ledger_index <= t.ledger_index")
        unreceipted = await connection.fetchval(
            "SELECT count(*) FROM messages m JOIN (SELECT DISTINCT id FROM bench_sent) s ON s.id = m.id "
            "WHERE m.type <> 'receipt' AND m.receiver_receipt IS NULL")
        ledger = await connection.fetchrow(
            "SELECT (SELECT size FROM ledger_size) AS size, count(*) AS rows, min(idx) AS low, max(idx) AS high "
            "FROM ledger_entries")
        clear = await connection.fetchval(
            "SELECT count(*) FROM messages WHERE compact IS NOT NULL AND payload_key IS NULL")
        stored = await connection.fetchval("SELECT count(*) FROM messages")
        by_type = {r["type"]: r["n"] for r in await connection.fetch(
            "SELECT type, count(*) AS n FROM messages GROUP BY type ORDER BY type")}
        not_back_detail = await _receipts_not_back(connection, not_back) if not_back else []
    finally:
        await connection.close()
    gap_free = ledger["rows"] == ledger["size"] and (ledger["size"] == 0 or (ledger["low"] == 0 and ledger["high"] == ledger["size"] - 1))
    return {
        "sent": len(ids),
        "sent_twice_by_client": len(ids) - row["distinct_sent"],
        "lost": int(row["no_entry"]) + 0,
        "not_stored": int(not_stored),
        "duplicated": int(row["many_entries"]) + int(duplicate_entries),
        "misordered": int(response_before_request) + int(receipt_before_target) + int(index_mismatch),
        "misordered_detail": {"response_not_after_request": response_before_request,
                              "receipt_not_after_target": receipt_before_target,
                              "message_index_not_its_accepted_entry": index_mismatch},
        "unreceipted": int(unreceipted),
        "ledger_size": int(ledger["size"]),
        "ledger_gap_free": bool(gap_free),
        "stored_messages": int(stored),
        "stored_by_type": by_type,
        "stored_in_clear": int(clear),
        "receipts_not_back": len(not_back or []),
        "receipts_not_back_detail": not_back_detail,
    }


def ledger_verify(dsn: str, timeout: float) -> dict[str, Any]:
    started = time.monotonic()
    try:
        result = subprocess.run([*accept.gateway_command(), "ledger", "verify", "--database-url", dsn, "--json"],
                                capture_output=True, text=True, timeout=timeout, env=accept._child_environment(),
                                stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return {"verified": False, "detail": f"gateway ledger verify did not finish within {timeout:.0f} s"}
    report: Any = None
    with contextlib.suppress(ValueError):
        report = json.loads(result.stdout.strip().splitlines()[-1]) if result.stdout.strip() else None
    return {"verified": result.returncode == 0, "exit_status": result.returncode,
            "seconds": round(time.monotonic() - started, 1),
            "report": report if report is not None else (result.stdout + result.stderr)[-1500:]}


# --- one measured phase ---------------------------------------------------------------------------


@dataclass
class Phase:
    """One measured run against the hubs that are up: a pipeline window, or a bulk batch of households."""

    name: str
    result: dict[str, Any] = field(default_factory=dict)
    sent: bytes = b""
    not_back: list[str] = field(default_factory=list)
    poll_logs: dict[str, list[Any]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


INDEXER_GRACE_SECONDS = 60
"""How long the run waits, after the last phase has drained, for the hubs' person indexer to catch up."""


class Orchestrator:
    def __init__(self, arguments: argparse.Namespace, folder: Path) -> None:
        self.arguments = arguments
        self.folder = folder
        self.notes: list[str] = []
        self.problems: list[str] = []
        self.hubs: list[Hub] = []
        self.tls: accept.TlsFiles | None = None
        self.db: accept.Database | None = None
        self.stack = contextlib.ExitStack()

    # --- processes -------------------------------------------------------------------------

    def start_hub(self, number: int) -> Hub:
        port = accept.free_port()
        scheme = "https" if self.tls else "http"
        hub = Hub(number, port, f"{scheme}://127.0.0.1:{port}")
        config = self.folder / f"hub-{number}.toml"
        config.write_text(accept.hub_config(port, self.folder / f"hub-{number}-data", self.tls,
                                            self.console_toml() + self.arguments.hub_toml), "utf-8")
        assert self.db is not None
        command = [*accept.gateway_command(), "serve", "--config", str(config), "--port", str(port),
                   "--database-url", self.db.dsn, "--workers", str(self.arguments.hub_workers)]
        process, _ = self.stack.enter_context(accept.started(command, self.folder / f"hub-{number}.log", "gateway: serving"))
        hub.process = process
        self.hubs.append(hub)
        _say(f"hub {number}: pid {process.pid} on {hub.url}")
        return hub

    def console_toml(self) -> str:
        """One person blind-index key for every hub of the run, as production configures it (docs/operations.md): the
        console's person indexer then works in the hubs as it does in acceptance's (`bench/accept.py`, whose hub makes
        its key in its data directory). The hubs here keep their data elsewhere (`--database-url`), so without this
        they made no key and indexed nothing (docs/performance.md, "Fifteenth pass"). A `[console]` table in
        `--hub-toml` takes its place."""
        if "[console]" in self.arguments.hub_toml:
            return ""
        key = self.folder / "console-blind-index.key"
        if not key.exists():
            descriptor = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(secrets.token_bytes(32))
        return f"\n[console]\nblind_index_key = {json.dumps(str(key))}\n"

    def live_hubs(self) -> list[Hub]:
        return [hub for hub in self.hubs if not hub.killed]

    def kill(self, hub: Hub) -> float:
        """SIGKILL `hub`; its CPU seconds just before (for the window's accounting)."""
        assert hub.process is not None
        cpu = sum(accept.process_tree_cpu(hub.process.pid).values())
        hub.process.kill()
        hub.process.wait(10)
        hub.killed = True
        _say(f"hub {hub.number} (pid {hub.process.pid}) killed with SIGKILL")
        return cpu

    # --- a phase ----------------------------------------------------------------------------------

    def run_phase(self, name: str, hubs: list[Hub], households_in_flight: int, bulk: bool,
                  seconds: float | None = None, households: int | None = None,
                  kill_after: float | None = None) -> Phase:
        arguments = self.arguments
        phase = Phase(name)
        cafile = str(self.tls.ca) if self.tls else None
        assert self.db is not None
        simulators = Simulators([hub.url for hub in hubs], cafile, arguments, bulk, households_in_flight)
        try:
            cpu = Cpu(hubs, self.db.postmaster_pid(), simulators.pids())
            killed_cpu_before = killed_cpu_after = 0.0
            killed: Hub | None = None
            simulators.command("CN-GD", "start", {"households": households})
            if seconds is not None:
                warmup = arguments.warmup_seconds
                _say(f"{name}: warm-up {warmup:g} s, then {seconds:g} s measured at {households_in_flight} households "
                     f"in flight, {len(hubs)} hub(s), {'bulk' if bulk else 'single'} messages")
                self._wait(simulators, warmup, name)
            else:
                _say(f"{name}: {households} households at {households_in_flight} in flight, {len(hubs)} hub(s), "
                     f"{'bulk' if bulk else 'single'} messages")
            metrics_before = fetch_metrics(hubs, cafile)
            before = cpu.snapshot()
            start = time.monotonic()
            if seconds is not None:
                if kill_after is not None:
                    self._wait(simulators, kill_after, name)
                    killed = hubs[0]
                    killed_cpu_before = sum(before["hubs"].get(killed.number, {}).values())
                    killed_cpu_after = self.kill(killed)
                    phase.result["killed_hub_at_s"] = round(time.monotonic() - start, 1)
                self._wait(simulators, seconds - (time.monotonic() - start), name)
            else:
                self._wait_for_households(simulators, households or 0, name)
            end = time.monotonic()
            after = cpu.snapshot()
            metrics_after = fetch_metrics([hub for hub in hubs if not hub.killed], cafile)
            if killed is not None:
                metrics_before = None  # a killed hub's counters are gone: no per-stage table
                self.notes.append(f"{name}: no per-stage table (a hub was killed in the window)")
            simulators.command("CN-GD", "stop_generating")
            drained = self._drain(simulators, name)
            reports = simulators.reports()
        finally:
            simulators.stop()
        if not drained:
            phase.problems.append(f"{name}: the drain did not finish within {arguments.drain_seconds:g} s")
        phase.result.update(self._summarise(name, reports, start, end, before, after,
                                            killed_cpu_after - killed_cpu_before, metrics_before, metrics_after,
                                            households_in_flight, len(hubs), bulk, seconds is None))
        phase.result |= database_by_kind(cpu.database_by_kind(before, after), phase.result)
        phase.sent = b"".join(report["sent_ids"] for report in reports.values())
        phase.not_back = [value for report in reports.values() for value in report["receipt_not_back"]]
        if phase.not_back:
            phase.poll_logs = {code: report["poll_log"] for code, report in reports.items() if report["receipt_not_back"]}
        phase.problems.extend(phase.result.pop("_problems"))
        return phase

    def _wait(self, simulators: Simulators, seconds: float, name: str) -> None:
        deadline = time.monotonic() + max(0.0, seconds)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            time.sleep(min(5.0, remaining))
            status = simulators.status()
            cn = status["CN-GD"]
            _say(f"{name}: {cn['households_done']} households done, {cn['households_open']} open, "
                 f"errors {sum(s['errors'] for s in status.values())}")

    def _wait_for_households(self, simulators: Simulators, households: int, name: str) -> None:
        deadline = time.monotonic() + self.arguments.timeout
        started = time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(2.0)
            status = simulators.status()
            cn = status["CN-GD"]
            finished = cn["households_done"] + cn["households_failed"]
            elapsed = time.monotonic() - started
            _say(f"{name}: {cn['households_done']}/{households} households done in {elapsed:.0f} s "
                 f"({cn['households_done'] / elapsed:.1f}/s), {cn['households_open']} open, "
                 f"errors {sum(s['errors'] for s in status.values())}")
            if finished >= households and self._quiet(status):
                return
        raise RuntimeError(f"{name}: {households} households did not finish within --timeout {self.arguments.timeout:g} s")

    @staticmethod
    def _quiet(status: dict[str, dict[str, Any]]) -> bool:
        return all(s["awaiting_receipt"] == 0 and s["pending"] == 0 and s["queued"] == 0 and s["households_open"] == 0
                   for s in status.values())

    def _drain(self, simulators: Simulators, name: str) -> bool:
        deadline = time.monotonic() + self.arguments.drain_seconds
        while time.monotonic() < deadline:
            status = simulators.status()
            if not status["CN-GD"]["generating"] and self._quiet(status):
                return True
            time.sleep(0.5)
        status = simulators.status()
        _say(f"{name}: drain timed out: " + json.dumps({code: {k: s[k] for k in ('awaiting_receipt', 'pending', 'queued', 'households_open')}
                                                          for code, s in status.items()}))
        return False

    def _summarise(self, name: str, reports: dict[str, dict[str, Any]], start: float, end: float,
                   before: dict[str, Any], after: dict[str, Any], killed_cpu: float,
                   metrics_before: dict[str, float] | None, metrics_after: dict[str, float] | None,
                   households_in_flight: int, hub_count: int, bulk: bool, until_done: bool) -> dict[str, Any]:
        problems: list[str] = []
        completed = household_times(reports)
        if until_done and completed:
            end = max(end, completed[-1])
        duration = end - start
        in_window = [moment for moment in completed if start <= moment <= end]
        stats = window_stats(reports, start, end)
        errors: Counter[str] = Counter()
        transport: Counter[str] = Counter()
        counts: Counter[str] = Counter()
        for code, report in reports.items():
            errors.update({f"{code}: {key}": value for key, value in report["errors"].items()})
            transport.update({f"{code}: {key}": value for key, value in report["transport"].items()})
            counts.update(report["status"]["counts"])
        accepted_total = sum(value for key, value in counts.items() if key.startswith("accepted_"))
        # messages the hub accepted in the window: every 202 line/answer the simulators got in it
        accepted_in_window = stats["post_lines"] if not bulk else None
        cpu = Cpu.delta(before, after, killed_cpu)
        messages = MESSAGES_PER_HOUSEHOLD * len(in_window)
        pipeline_per_s = len(stats["ttr"]) / duration if duration > 0 else 0.0
        households_per_s = len(in_window) / duration if duration > 0 else 0.0
        accepted_per_s = (accepted_in_window / duration) if accepted_in_window is not None and duration > 0 else None
        if bulk:
            accepted_per_s = sum(_count_lines(report, start, end) for report in reports.values()) / duration if duration > 0 else 0.0
        ttr = percentiles(stats["ttr"])
        result: dict[str, Any] = {
            "phase": name,
            "hubs": hub_count,
            "households_in_flight": households_in_flight,
            "sending": "bulk" if bulk else "single",
            "duration_s": round(duration, 3),
            "households_completed": len(in_window),
            "households_per_s": round(households_per_s, 2),
            "households_per_hour": round(households_per_s * 3600),
            "projected_hours_for_1650000_households": round(HOUSEHOLDS_1650000 / (households_per_s * 3600), 2) if households_per_s else None,
            "pipeline_per_s": round(pipeline_per_s, 1),
            "pipeline_messages": len(stats["ttr"]),
            "pipeline_per_s_from_households": round(messages / duration, 1) if duration > 0 else 0.0,
            "accepted_per_s": round(accepted_per_s, 1) if accepted_per_s is not None else None,
            "p50_ms": ttr["p50_ms"], "p90_ms": ttr["p90_ms"], "p95_ms": ttr["p95_ms"], "p99_ms": ttr["p99_ms"],
            "p99_9_ms": ttr["p99_9_ms"], "max_ms": ttr["max_ms"],
            "time_to_receipt_by_kind": {kind: percentiles(values) for kind, values in stats["ttr_by_kind"].items()},
            "time_to_receipt_histogram": histogram(stats["ttr"]),
            "time_to_receipt_by_second": by_second(stats["ttr_by_second"], start),
            "post_latency": percentiles(stats["posts"]) | {"requests": len(stats["posts"]),
                                                           "lines_per_request": round(stats["post_lines"] / len(stats["posts"]), 1) if stats["posts"] else None},
            "cpu_s": cpu,
            "cpu_us_per_message": {role: (round(value / messages * 1e6, 1) if value is not None and messages else None)
                                   for role, value in cpu.items() if role not in ("machine", "other")},
            "cpu_note": "per end-to-end message (4 per household); CN-GD is also the load generator",
            "other_cpu_s": cpu.get("other"),
            "stages": accept.stage_table(metrics_before, metrics_after, round((accepted_per_s or 0) * duration)),
            "errors": dict(sorted(errors.items())),
            "transport_errors": dict(sorted(transport.items())),
            "counts": dict(sorted(counts.items())),
            "accepted_total": accepted_total,
            "misordered_deliveries": counts.get("misordered_deliveries", 0),
        }
        if result["stages"] is None:
            result["stages_note"] = ("the hubs expose no gateway_stage_seconds_total in /metrics"
                                     if metrics_after is None else "not available for this phase")
        for code, report in reports.items():
            status = report["status"]
            if status["households_failed"]:
                problems.append(f"{name}: {status['households_failed']} households failed (a message refused for good)")
        if not in_window:
            problems.append(f"{name}: no household completed in the measured window")
        if errors:
            problems.append(f"{name}: answers other than 202, or deliveries refused: {dict(errors)}")
        if counts.get("misordered_deliveries"):
            problems.append(f"{name}: {counts['misordered_deliveries']} deliveries arrived out of ledger order in their case")
        result["_problems"] = problems
        _say(f"{name}: {households_per_s:.1f} households/s, {pipeline_per_s:.1f} end-to-end messages/s, "
             f"time to receipt p50 {ttr['p50_ms']} ms p99 {ttr['p99_ms']} ms; errors {dict(errors) or 0}")
        return result

    # --- the whole run ---------------------------------------------------------------------------

    def ceilings(self, bulk: bool) -> dict[str, Any]:
        arguments = self.arguments
        sample = accept.sign_messages(1)[0]
        result: dict[str, Any] = {
            "ed25519_sign_per_s": round(ceilings.ed25519_sign_rate(sample)),
            "ed25519_verify_per_s": round(ceilings.ed25519_verify_rate(sample)),
        }
        assert self.db is not None
        result |= ceilings.postgres_copy_rate(self.db.dsn, sample, arguments.copy_seconds)
        bodies = accept.sign_messages(2000)
        with accept.started(accept.echo_command(self.tls), self.folder / "echo.log", "echo: serving") as (echo, line):
            url = line.split()[-1]
            echo = ceilings.echo_ceiling(url, bodies, str(self.tls.ca) if self.tls else None, processes=3,
                                         connections=arguments.echo_connections, seconds=arguments.echo_seconds,
                                         bulk_lines=arguments.bulk_lines if bulk else 0)
        if echo["echo_errors"]:
            self.problems.append(f"echo answers other than 202: {echo['echo_errors']}")
        result |= echo
        _say("ceilings: " + ", ".join(f"{key} {value}" for key, value in result.items() if key.endswith("per_s")))
        return result

    def run(self) -> dict[str, Any]:
        arguments = self.arguments
        mode = arguments.mode
        bulk = mode == "bulk" or arguments.bulk
        machine = accept.machine_info()
        self.stack.enter_context(_payload_keys())
        if not arguments.no_tls:
            self.tls = accept.make_tls(self.folder / "tls")
        self.db = self.stack.enter_context(accept.database(self.folder, arguments.database_url, self.notes))
        _say(f"database: {self.db.description}; working in {self.folder}")
        phases: list[Phase] = []
        first = self.start_hub(1)  # migrates the database: the COPY ceiling needs `messages`
        ceiling = self.ceilings(bulk)
        result: dict[str, Any] = {}
        if mode in ("pipeline", "bulk"):
            sweep = arguments.sweep or [arguments.households_in_flight]
            for level in sweep:
                if mode == "pipeline":
                    phases.append(self.run_phase(f"pipeline@{level}", [first], level, bulk, seconds=arguments.seconds))
                else:
                    phases.append(self.run_phase(f"bulk@{level}", [first], level, True, households=arguments.households))
        else:
            level = arguments.households_in_flight
            phases.append(self.run_phase("one-hub", [first], level, bulk, seconds=arguments.seconds))
            second = self.start_hub(2)
            if arguments.two_hubs:
                phases.append(self.run_phase("two-hubs", [first, second], level, bulk, seconds=arguments.seconds))
            others = [second, self.start_hub(3)]
            phases.append(self.run_phase("three-hubs", [first, *others], level, bulk, seconds=arguments.seconds))
            if arguments.kill_after is not None and arguments.kill_after > 0:
                phases.append(self.run_phase("three-hubs-kill", [first, *others], level, bulk, seconds=arguments.seconds,
                                             kill_after=arguments.kill_after))
        behind = asyncio.run(accept._fetchval(self.db.dsn, accept.INDEX_BEHIND_SQL))
        deadline = time.monotonic() + INDEXER_GRACE_SECONDS  # the indexer's backlog is the hubs' work too: let it finish
        while asyncio.run(accept._fetchval(self.db.dsn, accept.INDEX_BEHIND_SQL)) and time.monotonic() < deadline:
            time.sleep(0.2)  # polling the database for a condition, bounded by the deadline
        indexed = asyncio.run(accept._fetchval(self.db.dsn, "SELECT count(DISTINCT message_id) FROM console_person_index"))
        # stop the hubs (drained), then check what the database holds
        for hub in self.hubs:
            if hub.process is not None and not hub.killed:
                status = accept.stop_process(hub.process)
                if status != 0:
                    self.problems.append(f"hub {hub.number} exited with status {status} on SIGTERM")
        integrity = asyncio.run(_integrity(self.db.dsn, b"".join(phase.sent for phase in phases),
                                           [value for phase in phases for value in phase.not_back]))
        for item in integrity["receipts_not_back_detail"]:
            index = item.get("receipt_index")
            if index is None:
                continue
            item["polls_spanning_it"] = [
                {"phase": phase.name, "simulator": code, "hub": hub + 1, "after": after, "cursor": cursor,
                 "deliveries": count, "seconds": round(answered - sent, 3)}
                for phase in phases for code, log in phase.poll_logs.items()
                for sent, answered, hub, after, cursor, count in log if after < index <= cursor][:10]
        verify = ledger_verify(self.db.dsn, arguments.verify_timeout)
        for phase in phases:
            self.problems.extend(phase.problems)
        for key in ("lost", "duplicated", "misordered", "not_stored", "unreceipted", "stored_in_clear", "sent_twice_by_client",
                    "receipts_not_back"):
            if integrity[key]:
                self.problems.append(f"{key}: {integrity[key]}")
        if not integrity["ledger_gap_free"]:
            self.problems.append("the ledger indexes are not gap-free")
        if not verify["verified"]:
            self.problems.append(f"gateway ledger verify failed: {verify['report']}")
        by_name = {phase.name: phase for phase in phases}
        main = phases[-1] if mode != "scaleout" else by_name["three-hubs"]
        points = [phase.result for phase in phases]
        result = {
            "benchmark": mode,
            "date": datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
            "command": _command_line(),
            "commit": machine.get("commit"),
        }
        headline = ("households_per_s", "households_per_hour", "projected_hours_for_1650000_households", "pipeline_per_s",
                    "accepted_per_s", "p50_ms", "p95_ms", "p99_ms", "max_ms", "duration_s", "households_completed",
                    "cpu_us_per_message", "database_cpu_us_per_message_by_kind", "stages", "other_cpu_s")
        result |= {key: main.result.get(key) for key in headline}
        result["ratio_to_echo"] = (round(main.result["accepted_per_s"] / ceiling["echo_ceiling_per_s"], 4)
                                   if main.result.get("accepted_per_s") and ceiling.get("echo_ceiling_per_s") else None)
        result["ratio_to_echo_note"] = ("hub accepted messages/s (4 messages and 4 receipts per household) over the echo "
                                        "server's requests/s" + (" (lines/s in bulk)" if bulk else "") +
                                        " with the same client stack")
        if mode == "scaleout":
            one, three = by_name["one-hub"].result, by_name["three-hubs"].result
            result["ratio_3_to_1"] = _ratio(three, one)
            result["one_hub_pipeline_per_s"] = one["pipeline_per_s"]
            result["three_hubs_pipeline_per_s"] = three["pipeline_per_s"]
            if "two-hubs" in by_name:
                result["two_hubs_pipeline_per_s"] = by_name["two-hubs"].result["pipeline_per_s"]
                result["ratio_2_to_1"] = _ratio(by_name["two-hubs"].result, one)
            if "three-hubs-kill" in by_name:
                result["kill_phase_pipeline_per_s"] = by_name["three-hubs-kill"].result["pipeline_per_s"]
                result["killed_hub_at_s"] = by_name["three-hubs-kill"].result.get("killed_hub_at_s")
        if mode == "bulk":
            result["households"] = arguments.households
        result |= {
            "lost": integrity["lost"],
            "duplicated": integrity["duplicated"],
            "misordered": integrity["misordered"],
            "ledger_verified": verify["verified"],
            "errors": {key: value for phase in phases for key, value in phase.result["errors"].items()},
            "tls": self.tls is not None,
            "encryption_at_rest": integrity["stored_in_clear"] == 0 and integrity["stored_messages"] > 0,
            "person_index_behind": behind,
            "person_indexed_messages": indexed,
            "ceilings": ceiling,
            "points": points,
            "integrity": integrity,
            "ledger_verify": verify,
            "settings": {key: (str(value) if isinstance(value, Path) else value) for key, value in vars(arguments).items()},
            "database": self.db.description,
            "machine": machine | {"postgresql": self.db.version},
            "problems": self.problems,
            "notes": self.notes,
        }
        return result


def _ratio(phase: dict[str, Any], one_hub: dict[str, Any]) -> float | None:
    """A phase's end-to-end messages/s over the one-hub phase's (None when the one-hub phase carried nothing)."""
    return round(phase["pipeline_per_s"] / one_hub["pipeline_per_s"], 3) if one_hub["pipeline_per_s"] else None


def _count_lines(report: dict[str, Any], start: float, end: float) -> int:
    lines = array.array("i")
    lines.frombytes(report["post_lines"])
    return sum(count for moment, count in zip(_floats(report["post_time"]), lines) if start <= moment <= end)


@contextlib.contextmanager
def _payload_keys() -> Any:
    """One fresh payload key for the run, shared by every hub process through GATEWAY_PAYLOAD_KEYS."""
    previous = os.environ.get("GATEWAY_PAYLOAD_KEYS")
    key_id = "bench-" + datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S")
    os.environ["GATEWAY_PAYLOAD_KEYS"] = f"{key_id}={base64.b64encode(secrets.token_bytes(32)).decode()}"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("GATEWAY_PAYLOAD_KEYS", None)
        else:
            os.environ["GATEWAY_PAYLOAD_KEYS"] = previous


def _command_line() -> str:
    return accept._command_line("bench/pipeline.py")


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("pipeline", "bulk", "scaleout"), default="pipeline")
    parser.add_argument("--seconds", type=float, default=60.0, help="measured window of pipeline and scaleout phases (default 60)")
    parser.add_argument("--warmup-seconds", type=float, default=5.0, help="unmeasured load before each window (default 5)")
    parser.add_argument("--households", type=int, default=100_000, help="bulk: households to run (default 100000)")
    parser.add_argument("--households-in-flight", type=int,
                        help="households open at once (the concurrency; default 64, bulk 2000)")
    parser.add_argument("--sweep", type=lambda text: [int(part) for part in text.split(",") if part],
                        help="pipeline/bulk: one phase per concurrency, e.g. 16,32,64,128 (a point each in `points`)")
    parser.add_argument("--bulk", action="store_true", help="pipeline/scaleout: send with POST /v1/messages/bulk too")
    parser.add_argument("--bulk-lines", type=int, default=500, help="most lines in one bulk body (default 500; also "
                                                                   "capped at 1,000,000 bytes)")
    parser.add_argument("--bulk-concurrency", type=int, default=2, help="bulk bodies in flight per simulator (default 2)")
    parser.add_argument("--inbox-limit", type=int, default=500, help="GET /v1/inbox limit (default 500)")
    parser.add_argument("--poll-wait", type=int, default=1,
                        help="long-poll wait in seconds (default 1: a delivered receipt holds back the next message of its "
                             "case until the next poll acknowledges it by cursor, PROTO-12.4-2, PROTO-12.6-2, so a long wait "
                             "shows up in the latency tail)")
    parser.add_argument("--connections", type=int, default=256, help="HTTP connections per simulator (default 256)")
    parser.add_argument("--hub-workers", type=int, default=1,
                        help="processes per hub (`gateway serve --workers N`, one port; default 1); their /metrics "
                             "counters are summed over the workers, so `stages` counts them all")
    parser.add_argument("--hub-toml", default="", help='TOML appended to each hub\'s generated configuration, e.g. '
                                                       '"[commit]\\nmax_batch = 1024" (docs/configuration.md; default none)')
    parser.add_argument("--kill-after", type=float, help="scaleout: SIGKILL hub 1 this many seconds into the last "
                                                         "phase, three-hubs-kill (default: half of --seconds; 0: no such phase)")
    parser.add_argument("--two-hubs", action="store_true", help="scaleout: also a phase on two hubs, between one and three "
                                                              "(`two_hubs_pipeline_per_s`, `ratio_2_to_1`)")
    parser.add_argument("--affinity", action="store_true",
                        help="scaleout: each jurisdiction sends to and pulls from a hub of its own (CN-GD hub 1, HK hub 2, "
                             "MO hub 3, modulo the hubs of the phase), and to the others in turn only while its own failed "
                             "in the last 3 s; default: every request to the next hub in turn")
    parser.add_argument("--drain-seconds", type=float, default=120.0, help="time for open households to finish after "
                                                                          "each phase (default 120)")
    parser.add_argument("--timeout", type=float, default=7200.0, help="bulk: longest the households may take (default 7200)")
    parser.add_argument("--echo-seconds", type=float, default=5.0, help="echo ceiling run (default 5)")
    parser.add_argument("--echo-connections", type=int, default=64, help="echo ceiling connections (default 64)")
    parser.add_argument("--copy-seconds", type=float, default=3.0, help="PostgreSQL COPY ceiling run (default 3)")
    parser.add_argument("--verify-timeout", type=float, default=1800.0, help="longest `gateway ledger verify` may take")
    parser.add_argument("--database-url", help="a PostgreSQL server (a fresh database is created and dropped); default: "
                                               "the embedded server in a temporary directory")
    parser.add_argument("--no-tls", action="store_true", help="plain HTTP (default: HTTPS with a certificate made for the run)")
    parser.add_argument("--json-out", type=Path, help="also write the JSON result to this file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, configs)")
    arguments = parser.parse_args(argv)
    if arguments.households_in_flight is None:
        arguments.households_in_flight = 2000 if arguments.mode == "bulk" else 64
    if arguments.mode == "scaleout" and arguments.kill_after is None:
        arguments.kill_after = arguments.seconds / 2
    if arguments.mode == "scaleout" and arguments.sweep:
        parser.error("--sweep is for pipeline and bulk")
    if arguments.two_hubs and arguments.mode != "scaleout":
        parser.error("--two-hubs is for scaleout")
    if arguments.affinity and arguments.mode != "scaleout":
        parser.error("--affinity is for scaleout")
    if not 1 <= arguments.bulk_lines <= 1000:
        parser.error("--bulk-lines must be 1 to 1000")
    if not 1 <= arguments.inbox_limit <= 500:
        parser.error("--inbox-limit must be 1 to 500")
    if arguments.households < 1 or arguments.households_in_flight < 1:
        parser.error("--households and --households-in-flight must be at least 1")
    if arguments.kill_after and arguments.kill_after >= arguments.seconds:
        parser.error("--kill-after must be less than --seconds")
    return arguments


def _terminate_on_signal() -> None:
    def handler(signal_number: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signal_number}")

    signal.signal(signal.SIGTERM, handler)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    _terminate_on_signal()
    folder = Path(tempfile.mkdtemp(prefix="gba-pipeline-"))
    orchestrator = Orchestrator(arguments, folder)
    result: dict[str, Any]
    try:
        with orchestrator.stack:
            result = orchestrator.run()
    except (Exception, KeyboardInterrupt) as error:  # noqa: BLE001 - reported as an invalid run
        result = {"benchmark": arguments.mode, "command": _command_line(),
                  "date": datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
                  "problems": [*orchestrator.problems, f"the run failed: {type(error).__name__}: {error}"],
                  "notes": orchestrator.notes, "errors": {}}
        _say(traceback.format_exc())
    finally:
        if arguments.keep:
            _say(f"kept {folder}")
        else:
            import shutil

            shutil.rmtree(folder, ignore_errors=True)
    text = json.dumps(result, indent=2, default=str)
    print(text)
    if arguments.json_out:
        arguments.json_out.parent.mkdir(parents=True, exist_ok=True)
        arguments.json_out.write_text(text + "\n", "utf-8")
    if result.get("errors") or result.get("problems"):
        _say(f"not a valid run: problems {result.get('problems')}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
