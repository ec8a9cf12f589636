"""A message of protocol v1: sign it, or verify it from its exact bytes (docs/protocol.md §3-§6).

`verify_message` is the protocol part of the hub's pipeline, in its order: size ->
JWS parse with strict header -> key lookup by `kid` (use, status, validity) ->
signature -> strict payload JSON -> version and schema (and unique member refs) ->
`from` equals the key's owner -> `to` registered and not the sender. Each step
refuses with its own catalogue code; nothing after a failed step runs. The three
functions `check_signature`, `read_payload` and `check_envelope` are the seams where
the hub inserts its own steps (§8.4): the digest lookup after the signature, the id
lookup and freshness after the payload JSON, route policy after the envelope.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Mapping

from gateway.protocol import jws, strict_json
from gateway.protocol.errors import ProtocolError
from gateway.protocol.keys import PrivateKey
from gateway.protocol.schema import MessageSchemas
from gateway.protocol.timestamps import parse_timestamp
from gateway.protocol.trust import KeyRecord, TrustList

MESSAGE_TYP: jws.Typ = "gba-case+jws"


@dataclass(frozen=True, slots=True)
class Message:
    """A verified message: the exact bytes, their digest, the signer and the typed envelope."""

    compact: bytes
    digest: str
    kid: str
    id: str
    type: str
    sender: str
    receiver: str
    case: str
    reply_to: str | None
    created: datetime
    purpose: str
    legal_basis: Mapping[str, Any]
    body: Mapping[str, Any]
    payload: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class SignedMessage:
    """A message parsed and signature-checked, payload not yet read (the hub's digest-lookup point)."""

    jws: jws.CompactJWS
    key: KeyRecord
    payload: bytes


def check_signature(compact: bytes | str, trust: TrustList, at: datetime) -> SignedMessage:
    """Steps up to the signature: size, JWS, key lookup at time `at`, signature (§3, §10.4)."""
    parsed = jws.parse_compact(compact, MESSAGE_TYP)
    record = trust.key_for(parsed.kid, parsed.typ, at)
    payload = jws.verify_signature(parsed, record.public)
    return SignedMessage(parsed, record, payload)


def read_payload(signed: SignedMessage) -> dict[str, Any]:
    """§3.5 step 8: the payload under the strict JSON rules (§4); any JSON value."""
    return strict_json.loads(signed.payload)


def check_envelope(signed: SignedMessage, payload: Any, trust: TrustList, schemas: MessageSchemas) -> Message:
    """§5.1: version, type and schema, unique member refs, then sender and receiver."""
    schemas.validate(payload)
    _check_member_refs(payload)
    if payload["type"] == "receipt" and payload["reply_to"] != payload["body"]["message_id"]:
        raise ProtocolError("schema-violation", "A receipt replies to the message it names", where="/body/message_id")
    if payload["from"] != signed.key.owner:
        raise ProtocolError("sender-mismatch", where="/from")
    if payload["to"] not in trust.jurisdictions:
        raise ProtocolError("jurisdiction-unknown", where="/to")
    if payload["to"] == payload["from"]:
        raise ProtocolError("self-addressed", where="/to")
    return Message(
        compact=signed.jws.raw,
        digest=signed.jws.digest,
        kid=signed.jws.kid,
        id=payload["id"],
        type=payload["type"],
        sender=payload["from"],
        receiver=payload["to"],
        case=payload["case"],
        reply_to=payload["reply_to"],
        created=parse_timestamp(payload["created"]),
        purpose=payload["purpose"],
        legal_basis=payload["legal_basis"],
        body=payload["body"],
        payload=payload,
    )


_MEMBER_LISTS = {
    "referral.submit": ("household", "members"),
    "referral.update": ("household", "members"),
    "verification.request": ("members",),
}
"""Where each type lists persons by `ref` (PROTO-6.1-4, PROTO-6.8-1)."""


def _check_member_refs(payload: Mapping[str, Any]) -> None:
    """Refuse a repeated member `ref`, which JSON Schema cannot express."""
    path = _MEMBER_LISTS.get(payload["type"])
    members: Any = payload["body"]
    for name in path or ():
        members = members.get(name) if isinstance(members, dict) else None
    if path is None or members is None:
        return
    refs = [member["ref"] for member in members]
    if len(set(refs)) != len(refs):
        raise ProtocolError("schema-violation", "Member refs must be unique", where="/body/" + "/".join(path))


def verify_message(compact: bytes | str, trust: TrustList, schemas: MessageSchemas, at: datetime) -> Message:
    """Verify a message completely, checking key validity at time `at`; raise ProtocolError on refusal."""
    signed = check_signature(compact, trust, at)
    return check_envelope(signed, read_payload(signed), trust, schemas)


def sign_message(payload: Mapping[str, Any], key: PrivateKey) -> bytes:
    """The compact JWS (`gba-case+jws`) of `payload`, signed by `key`. No checks: the verifier checks."""
    return jws.sign_compact(strict_json.dumps(dict(payload)), key, MESSAGE_TYP)
