"""The path of one message through the hub (DESIGN.md "The hub pipeline"; docs/protocol.md §8.4).

    size, JWS, key, signature      protocol.message.check_signature   (unauthenticated refusals)
    payload JSON                   protocol.message.read_payload
    freshness                      created outside ±300 s
    envelope                       protocol.message.check_envelope (schema, sender, receiver)
    route and legal basis          hub.policy; the adapters' checks
    (a refusal so far: one lookup) a resend of identical bytes gets its stored hub receipt (§8.2),
                                   an accepted id with other bytes id-conflict (§8.3)
    -- a group-committed transaction, set-based over the batch's messages, judged in order --
    id and key again, case locked  hub.store.look_up_many (a resend that raced in: the stored receipt)
    reply_to, case transition      hub.cases.decide
    hub receipt                    signed before the insert, stored with the message
    case, message, outbox          hub.store.insert_messages; ledger entries by ledger.append

Refusals after the signature are *authenticated*: they are ledgered (digest, code,
where; no text) in the same group commit. Refusals before it only reach metrics and
the rate-limited security log (the caller's job). `accept_many` takes a bulk body's
lines (§12.9) the same way, in their order.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ContextManager

import asyncpg
import orjson
import structlog

from gateway.adapters.base import JurisdictionAdapter
from gateway.hub import cases, outbox, store
from gateway.hub.committer import CommitFailed, GroupCommitter, database_unavailable
from gateway.hub.policy import RoutePolicy, check_freshness
from gateway.hub.stages import STAGE_TIMES
from gateway.ledger.append import LedgerAppender
from gateway.ledger.entries import LedgerEntry
from gateway.protocol.errors import ProtocolError
from gateway.protocol.ids import UUID7
from gateway.protocol.keys import PrivateKey
from gateway.protocol.message import Message, SignedMessage, check_envelope, check_signature, read_payload
from gateway.protocol.schema import MessageSchemas
from gateway.protocol import base64url
from gateway.protocol.statements import HubReceipt, LocalView, sign_hub_receipt
from gateway.protocol.timestamps import format_timestamp
from gateway.protocol.trust import TrustList, sign_trust_list
from gateway.store.payloads import PayloadKeys

_log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Acceptance:
    """The hub's answer to an accepted message (or to a resend of one)."""

    message_id: str
    hub_receipt: bytes
    replayed: bool


_ENDINGS = frozenset({"referral.withdraw", "verification.cancel"})
"""Types whose acceptance removes the rest of their case from delivery (PROTO-12.7-1)."""
_DEADLINE_TYPES = frozenset({"verification.response", "verification.cancel"})
"""Types judged against a verification deadline that may have passed since the last look (PROTO-7.5-3)."""


class _IdRace:
    """A concurrent acceptance of the same id won: look again after the commit."""


@dataclasses.dataclass(frozen=True, slots=True)
class _AcceptWork:
    """The group committer's work for one message (gateway/hub/committer.py): alone (`__call__`, in a savepoint when
    the batch runs isolated), or with its neighbours in the batch (`run_many`, set-based: a few statements a batch)."""

    hub: "Hub"
    message: Message
    queued: float

    async def __call__(self, connection: asyncpg.Connection, appender: LedgerAppender) -> Any:
        (result,) = await self.hub._commit_run(connection, appender, [self])
        return result

    @property
    def run_many(self) -> Callable[[asyncpg.Connection, LedgerAppender, list["_AcceptWork"]], Awaitable[list[Any]]]:
        return self.hub._commit_many


@dataclasses.dataclass(slots=True)
class _Plan:
    """What the batch decided for one message before anything of it is written (`Hub._commit_many`)."""

    message: Message
    expired: datetime | None = None
    """The case's `respond_by`, when judging this message moved its case to `expired` (PROTO-7.5-3)."""
    outcome: Any = None
    """A ProtocolError (refused), an _IdRace, or the CaseWrite (None: none) of an acceptance."""
    superseded: list[str] | None = None
    attempts: int = 0


