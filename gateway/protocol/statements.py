"""Hub statements and the delivery object (docs/protocol.md §9.1-§9.3).

The hub signs two statements about every message it accepts, both with a hub key of
use `receipt` (PROTO-10.2-1):

- the hub receipt (`gba-receipt+jws`, §9.1), its answer to the sender;
- the attestation (`gba-attestation+jws`, §9.2), which travels to the receiver beside
  the message and binds it to the local view delivered with it.

A delivery (§9.3) is the JSON object that carries one message to its receiver: the
message's exact bytes, its attestation and the receiver's local view of its free text.

A statement is judged at its own `accepted_at` (§10.4), which is inside the signed
payload. Verification therefore looks the key up and checks its owner and use before
the signature (§3.5 step 5), and checks its validity at `accepted_at` once the payload
has passed PROTO-9.1-3 (PROTO-9.1-4). Numbers compare by value, as in the schemas
(§4.4): `"v": 1.0` is version 1.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Mapping, TypeVar


from gateway.protocol import jcs, jws, strict_json
from gateway.protocol.cases import MESSAGE_TYPES
from gateway.protocol.errors import ProtocolError
from gateway.protocol.ids import UUID7
from gateway.protocol.keys import PrivateKey
from gateway.protocol.message import Message, verify_message
from gateway.protocol.schema import MessageSchemas
from gateway.protocol.timestamps import format_timestamp, parse_timestamp
from gateway.protocol.trust import KeyRecord, TrustList

RECEIPT_TYP: jws.Typ = "gba-receipt+jws"
ATTESTATION_TYP: jws.Typ = "gba-attestation+jws"

_RECEIPT_MEMBERS = frozenset({"v", "message_id", "message_digest", "ledger_index", "accepted_at"})
_ATTESTATION_MEMBERS = _RECEIPT_MEMBERS | {"type", "from", "to", "case", "local_view_digest"}
_DELIVERY_MEMBERS = frozenset({"message", "attestation", "local_view"})
_TEXT_MEMBERS = frozenset({"at", "text", "lang", "machine_converted"})

_DIGEST = re.compile(r"[0-9a-f]{64}")
_JURISDICTION = re.compile(r"[A-Z]{2}(-[A-Z0-9]{1,3})?")
_LANGUAGE_TAG = re.compile(r"[a-z]{2,3}(-[A-Z][a-z]{3})?(-([A-Z]{2}|[0-9]{3}))?")
_JSON_POINTER = re.compile(r"(/([^~/]|~[01])*)+", re.DOTALL)
_YEARS = range(1900, 2200)  # PROTO-5.3-3

_Statement = TypeVar("_Statement", "HubReceipt", "Attestation")


@dataclass(frozen=True, slots=True, kw_only=True)
class HubReceipt:
    """The payload of a hub receipt (§9.1); `v` is always 1 and is not a field."""

    message_id: str
    message_digest: str
    ledger_index: int
    accepted_at: datetime

    def to_payload(self) -> dict[str, Any]:
        return {
            "v": 1,
            "message_id": self.message_id,
            "message_digest": self.message_digest,
            "ledger_index": self.ledger_index,
            "accepted_at": _format(self.accepted_at),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Attestation:
    """The payload of an attestation (§9.2). `sender` and `receiver` are the members `from` and `to`."""

    message_id: str
    message_digest: str
    ledger_index: int
    accepted_at: datetime
    type: str
    sender: str
    receiver: str
    case: str
    local_view_digest: str

    def to_payload(self) -> dict[str, Any]:
        return {
            "v": 1,
            "message_id": self.message_id,
            "message_digest": self.message_digest,
            "ledger_index": self.ledger_index,
            "accepted_at": _format(self.accepted_at),
            "type": self.type,
            "from": self.sender,
            "to": self.receiver,
            "case": self.case,
            "local_view_digest": self.local_view_digest,
        }


def sign_hub_receipt(receipt: HubReceipt, hub_key: PrivateKey) -> bytes:
    """The compact `gba-receipt+jws` of `receipt`, signed by `hub_key` (§9.1).

    Requires a receipt that a verifier would accept (ValueError otherwise): the hub
    never signs what it would refuse. Whether `hub_key` is a hub `receipt` key is the
    caller's configuration; verifiers refuse any other key.
    """
    return _sign(receipt.to_payload(), _receipt_from_payload, hub_key, RECEIPT_TYP)


def verify_hub_receipt(compact: bytes | str, trust: TrustList) -> HubReceipt:
    """The receipt in `compact`, signed by a hub `receipt` key valid at its `accepted_at` (PROTO-9.1-2..4).

    Whether it names the message the caller sent is the caller's check (PROTO-9.1-2).
    """
    return _verify(compact, trust, RECEIPT_TYP, _receipt_from_payload)


def sign_attestation(attestation: Attestation, hub_key: PrivateKey) -> bytes:
    """The compact `gba-attestation+jws` of `attestation`, signed by `hub_key` (§9.2); as `sign_hub_receipt`."""
    return _sign(attestation.to_payload(), _attestation_from_payload, hub_key, ATTESTATION_TYP)


def verify_attestation(compact: bytes | str, trust: TrustList) -> Attestation:
    """The attestation in `compact`, signed by a hub `receipt` key valid at its `accepted_at` (PROTO-9.2-2, -9.1-4).

    Whether it matches the delivered message and local view is `verify_delivery`'s check.
    """
    return _verify(compact, trust, ATTESTATION_TYP, _attestation_from_payload)


@dataclass(frozen=True, slots=True)
class ConvertedText:
    """One free text of the message, converted for the receiver (§9.3); always machine-converted."""

    at: str
    """JSON Pointer to the free-text object (`{"text", "lang"}`) in the message payload."""
    text: str
    lang: str

    def to_document(self) -> dict[str, Any]:
        return {"at": self.at, "text": self.text, "lang": self.lang, "machine_converted": True}


@dataclass(frozen=True, slots=True)
class SchemeName:
    """A scheme named in the receiver's language (§9.3): for an award's scheme, or for a needed category."""

    at: str
    """JSON Pointer to the scheme code (an award's `scheme`) or the category (an item of `needs`) in the payload."""
    code: str
    name: str
    lang: str

    def to_document(self) -> dict[str, Any]:
        return {"at": self.at, "code": self.code, "name": self.name, "lang": self.lang}


@dataclass(frozen=True, slots=True)
class LocalTime:
    """A timestamp of the message in the receiver's time zone (§9.3)."""

    at: str
    """JSON Pointer to the timestamp (`created`, `respond_by`, ...) in the message payload."""
    local: str
    """The same instant as an RFC 3339 date-time with the zone's offset."""
    zone: str
    """The IANA time zone."""

    def to_document(self) -> dict[str, Any]:
        return {"at": self.at, "local": self.local, "zone": self.zone}


@dataclass(frozen=True, slots=True)
class LocalView:
    """The receiver's local view of a message (§9.3): a convenience, never the record (PROTO-9.3-2)."""

    texts: tuple[ConvertedText, ...] = ()
    schemes: tuple[SchemeName, ...] = ()
    times: tuple[LocalTime, ...] = ()

    def to_document(self) -> dict[str, Any]:
        return {
            "texts": [text.to_document() for text in self.texts],
            "schemes": [item.to_document() for item in self.schemes],
            "times": [item.to_document() for item in self.times],
        }

    @property
    def digest(self) -> str:
        """SHA-256 of the RFC 8785 serialisation, as the attestation's `local_view_digest` names it (§9.2)."""
        return hashlib.sha256(jcs.dumps(self.to_document())).hexdigest()


@dataclass(frozen=True, slots=True)
class Delivery:
    """A delivery (§9.3): the message's exact bytes, its attestation, the receiver's local view."""

    message: bytes
    attestation: bytes
    local_view: LocalView

    def to_document(self) -> dict[str, Any]:
        """The delivery as a JSON value: an item of an inbox answer (§12.6)."""
        return {
            "message": self.message.decode("ascii"),
            "attestation": self.attestation.decode("ascii"),
            "local_view": self.local_view.to_document(),
        }

    def to_json(self) -> bytes:
        """The delivery as the JSON text the hub pushes (§12.5)."""
        return strict_json.dumps(self.to_document())


def parse_delivery(data: bytes) -> Delivery:
    """Read a delivery strictly: I-JSON (§4) and exactly the members of PROTO-9.3-1.

    Refuses with the `json-*` code of §4 (where `delivery`) or `schema-violation`
    (where: a JSON Pointer into the delivery; for a missing or extra member, the
    object that holds it). The two JWS are not looked at: `verify_delivery` does that.
    """
    return delivery_from_document(strict_json.loads(data, part="delivery"))


def delivery_from_document(document: Any) -> Delivery:
    """A delivery already read as strict JSON, such as one item of an inbox answer read whole by
    `strict_json.loads` (§12.6): exactly the members of PROTO-9.3-1, refused as `parse_delivery` refuses them.
    A receiver that pulls reads the answer once, not each delivery again from text it wrote itself."""
    _require_members(document, _DELIVERY_MEMBERS, "")
    message = _delivery_string(document, "message")
    attestation = _delivery_string(document, "attestation")
    view = document["local_view"]
    _require_members(view, frozenset({"texts", "schemes", "times"}), "/local_view")
    for member in ("texts", "schemes", "times"):
        if not isinstance(view[member], list):
            raise ProtocolError("schema-violation", f"{member} is an array", where=f"/local_view/{member}")
    texts = tuple(_converted_text(item, f"/local_view/texts/{index}") for index, item in enumerate(view["texts"]))
    schemes = tuple(_scheme_name(item, f"/local_view/schemes/{index}") for index, item in enumerate(view["schemes"]))
    times = tuple(_local_time(item, f"/local_view/times/{index}") for index, item in enumerate(view["times"]))
    return Delivery(message, attestation, LocalView(texts, schemes, times))


@dataclass(frozen=True, slots=True)
class VerifiedDelivery:
    """A delivery whose message, attestation and local view have all been verified."""

    message: Message
    attestation: Attestation
    local_view: LocalView


def verify_delivery(delivery: Delivery, trust: TrustList, schemas: MessageSchemas) -> VerifiedDelivery:
    """A receiver's check of one delivery (PROTO-2.2-2, PROTO-9.2-2), in the order of §9.2.

    The attestation first; then that it names these message bytes; then the message
    itself, end to end, judged at the attestation's `accepted_at` (§10.4); then that
    the attestation's `message_id`, `type`, `from`, `to` and `case` are the message's;
    last, that it names this local view. A value that does not match is refused with
    `attestation-mismatch`, where naming the attestation's member.
    """
    attestation = verify_attestation(delivery.attestation, trust)
    _require_match(attestation.message_digest, jws.digest(delivery.message), "message_digest")
    message = verify_message(delivery.message, trust, schemas, attestation.accepted_at)
    _require_match(attestation.message_id, message.id, "message_id")
    _require_match(attestation.type, message.type, "type")
    _require_match(attestation.sender, message.sender, "from")
    _require_match(attestation.receiver, message.receiver, "to")
    _require_match(attestation.case, message.case, "case")
    _require_match(attestation.local_view_digest, delivery.local_view.digest, "local_view_digest")
    return VerifiedDelivery(message, attestation, delivery.local_view)


def _sign(payload: dict[str, Any], read: Callable[[Any], object], key: PrivateKey, typ: jws.Typ) -> bytes:
    try:
        read(payload)
    except ProtocolError as refusal:
        raise ValueError(f"refusing to sign a statement that verifiers refuse: {refusal}") from None
    return jws.sign_compact(strict_json.dumps(payload), key, typ)


def _verify(compact: bytes | str, trust: TrustList, typ: jws.Typ, read: Callable[[Any], _Statement]) -> _Statement:
    parsed = jws.parse_compact(compact, typ)
    record = _hub_key(trust, parsed)
    statement = read(strict_json.loads(jws.verify_signature(parsed, record.public)))
    record.check_valid_at(statement.accepted_at)
    return statement


def _hub_key(trust: TrustList, parsed: jws.CompactJWS) -> KeyRecord:
    """The hub key named by `kid` if it may sign `typ` (PROTO-10.4-1, PROTO-10.2-1); not yet its validity."""
    return trust.key_for_typ(parsed.kid, parsed.typ)


def _receipt_from_payload(payload: Any) -> HubReceipt:
    _require_statement(payload, _RECEIPT_MEMBERS)
    return HubReceipt(
        message_id=_matching(payload, "message_id", UUID7),
        message_digest=_matching(payload, "message_digest", _DIGEST),
        ledger_index=_ledger_index(payload),
        accepted_at=_timestamp(payload, "accepted_at"),
    )


def _attestation_from_payload(payload: Any) -> Attestation:
    _require_statement(payload, _ATTESTATION_MEMBERS)
    return Attestation(
        message_id=_matching(payload, "message_id", UUID7),
        message_digest=_matching(payload, "message_digest", _DIGEST),
        ledger_index=_ledger_index(payload),
        accepted_at=_timestamp(payload, "accepted_at"),
        type=_message_type(payload),
        sender=_matching(payload, "from", _JURISDICTION),
        receiver=_matching(payload, "to", _JURISDICTION),
        case=_matching(payload, "case", UUID7),
        local_view_digest=_matching(payload, "local_view_digest", _DIGEST),
    )


def _require_statement(payload: Any, members: frozenset[str]) -> None:
    """An object whose `v` is 1 and whose members are exactly `members` (PROTO-9.1-3)."""
    if not isinstance(payload, dict):
        raise ProtocolError("schema-violation", "A statement's payload is a JSON object", where="")
    if "v" in payload and not (_is_integer(payload["v"]) and payload["v"] == 1):
        raise ProtocolError("version-unsupported", "Only protocol version 1 is supported", where="/v")
    _require_members(payload, members, "")


def _require_members(value: Any, members: frozenset[str], where: str) -> None:
    if not isinstance(value, dict):
        raise ProtocolError("schema-violation", "A JSON object is required here", where=where)
    if value.keys() != members:
        raise ProtocolError("schema-violation", "The object does not have exactly the members §9 defines", where=where)


def _matching(payload: Mapping[str, Any], member: str, pattern: re.Pattern[str]) -> str:
    value = payload[member]
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise ProtocolError("schema-violation", f"{member} is not of the form §9 defines", where=f"/{member}")
    return value


def _ledger_index(payload: Mapping[str, Any]) -> int:
    value = payload["ledger_index"]
    if not _is_integer(value) or value < 0:
        raise ProtocolError("schema-violation", "ledger_index is an integer of at least 0", where="/ledger_index")
    return int(value)


def _message_type(payload: Mapping[str, Any]) -> str:
    value = payload["type"]
    if value not in MESSAGE_TYPES:
        raise ProtocolError("schema-violation", "type is a registered message type", where="/type")
    return value


def _timestamp(payload: Mapping[str, Any], member: str) -> datetime:
    value = payload[member]
    try:
        moment = parse_timestamp(value) if isinstance(value, str) else None
    except ValueError:
        moment = None
    if moment is None or moment.year not in _YEARS:
        raise ProtocolError("schema-violation", f"{member} is a timestamp of the form of §5.3", where=f"/{member}")
    return moment


def _is_integer(value: Any) -> bool:
    """An integral JSON number: `1` or `1.0`, never `true` (§4.4)."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


def _format(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("a statement's time must be timezone-aware (UTC on the wire)")
    return format_timestamp(moment)


def _delivery_string(document: Mapping[str, Any], member: str) -> bytes:
    value = document[member]
    if not isinstance(value, str):
        raise ProtocolError("schema-violation", f"{member} is a compact JWS as a JSON string", where=f"/{member}")
    return value.encode("utf-8")


def _converted_text(item: Any, where: str) -> ConvertedText:
    _require_members(item, _TEXT_MEMBERS, where)
    if not isinstance(item["at"], str) or not _JSON_POINTER.fullmatch(item["at"]):
        raise ProtocolError("schema-violation", "at is a JSON Pointer into the message payload", where=f"{where}/at")
    if not isinstance(item["text"], str) or not item["text"]:
        raise ProtocolError("schema-violation", "text is a non-empty string", where=f"{where}/text")
    if not isinstance(item["lang"], str) or not _LANGUAGE_TAG.fullmatch(item["lang"]):
        raise ProtocolError("schema-violation", "lang is a language tag", where=f"{where}/lang")
    if item["machine_converted"] is not True:
        raise ProtocolError("schema-violation", "machine_converted is true", where=f"{where}/machine_converted")
    return ConvertedText(item["at"], item["text"], item["lang"])


_SCHEME_NAME_MEMBERS = frozenset({"at", "code", "name", "lang"})
_SCHEME_CODE = re.compile(r"[A-Z][A-Z0-9]*(_[A-Z0-9]+)*")


def _scheme_name(item: Any, where: str) -> SchemeName:
    _require_members(item, _SCHEME_NAME_MEMBERS, where)
    if not isinstance(item["at"], str) or not _JSON_POINTER.fullmatch(item["at"]):
        raise ProtocolError("schema-violation", "at is a JSON Pointer into the message payload", where=f"{where}/at")
    if not isinstance(item["code"], str) or not _SCHEME_CODE.fullmatch(item["code"]):
        raise ProtocolError("schema-violation", "code is a scheme code", where=f"{where}/code")
    if not isinstance(item["name"], str) or not item["name"]:
        raise ProtocolError("schema-violation", "name is a non-empty string", where=f"{where}/name")
    if not isinstance(item["lang"], str) or not _LANGUAGE_TAG.fullmatch(item["lang"]):
        raise ProtocolError("schema-violation", "lang is a language tag", where=f"{where}/lang")
    return SchemeName(item["at"], item["code"], item["name"], item["lang"])


_LOCAL_TIME_MEMBERS = frozenset({"at", "local", "zone"})
_OFFSET_DATE_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?[+-][0-9]{2}:[0-9]{2}")
_ZONE = re.compile(r"[A-Za-z_]+(/[A-Za-z0-9_+-]+)*")


def _local_time(item: Any, where: str) -> LocalTime:
    _require_members(item, _LOCAL_TIME_MEMBERS, where)
    if not isinstance(item["at"], str) or not _JSON_POINTER.fullmatch(item["at"]):
        raise ProtocolError("schema-violation", "at is a JSON Pointer into the message payload", where=f"{where}/at")
    if not isinstance(item["local"], str) or not _OFFSET_DATE_TIME.fullmatch(item["local"]):
        raise ProtocolError("schema-violation", "local is a date-time with an offset", where=f"{where}/local")
    if not isinstance(item["zone"], str) or not _ZONE.fullmatch(item["zone"]):
        raise ProtocolError("schema-violation", "zone is an IANA time zone name", where=f"{where}/zone")
    return LocalTime(item["at"], item["local"], item["zone"])


def _require_match(attested: str, delivered: str, member: str) -> None:
    if attested != delivered:
        raise ProtocolError("attestation-mismatch", f"The attestation's {member} does not match the delivery", where=f"/{member}")
