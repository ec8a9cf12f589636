"""The path of one message through the hub (DESIGN.md "The hub pipeline"; docs/protocol.md §8.4).

    size, JWS, key, signature      protocol.message.check_signature   (unauthenticated refusals)
    digest lookup                  a resend of identical bytes gets its stored hub receipt
    payload JSON                   protocol.message.read_payload
    id lookup, freshness           same id with other bytes: id-conflict; created outside ±300 s
    envelope                       protocol.message.check_envelope (schema, sender, receiver)
    route and legal basis          hub.policy
    -- one savepoint of a group-committed transaction --
    reply_to, case transition      hub.cases
    message, ledger entry, outbox  hub.store, ledger.append
    hub receipt                    signed before the insert, stored with the message

Refusals after the signature are *authenticated*: they are ledgered (digest, code,
where; no text) in the same group commit. Refusals before it only reach metrics and
the rate-limited security log (the caller's job).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ContextManager

import asyncpg
import structlog

from gateway.adapters.base import JurisdictionAdapter
from gateway.hub import cases, outbox, store
from gateway.hub.committer import CommitFailed, GroupCommitter
from gateway.hub.policy import RoutePolicy, check_freshness
from gateway.ledger.append import LedgerAppender
from gateway.ledger.entries import LedgerEntry
from gateway.protocol.errors import ProtocolError
from gateway.protocol.ids import UUID7
from gateway.protocol.keys import PrivateKey
from gateway.protocol.message import Message, SignedMessage, check_envelope, check_signature, read_payload
from gateway.protocol.schema import MessageSchemas
from gateway.protocol import base64url, strict_json
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
            stored = await store.receipt_by_digest(self._pool, signed.jws.digest)
            if stored is not None:
                message_id, hub_receipt, stored_type = stored
                if receipt_from is not None and stored_type != "receipt":
                    raise ProtocolError("receipt-expected", where="/type")
                _log.info("message_resent", message_id=message_id, kid=signed.jws.kid)
                return Acceptance(message_id, hub_receipt, replayed=True)
            message = await self._check(signed, trust, now)
            if receipt_from is not None and message.type != "receipt":
                raise ProtocolError("receipt-expected", where="/type")
        except ProtocolError as refusal:
            await self._ledger_refusal(signed, refusal, now)
            raise
        outcome = await self._committer.run(
            functools.partial(self._commit, message=message), savepoint=False
        )
        if isinstance(outcome, _IdRace):
            return await self._after_race(signed, message, now)
        if isinstance(outcome, ProtocolError):
            _log.info("message_refused", code=outcome.code, where=outcome.where, kid=message.kid, case=message.case, route=_route(message))
            raise outcome
        _log.info("message_accepted", message_id=message.id, case=message.case, route=_route(message))
        return outcome

    async def _check(self, signed: SignedMessage, trust: TrustList, now: datetime) -> Message:
        payload = read_payload(signed)
        message_id = _id_of(payload)
        known = await store.digest_by_id(self._pool, message_id) if message_id is not None else None
        return self._check_payload(signed, payload, known, trust, now)

    def _check_payload(self, signed: SignedMessage, payload: Any, known: str | None, trust: TrustList, now: datetime) -> Message:
        """The checks after the payload was read; `known` is the digest already accepted under its id, if any."""
        if known is not None and known != signed.jws.digest:
            raise ProtocolError("id-conflict", where="/id")
        if isinstance(payload, dict) and isinstance(payload.get("created"), str):
            check_freshness(payload["created"], payload.get("type"), now, self._freshness_seconds)
        message = check_envelope(signed, payload, trust, self._schemas)
        self._policy.check(message)
        today = now.date()
        if message.sender in self._adapters:
            self._adapters[message.sender].check_sent(message, today)
        if message.receiver in self._adapters:
            self._adapters[message.receiver].check_received(message, today)
        return message

    async def accept_many(
        self,
        bodies: Sequence[bytes],
        *,
        sent_by: str | None = None,
        take: Callable[[str], None] | None = None,
    ) -> list[Acceptance | ProtocolError]:
        """Judge each of `bodies` as `accept` judges one, in their order, sharing the database round trips
        (docs/protocol.md §12.9); one result per body, every acceptance durable before this returns.

        `take(signer)` spends one request of the signer's budget once its signature holds (PROTO-12.9-5).
        A database failure while looking up the bodies raises (nothing was judged); one during a commit
        answers the lines of that batch `unavailable`.
        """
        now = self._clock()
        trust = self._trust()
        results: list[Acceptance | ProtocolError | None] = [None] * len(bodies)
        signed_lines: list[tuple[int, SignedMessage]] = []
        refusals: dict[int, tuple[SignedMessage, ProtocolError]] = {}
        for line, body in enumerate(bodies):
            try:
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
            if sent_by is not None and signed.key.owner != sent_by:
                refusals[line] = (signed, ProtocolError("client-certificate-mismatch", where="kid"))
                continue
            signed_lines.append((line, signed))
        stored = await store.receipts_by_digests(self._pool, {signed.jws.digest for _, signed in signed_lines})
        payloads: dict[int, Any] = {}
        for line, signed in signed_lines:
            if signed.jws.digest in stored:
                message_id, hub_receipt, _ = stored[signed.jws.digest]
                _log.info("message_resent", message_id=message_id, kid=signed.jws.kid)
                results[line] = Acceptance(message_id, hub_receipt, replayed=True)
                continue
            try:
                payloads[line] = read_payload(signed)
            except ProtocolError as refusal:
                refusals[line] = (signed, refusal)
        ids = {_id_of(payload) for payload in payloads.values()} - {None}
        known = await store.digests_by_ids(self._pool, ids) if ids else {}
        pending: dict[int, tuple[SignedMessage, Message | None, asyncio.Future[Any]]] = {}
        for line, signed in signed_lines:
            if results[line] is not None:
                continue
            refusal = refusals.get(line)
            message = None
            if refusal is None:
                payload = payloads[line]
                try:
                    message = self._check_payload(signed, payload, known.get(_id_of(payload) or ""), trust, now)
                except ProtocolError as error:
                    refusal = error
            if refusal is not None:
                refusals[line] = (signed, refusal)
                _log.info("message_refused", code=refusal.code, where=refusal.where, kid=signed.jws.kid)
                entry = _refused_entry(signed.jws.digest, signed.jws.kid, signed.key.owner, refusal, now)
                pending[line] = (signed, None, self._committer.submit(lambda connection, appender, entry=entry: appender.add(entry)))
            else:
                assert message is not None
                work = functools.partial(self._commit, message=message)
                pending[line] = (signed, message, self._committer.submit(work, savepoint=False))
        await asyncio.gather(*(future for _, _, future in pending.values()), return_exceptions=True)
        for line, (signed, message, future) in pending.items():
            results[line] = await self._settle(signed, message, future, refusals.get(line), now)
        assert all(result is not None for result in results), "every line has its result"
        return results  # type: ignore[return-value]

    async def _settle(
        self, signed: SignedMessage, message: Message | None, future: asyncio.Future[Any], refusal: tuple[SignedMessage, ProtocolError] | None,
        now: datetime,
    ) -> Acceptance | ProtocolError:
        """The result of one committed bulk line: its acceptance or refusal, or `unavailable` when its batch did not commit."""
        error = future.exception()
        if error is not None:
            if isinstance(error, CommitFailed):
                return ProtocolError("unavailable", retry_after_seconds=1)
            raise error
        if message is None:
            assert refusal is not None
            return refusal[1]
        outcome = future.result()
        try:
            if isinstance(outcome, _IdRace):
                return await self._after_race(signed, message, now)
        except ProtocolError as race_refusal:
            return race_refusal
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
        payload = strict_json.loads(base64url.decode(compact.split(b".")[1]))
        sender = self._adapters.get(payload.get("from"))
        return adapter.local_view(payload, sender.schemes if sender is not None else None)

    async def _commit(self, connection: asyncpg.Connection, appender: LedgerAppender, *, message: Message) -> Any:
        accepted_at = self._clock()
        mark = appender.next_index
        try:
            async with connection.transaction():
                # Checked again under the batch's ledger lock: another process may have
                # accepted this id since the lookup before the queue, and a revocation
                # committed after this request's signature check must still refuse it.
                known = await store.recheck_in_batch(connection, message.id, message.kid, accepted_at)
                if known == message.digest:
                    return _IdRace()
                if known is not None:
                    raise ProtocolError("id-conflict", where="/id")
                await self._expire_if_due(connection, appender, message, accepted_at)
                await cases.apply(connection, message, accepted_at)
                superseded = await outbox.supersede_case(connection, message.case) if message.type in _ENDINGS else None
                index = appender.next_index
                receipt = sign_hub_receipt(
                    HubReceipt(message_id=message.id, message_digest=message.digest, ledger_index=index, accepted_at=accepted_at),
                    self._receipt_key,
                )
                await store.insert_message(
                    connection, message, accepted_at, index, receipt, self.payload_keys.seal(message.id, message.compact),
                    self._policy.retention_days(message),
                )
                await appender.add(_accepted_entry(message, accepted_at))
                if superseded is not None:
                    await appender.add(_ending_entry(message, superseded, accepted_at))
                if message.type == "receipt":
                    attempts = await outbox.complete_with_receipt(connection, message.reply_to, message.compact)
                    await appender.add(_receipt_entry(message, attempts, accepted_at))
            return Acceptance(message.id, receipt, replayed=False)
        except ProtocolError as refusal:
            appender.rewind(mark)
            # The case's deadline passed whether or not this message is refused (PROTO-7.5-3).
            if message.type in _DEADLINE_TYPES:
                async with connection.transaction():
                    await self._expire_if_due(connection, appender, message, accepted_at)
            await appender.add(_refused_entry(message.digest, message.kid, message.sender, refusal, accepted_at))
            return refusal
        except asyncpg.UniqueViolationError:
            appender.rewind(mark)
            return _IdRace()

    async def _expire_if_due(self, connection: asyncpg.Connection, appender: LedgerAppender, message: Message, now: datetime) -> None:
        """Persist and ledger a passed verification deadline before judging a message of its case (PROTO-7.5-3)."""
        if message.type not in _DEADLINE_TYPES:
            return
        respond_by = await outbox.expire_case_if_due(connection, message.case, now)
        if respond_by is not None:
            await appender.add(deadline_entry(message.case, respond_by, now))

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