class Hub:
    """Accepts messages. Holds no per-message state: any number of processes share the database."""

    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        committer: GroupCommitter,
        trust: Callable[[], TrustList],
        schemas: MessageSchemas,
        policy: RoutePolicy,
        receipt_key: PrivateKey,
        clock: Callable[[], datetime],
        freshness_seconds: int = 300,
        adapters: Mapping[str, JurisdictionAdapter] | None = None,
        payload_keys: PayloadKeys,
    ) -> None:
        self._pool = pool
        self._committer = committer
        self._trust = trust
        self._schemas = schemas
        self._policy = policy
        self._receipt_key = receipt_key
        self._clock = clock
        self._freshness_seconds = freshness_seconds
        self._security_log = SecurityLog(clock)
        self._signed_trust_list: tuple[TrustList, bytes] | None = None
        self._adapters = dict(adapters or {})
        self.payload_keys = payload_keys
        """Seals every stored message and opens it for delivery (gateway/store/payloads.py)."""

    def now(self) -> datetime:
        """The hub's clock."""
        return self._clock()

    @property
    def receipt_key(self) -> PrivateKey:
        """The hub key that signs receipts and attestations (§9.1, §9.2)."""
        return self._receipt_key

    def trust(self) -> TrustList:
        """The trust list this process holds now."""
        return self._trust()

    def signed_trust_list(self) -> bytes:
        """The registry as a `gba-trust-list+jws` (§10.3), signed once per registry version."""
        trust = self._trust()
        if self._signed_trust_list is None or self._signed_trust_list[0] is not trust:
            self._signed_trust_list = (trust, sign_trust_list(trust, self._receipt_key))
        return self._signed_trust_list[1]

    async def accept(
        self,
        compact: bytes,
        *,
        receipt_from: str | None = None,
        sent_by: str | None = None,
        admit: Callable[[str], ContextManager[None]] | None = None,
    ) -> Acceptance:
        """Accept `compact` or raise ProtocolError; durable before it returns.

        With `receipt_from`, only a receipt signed by that jurisdiction is taken
        (`POST /v1/receipts` and push answers, PROTO-12.5-2, PROTO-12.6-3). With
        `sent_by` (the jurisdiction a client certificate names, §12.8), the signer must
        be that jurisdiction. `admit(signer)` holds the caller's place under the abuse
        limits once the signature holds (gateway/hub/limits.py), so that an unsigned
        header cannot spend another jurisdiction's budget.
        """
        now = self._clock()
        trust = self._trust()
        try:
            with STAGE_TIMES.timed("signature"):
                signed = check_signature(compact, trust, now)
        except ProtocolError as refusal:
            self._security_log.refused(refusal.code)
            raise
        with admit(signed.key.owner) if admit is not None else contextlib.nullcontext():
            return await self._accept_signed(signed, trust, now, receipt_from, sent_by)

    async def _accept_signed(
        self, signed: SignedMessage, trust: TrustList, now: datetime, receipt_from: str | None, sent_by: str | None
    ) -> Acceptance:
        try:
            if sent_by is not None and signed.key.owner != sent_by:
                raise ProtocolError("client-certificate-mismatch", where="kid")
            if receipt_from is not None and signed.key.owner != receipt_from:
                raise ProtocolError("sender-mismatch", "The receipt is not signed by the caller", where="kid")
            with STAGE_TIMES.timed("payload"):
                payload = read_payload(signed)
        except ProtocolError as refusal:
            await self._ledger_refusal(signed, refusal, now)
            raise
        try:
            with STAGE_TIMES.timed("envelope"):
                message = self._check_payload(signed, payload, None, trust, now)
            if receipt_from is not None and message.type != "receipt":
                raise ProtocolError("receipt-expected", where="/type")
        except ProtocolError as error:
            # Only a refused message costs a lookup before the queue: it may be a resend of accepted bytes, which
            # gets its stored receipt whatever its age (§8.2), or reuse an accepted id (§8.3). An accepted message
            # is looked up once, in its batch (`_commit_run`).
            refusal = error
            with STAGE_TIMES.timed("lookup"):
                found = await store.look_up(self._pool, signed.jws.digest, _id_of(payload))
            if found.stored is not None:
                message_id, hub_receipt, stored_type = found.stored
                if receipt_from is None or stored_type == "receipt":
                    _log.info("message_resent", message_id=message_id, kid=signed.jws.kid)
                    return Acceptance(message_id, hub_receipt, replayed=True)
                refusal = ProtocolError("receipt-expected", where="/type")
            elif found.known_digest is not None:
                refusal = ProtocolError("id-conflict", where="/id")
            await self._ledger_refusal(signed, refusal, now)
            raise refusal from None
        try:
            outcome = await self._committer.run(
                _AcceptWork(self, message, time.perf_counter()), savepoint=False
            )
        except asyncpg.UniqueViolationError:  # a race the batch's lookup could not see: answered as one
            outcome = _IdRace()
        result = await self._settled(signed, message, outcome, now)
        if isinstance(result, ProtocolError):
            raise result
        return result

    def _check_payload(self, signed: SignedMessage, payload: Any, known: str | None, trust: TrustList, now: datetime) -> Message:
        """The checks after the payload was read; `known` is the digest already accepted under its id, if any."""
        if known is not None and known != signed.jws.digest:
            raise ProtocolError("id-conflict", where="/id")
        if isinstance(payload, dict) and isinstance(payload.get("created"), str):
            check_freshness(payload["created"], payload.get("type"), now, self._freshness_seconds)
        message = check_envelope(signed, payload, trust, self._schemas)
        self._policy.check(message)
        if (sender := self._adapters.get(message.sender)) is not None:
            sender.check_sent(message, sender.today_at(now))
        if (receiver := self._adapters.get(message.receiver)) is not None:
            receiver.check_received(message, receiver.today_at(now))
        return message

    async def accept_many(
        self,
        bodies: Sequence[bytes],
        *,
        sent_by: str | None = None,
        take: Callable[[str], None] | None = None,
        max_bytes: int | None = None,
    ) -> list[Acceptance | ProtocolError]:
        """Judge each of `bodies` as `accept` judges one, in their order, sharing the database round trips
        (docs/protocol.md §12.9); one result per body, every acceptance durable before this returns.

        `take(signer)` spends one request of the signer's budget once its signature holds (PROTO-12.9-5). A body longer
        than `max_bytes` (the message size limit) is refused with `message-too-large` unread, as `POST /v1/messages` does.
        A database failure while looking up the bodies raises (nothing was judged); one during a commit
        answers the lines of that batch `unavailable`.
        """
        now = self._clock()
        trust = self._trust()
        results: list[Acceptance | ProtocolError | None] = [None] * len(bodies)
        signed_lines: list[tuple[int, SignedMessage]] = []
        refusals: dict[int, tuple[SignedMessage, ProtocolError]] = {}
        for line, body in enumerate(bodies):
            if max_bytes is not None and len(body) > max_bytes:
                results[line] = ProtocolError("message-too-large")
                continue
            try:
                with STAGE_TIMES.timed("signature"):
                    signed = check_signature(body, trust, now)
            except ProtocolError as refusal:
                self._security_log.refused(refusal.code)
                results[line] = refusal
                continue
            try:
                if take is not None:
                    take(signed.key.owner)
            except ProtocolError as refusal:  # rate-limited: not processed, not ledgered (PROTO-12.8-4)
                results[line] = refusal
                continue
            signed_lines.append((line, signed))
            if sent_by is not None and signed.key.owner != sent_by:
                # Refused before anything else, as `accept` does, and ledgered: the signer is authenticated (PROTO-12.8-3).
                refusals[line] = (signed, ProtocolError("client-certificate-mismatch", where="kid"))
        started = time.perf_counter()
        stored = await store.receipts_by_digests(self._pool, {signed.jws.digest for line, signed in signed_lines if line not in refusals})
        lookup_seconds = time.perf_counter() - started
        payloads: dict[int, Any] = {}
        for line, signed in signed_lines:
            if line in refusals:
                continue
            if signed.jws.digest in stored:
                message_id, hub_receipt, _ = stored[signed.jws.digest]
                _log.info("message_resent", message_id=message_id, kid=signed.jws.kid)
                results[line] = Acceptance(message_id, hub_receipt, replayed=True)
                continue
            try:
                with STAGE_TIMES.timed("payload"):
                    payloads[line] = read_payload(signed)
            except ProtocolError as refusal:
                refusals[line] = (signed, refusal)
        ids = {_id_of(payload) for payload in payloads.values()} - {None}
        started = time.perf_counter()
        known = await store.digests_by_ids(self._pool, ids) if ids else {}
        STAGE_TIMES.add("lookup", lookup_seconds + time.perf_counter() - started, count=len(signed_lines))
        pending: dict[int, tuple[SignedMessage, Message | None, asyncio.Future[Any]]] = {}
        used: dict[str, list[tuple[int, str]]] = {}
        """id -> (line, digest) of each earlier line of the body submitted for acceptance under it."""
        for line, signed in signed_lines:
            if results[line] is not None:
                continue
            refusal = refusals[line][1] if line in refusals else None
            message = None
            message_id = None
            if refusal is None:
                payload = payloads[line]
                message_id = _id_of(payload)
                try:
                    with STAGE_TIMES.timed("envelope"):
                        message = self._check_payload(signed, payload, known.get(message_id or ""), trust, now)
                except ProtocolError as error:
                    refusal = error
            if refusal is not None:
                earlier = [pending[e][2] for e, d in used.get(message_id or "", ()) if d != signed.jws.digest]
                if earlier and refusal.code != "id-conflict" and await _any_took_the_id(earlier):
                    # Alone, after those lines, this line would be refused with id-conflict (`accept` looks the id up
                    # once a check fails). Rare: only this line waits for their commit, and the lines stay in order.
                    refusal = ProtocolError("id-conflict", where="/id")
                pending[line] = self._submit_refusal(signed, refusal, now)
                refusals[line] = (signed, refusal)
            else:
                assert message is not None
                used.setdefault(message.id, []).append((line, signed.jws.digest))
                work = _AcceptWork(self, message, time.perf_counter())
                pending[line] = (signed, message, self._committer.submit(work, savepoint=False))
        await self._settle_all(pending, refusals, results, now)
        assert all(result is not None for result in results), "every line has its result"
        return results  # type: ignore[return-value]

    def _submit_refusal(
        self, signed: SignedMessage, refusal: ProtocolError, now: datetime
    ) -> tuple[SignedMessage, Message | None, asyncio.Future[Any]]:
        """Queue the ledger entry of a bulk line's refusal (the signer is authenticated, §13)."""
        _log.info("message_refused", code=refusal.code, where=refusal.where, kid=signed.jws.kid)
        entry = _refused_entry(signed.jws.digest, signed.jws.kid, signed.key.owner, refusal, now)
        return signed, None, self._committer.submit(lambda connection, appender, entry=entry: appender.add(entry))

    async def _settle_all(
        self,
        pending: Mapping[int, tuple[SignedMessage, Message | None, asyncio.Future[Any]]],
        refusals: Mapping[int, tuple[SignedMessage, ProtocolError]],
        results: list[Acceptance | ProtocolError | None],
        now: datetime,
    ) -> None:
        """Wait for the submitted lines and put each one's result in `results`. A line whose work failed for another
        reason than its message gets the problem `POST /v1/messages` would have answered for it alone (`unavailable`
        or `internal-error`), and the other lines keep theirs (PROTO-12.9-2)."""
        await asyncio.gather(*(future for _, _, future in pending.values()), return_exceptions=True)
        for line, (signed, message, future) in pending.items():
            try:
                results[line] = await self._settle(signed, message, future, refusals.get(line), now)
            except Exception as error:  # noqa: BLE001 - one line's fault stays its own
                code = "unavailable" if database_unavailable(error) else "internal-error"
                _log.error("bulk_line_failed", code=code, line=line + 1, error=type(error).__name__)
                results[line] = ProtocolError(code, retry_after_seconds=1 if code == "unavailable" else None)

    async def _settle(
        self, signed: SignedMessage, message: Message | None, future: asyncio.Future[Any], refusal: tuple[SignedMessage, ProtocolError] | None,
        now: datetime,
    ) -> Acceptance | ProtocolError:
        """The result of one committed bulk line: its acceptance or refusal, or `unavailable` when its batch did not commit."""
        error = future.exception()
        if isinstance(error, asyncpg.UniqueViolationError) and message is not None:
            return await self._settled(signed, message, _IdRace(), now)
        if error is not None:
            if isinstance(error, CommitFailed):
                return ProtocolError("unavailable", retry_after_seconds=1)
            raise error
        if message is None:
            assert refusal is not None
            return refusal[1]
        return await self._settled(signed, message, future.result(), now)

    async def _settled(self, signed: SignedMessage, message: Message, outcome: Any, now: datetime) -> Acceptance | ProtocolError:
        """What a committed acceptance work's `outcome` means for its sender, logged: the acceptance, the refusal, or
        for a race with an identical message the stored receipt (a race with other bytes: id-conflict)."""
        if isinstance(outcome, _IdRace):
            try:
                return await self._after_race(signed, message, now)
            except ProtocolError as refusal:
                return refusal
            except CommitFailed:
                return ProtocolError("unavailable", retry_after_seconds=1)
        if isinstance(outcome, ProtocolError):
            _log.info("message_refused", code=outcome.code, where=outcome.where, kid=message.kid, case=message.case, route=_route(message))
            return outcome
        _log.info("message_accepted", message_id=message.id, case=message.case, route=_route(message))
        return outcome

    def local_view(self, receiver: str, compact: bytes) -> LocalView:
        """The receiver's local view of an accepted message (§9.3), by its adapter; empty without one."""
        adapter = self._adapters.get(receiver)
        if adapter is None:
            return LocalView()
        # Plain JSON: these bytes passed the strict rules (§4) when they were accepted, and parse to the same value.
        payload = orjson.loads(base64url.decode(compact.split(b".")[1]))
        sender = self._adapters.get(payload.get("from"))
        return adapter.local_view(payload, sender.schemes if sender is not None else None)

    async def _commit_many(self, connection: asyncpg.Connection, appender: LedgerAppender, works: list[_AcceptWork]) -> list[Any]:
        """The acceptance of consecutive messages of a batch, set-based, by `_commit_run`: in one run as a rule, since
        the run judges each message against what the earlier ones of the run decided (`_Overlay`). A new run starts
        only where a statement of the run must see the rows an earlier message of the run writes (`_starts_run`). The
        results and ledger entries are those of accepting the messages one by one, in order."""
        results: list[Any] = []
        start = 0
        while start < len(works):
            cases_seen: set[str] = set()
            ids_seen: set[str] = set()
            end = start
            while end < len(works) and not (end > start and _starts_run(works[end].message, cases_seen, ids_seen)):
                cases_seen.add(works[end].message.case)
                ids_seen.add(works[end].message.id)
                end += 1
            results += await self._commit_run(connection, appender, works[start:end])
            start = end
        return results

    async def _commit_run(self, connection: asyncpg.Connection, appender: LedgerAppender, works: list[_AcceptWork]) -> list[Any]:
        """Messages of a batch inside its group-committed transaction: one lookup (ids, keys, cases locked, reply_to
        targets), the decisions in order (each seeing what the earlier ones of the run decided), one statement for the
        receipts among them, the ledger entries in order, and one insert of cases, messages and outbox rows, whatever
        the number of messages. Each result is an Acceptance, a ProtocolError whose refusal it ledgered, or _IdRace,
        never an exception for a refusal; nothing is written before every decision is made but the expiry of a case
        found past its deadline, so it needs no savepoint (gateway/hub/committer.py)."""
        accepted_at = self._clock()
        started = time.perf_counter()
        for work in works:
            STAGE_TIMES.add("queue", started - work.queued)
        views = await store.look_up_many(connection, [work.message for work in works], accepted_at)
        STAGE_TIMES.add("batch_lookup", time.perf_counter() - started, count=len(works))
        plans = []
        overlay = _Overlay()
        with STAGE_TIMES.timed("decide", count=len(works)):
            for work, view in zip(works, views):
                plan = _Plan(work.message)
                plans.append(plan)
                case, replied, known_digest = overlay.view(plan.message, view)
                if plan.message.type in _DEADLINE_TYPES and _due(case, accepted_at):
                    respond_by = await outbox.expire_case_if_due(connection, plan.message.case, accepted_at)
                    if respond_by is not None:
                        plan.expired = respond_by
                        case = dataclasses.replace(case, state="expired")
                        overlay.cases[plan.message.case] = case
                try:
                    if view.key_refusal is not None:
                        raise view.key_refusal
                    if known_digest == plan.message.digest:
                        plan.outcome = _IdRace()
                        continue
                    if known_digest is not None:
                        raise ProtocolError("id-conflict", where="/id")
                    plan.outcome = cases.decide(plan.message, case, replied, accepted_at)
                except ProtocolError as refusal:
                    plan.outcome = refusal
                    continue
                overlay.accepted(plan.message, case, plan.outcome)
        _net_case_writes(plans)
        accepted = [plan for plan in plans if not isinstance(plan.outcome, (ProtocolError, _IdRace))]
        for plan in accepted:
            if plan.message.type in _ENDINGS:
                plan.superseded = await outbox.supersede_case(connection, plan.message.case)
        acknowledged = [plan for plan in accepted if plan.message.type == "receipt"]
        if acknowledged:
            attempts = await outbox.complete_with_receipts(connection, [(plan.message.reply_to, plan.message.compact) for plan in acknowledged])
            for plan in acknowledged:
                plan.attempts = attempts.get(plan.message.reply_to, 0)
        results: list[Any] = []
        rows = []
        for plan in plans:
            message = plan.message
            if plan.expired is not None:
                await appender.add(deadline_entry(message.case, plan.expired, accepted_at))
            if isinstance(plan.outcome, _IdRace):
                results.append(plan.outcome)
                continue
            if isinstance(plan.outcome, ProtocolError):
                await appender.add(_refused_entry(message.digest, message.kid, message.sender, plan.outcome, accepted_at))
                results.append(plan.outcome)
                continue
            index = appender.next_index
            with STAGE_TIMES.timed("receipt_sign"):
                receipt = sign_hub_receipt(
                    HubReceipt(message_id=message.id, message_digest=message.digest, ledger_index=index, accepted_at=accepted_at),
                    self._receipt_key,
                )
            with STAGE_TIMES.timed("seal"):
                sealed = self.payload_keys.seal(message.id, message.compact)
            rows.append(store.NewMessage(message, accepted_at, index, receipt, sealed, self._policy.retention_days(message), plan.outcome))
            await appender.add(_accepted_entry(message, accepted_at))
            if plan.superseded is not None:
                await appender.add(_ending_entry(message, plan.superseded, accepted_at))
            if message.type == "receipt":
                await appender.add(_receipt_entry(message, plan.attempts, accepted_at))
            results.append(Acceptance(message.id, receipt, replayed=False))
        if rows:
            with STAGE_TIMES.timed("insert", count=len(rows)):
                await store.insert_messages(connection, rows)
        return results

    async def _after_race(self, signed: SignedMessage, message: Message, now: datetime) -> Acceptance:
        stored = await store.receipt_by_digest(self._pool, message.digest)
        if stored is not None:
            return Acceptance(stored[0], stored[1], replayed=True)
        refusal = ProtocolError("id-conflict", where="/id")
        await self._ledger_refusal(signed, refusal, now)
        raise refusal

    async def _ledger_refusal(self, signed: SignedMessage, refusal: ProtocolError, now: datetime) -> None:
        _log.info("message_refused", code=refusal.code, where=refusal.where, kid=signed.jws.kid)
        entry = _refused_entry(signed.jws.digest, signed.jws.kid, signed.key.owner, refusal, now)
        await self._committer.run(lambda connection, appender: appender.add(entry))


