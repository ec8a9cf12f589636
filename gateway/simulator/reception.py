"""How the simulated jurisdiction takes in one delivery, pushed or pulled (docs/protocol.md §9.2-§9.4).

The same path for both: read the delivery strictly, verify the attestation, count
the wire delivery, answer a redelivery with the stored receipt, verify the delivery
end to end, then record the message, its receipt and the application's effects in
one transaction. The answer says what to tell the hub:

- a receipt (`accepted`, or `rejected` with the failed check's code, PROTO-9.4-1);
  a delivery whose message fails but whose attestation verified is rejected in the
  attestation's case, to its sender (PROTO-9.2-2);
- nothing, for a delivered receipt: recorded, never acknowledged by a receipt (PROTO-9.4-2);
- a problem, when not even the attestation verifies (no case or sender to answer);
- "later" (`retry`, with an `unavailable` problem), when a key is unknown while the hub's
  trust list cannot be fetched: nothing is recorded, refused or rejected for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import structlog

from gateway.protocol import jws, strict_json
from gateway.protocol.errors import ProtocolError
from gateway.protocol.schema import MessageSchemas
from gateway.protocol.statements import delivery_from_document, parse_delivery, verify_attestation, verify_delivery
from gateway.simulator.application import Application
from gateway.simulator.state import SimulatorState, StoredDelivery
from gateway.simulator.trust_source import HubTrust, TrustListUnreachable

_log = structlog.get_logger("gateway.simulator")


@dataclass(frozen=True, slots=True)
class Answer:
    """The answer to one delivery: `receipt` (200), neither (204, a receipt recorded), `problem` (400), or
    `problem` with `retry` (503: not taken in now, to be delivered again)."""

    message_id: str | None
    receipt: bytes | None = None
    problem: dict[str, Any] | None = None
    retry: bool = False


class Reception:
    """Takes in deliveries for one jurisdiction."""

    def __init__(self, application: Application, state: SimulatorState, trust: HubTrust, schemas: MessageSchemas) -> None:
        self._application = application
        self._state = state
        self._trust = trust
        self._schemas = schemas

    async def receive(self, data: bytes | Any) -> Answer:
        """Verify, de-duplicate and record one delivery: the bytes of its JSON object (a push), or the item of an inbox
        answer already read strictly (a pull); never raises ProtocolError."""
        try:
            delivery = parse_delivery(data) if isinstance(data, bytes) else delivery_from_document(data)
            attestation = await self._trust.verify(lambda trust: verify_attestation(delivery.attestation, trust))
        except ProtocolError as refusal:
            _log.info("simulator.delivery.refused", code=refusal.code, where=refusal.where)
            return Answer(None, problem=refusal.problem())
        except TrustListUnreachable:
            return _later(None)
        self._state.count_wire_delivery(attestation.message_id)
        stored = self._state.stored_delivery(attestation.message_id)
        if stored is not None:
            return _again(stored)
        try:
            verified = await self._trust.verify(lambda trust: verify_delivery(delivery, trust, self._schemas))
            if verified.message.receiver != self._application.jurisdiction:
                raise ProtocolError("attestation-mismatch", "The delivery is addressed to another jurisdiction", where="/to")
        except TrustListUnreachable:
            return _later(attestation.message_id)
        except ProtocolError as refusal:
            _log.info("simulator.delivery.rejected", message_id=attestation.message_id, type=attestation.type, code=refusal.code)
            if attestation.type == "receipt":
                return Answer(attestation.message_id, problem=refusal.problem())
            receipt = self._application.receipt(
                message_id=attestation.message_id,
                digest=attestation.message_digest,
                sender=attestation.sender,
                case=attestation.case,
                status="rejected",
                code=refusal.code,
            )
            return Answer(attestation.message_id, receipt=receipt.compact)
        stored = self._state.stored_delivery(attestation.message_id)  # a concurrent delivery may have won while we awaited
        if stored is not None:
            return _again(stored)
        message = verified.message
        if message.type == "receipt":
            self._state.record_delivered_receipt(message, attestation.ledger_index)
            _log.info("simulator.receipt.recorded", message_id=message.id, acknowledges=message.reply_to, status=message.body["status"])
            return Answer(message.id)
        decision = self._application.decide(message, self._state.case_record(message.case))
        receipt = self._application.receipt(
            message_id=message.id, digest=message.digest, sender=message.sender, case=message.case, status="accepted"
        )
        self._state.record_delivery(message, attestation.ledger_index, receipt, decision)
        _log.info(
            "simulator.delivery.accepted",
            message_id=message.id,
            type=message.type,
            case=message.case,
            answers=[outgoing.type for outgoing in decision.outgoing],
        )
        return Answer(message.id, receipt=receipt.compact)


def _later(message_id: str | None) -> Answer:
    """A delivery that names a key the held list does not know while the hub's list cannot be fetched."""
    _log.warning("simulator.delivery.deferred", message_id=message_id, reason="trust list unreachable")
    problem = ProtocolError("unavailable", "The receiver cannot fetch the hub's trust list now; deliver again later").problem()
    return Answer(message_id, problem=problem, retry=True)


def claimed(delivery: Any) -> tuple[int | None, str | None]:
    """(ledger index, type) a pulled delivery's attestation names, read without verifying it; None where unreadable.
    For where a pulling receiver's cursor must stop, not for trusting anything."""
    try:
        attestation = delivery["attestation"]
        if not isinstance(attestation, str):
            return None, None
        payload = strict_json.loads(jws.parse_compact(attestation, "gba-attestation+jws").payload)
        index, kind = payload["ledger_index"], payload["type"]
    except (ProtocolError, KeyError, TypeError, ValueError):
        return None, None
    return (index if type(index) is int else None), (kind if isinstance(kind, str) else None)


def _again(stored: StoredDelivery) -> Answer:
    """A redelivery: the stored receipt, byte for byte, and no second hand-over to the application (PROTO-9.4-3)."""
    _log.info("simulator.delivery.repeated", message_id=stored.message_id, type=stored.type)
    return Answer(stored.message_id, receipt=stored.receipt)