def _route(message: Message) -> str:
    return f"{message.sender}>{message.receiver}:{message.type}"


class SecurityLog:
    """Refusals of unauthenticated input: logged at most `per_minute` times a minute, the rest counted.

    Anyone can send garbage; nobody can make the hub write unbounded logs (or ledger
    entries: unauthenticated refusals are never ledgered) by doing so.
    """

    def __init__(self, clock: Callable[[], datetime], per_minute: int = 60) -> None:
        self._clock = clock
        self._per_minute = per_minute
        self._window: datetime | None = None
        self._logged = 0
        self._suppressed = 0

    def refused(self, code: str) -> None:
        now = self._clock().replace(second=0, microsecond=0)
        if now != self._window:
            if self._suppressed:
                _log.warning("unauthenticated_refusals_suppressed", count=self._suppressed)
            self._window, self._logged, self._suppressed = now, 0, 0
        if self._logged < self._per_minute:
            self._logged += 1
            _log.warning("unauthenticated_refusal", code=code)
        else:
            self._suppressed += 1


def _starts_run(message: Message, cases_seen: set[str], ids_seen: set[str]) -> bool:
    """Whether `message` must start a new run of `_commit_run` after messages of `cases_seen` and `ids_seen`: an ending
    supersedes the queued rows of its case (PROTO-12.7-1), and a receipt completes the delivery of its target, so each
    must come after the rows that earlier messages of the run insert; the overlay cannot stand in for rows."""
    if message.type in _ENDINGS:
        return message.case in cases_seen
    return message.type == "receipt" and message.reply_to in ids_seen


class _Overlay:
    """What the earlier messages of a run decided, laid over the run's one lookup: the later messages of the run are
    judged as if the earlier ones were already written, as accepting them one by one would judge them."""

    __slots__ = ("cases", "messages", "receipted")

    def __init__(self) -> None:
        self.cases: dict[str, store.CaseRow] = {}
        """Case id -> the case as the run's accepted messages left it (opened, moved, or expired)."""
        self.messages: dict[str, Message] = {}
        """Message id -> the run's accepted message with that id."""
        self.receipted: set[str] = set()
        """Ids of messages that an accepted receipt of the run acknowledged."""

    def view(self, message: Message, looked_up: store.BatchView) -> tuple[store.CaseRow | None, store.RepliedMessage | None, str | None]:
        """The message's case, `reply_to` target and digest already accepted under its id, as of its place in the run."""
        case = self.cases.get(message.case, looked_up.case)
        earlier = self.messages.get(message.id)
        known_digest = earlier.digest if earlier is not None else looked_up.known_digest
        replied = looked_up.replied
        if message.reply_to is not None:
            target = self.messages.get(message.reply_to)
            if target is not None:
                replied = store.RepliedMessage(target.case, target.type, target.receiver, message.reply_to in self.receipted, target.digest)
            elif replied is not None and message.reply_to in self.receipted:
                replied = dataclasses.replace(replied, receipted=True)
        return case, replied, known_digest

    def accepted(self, message: Message, case: store.CaseRow | None, write: "cases.CaseWrite | None") -> None:
        """Record an accepted message of the run: its id, its receipt's target, its case write (`cases.decide`)."""
        self.messages[message.id] = message
        if message.type == "receipt" and message.reply_to is not None:
            self.receipted.add(message.reply_to)
        if write is None:
            return
        if write.action == "open":
            self.cases[message.case] = store.CaseRow(write.kind, message.sender, message.receiver, write.state, write.respond_by)
        else:
            assert case is not None, "a move is decided on an existing case"
            self.cases[message.case] = dataclasses.replace(case, state=write.state)


def _net_case_writes(plans: list[_Plan]) -> None:
    """Fold the case writes of a run into one a case, for the run's one insert: the first writer of a case carries it
    (an opening message names the opener, the responder and `opened_by`), with the state the last writer left."""
    first: dict[str, _Plan] = {}
    for plan in plans:
        write = plan.outcome
        if not isinstance(write, cases.CaseWrite):
            continue
        carrier = first.setdefault(plan.message.case, plan)
        if carrier is not plan:
            carrier.outcome = dataclasses.replace(carrier.outcome, state=write.state)
            plan.outcome = None


def _due(case: store.CaseRow | None, now: datetime) -> bool:
    """Whether a verification case waits for an answer past its deadline: judging a message of it expires it first."""
    return (case is not None and case.kind == "verification" and case.state == "requested"
            and case.respond_by is not None and case.respond_by < now)


async def _any_took_the_id(works: Sequence[asyncio.Future[Any]]) -> bool:
    """Whether one of these acceptance works of earlier lines committed its message, or lost its id to a message
    committed meanwhile (`_IdRace`): either way the id is now taken."""
    await asyncio.gather(*works, return_exceptions=True)
    return any(not work.cancelled() and work.exception() is None and isinstance(work.result(), (Acceptance, _IdRace)) for work in works)


def _id_of(payload: Any) -> str | None:
    """The payload's `id` when it is in the protocol's form (§5.2), else None (the envelope check refuses it)."""
    if isinstance(payload, dict) and isinstance(payload.get("id"), str) and UUID7.fullmatch(payload["id"]):
        return payload["id"]
    return None


def _accepted_entry(message: Message, accepted_at: datetime) -> LedgerEntry:
    return LedgerEntry(
        "accepted",
        format_timestamp(accepted_at),
        {
            "message_id": message.id,
            "message_digest": message.digest,
            "type": message.type,
            "from": message.sender,
            "to": message.receiver,
            "case": message.case,
            "kid": message.kid,
        },
    )


def _ending_entry(message: Message, superseded: list[str], at: datetime) -> LedgerEntry:
    kind = "withdrawn" if message.type == "referral.withdraw" else "cancelled"
    return LedgerEntry(kind, format_timestamp(at), {"case": message.case, "message_id": message.id, "superseded": superseded})


def _receipt_entry(receipt: Message, attempts: int, at: datetime) -> LedgerEntry:
    return LedgerEntry(
        "receipt-received",
        format_timestamp(at),
        {"message_id": receipt.reply_to, "receipt_id": receipt.id, "status": receipt.body["status"], "attempts": attempts},
    )


def deadline_entry(case: str, respond_by: datetime, at: datetime) -> LedgerEntry:
    """The ledger's record of a verification deadline that passed (PROTO-7.5-3, PROTO-12.7-2)."""
    return LedgerEntry("deadline-passed", format_timestamp(at), {"case": case, "respond_by": format_timestamp(respond_by)})


def _refused_entry(digest: str, kid: str, sender: str, refusal: ProtocolError, at: datetime) -> LedgerEntry:
    fields: dict[str, Any] = {"message_digest": digest, "kid": kid, "from": sender, "code": refusal.code}
    if refusal.where is not None:
        fields["where"] = refusal.where
    return LedgerEntry("refused", format_timestamp(at), fields)
