"""Deliveries as a hub would make them, for the simulator's tests: signed messages and attestations."""

from __future__ import annotations

import itertools
import json
from typing import Any

from gateway.contract import contract_dir
from gateway.protocol import jws
from gateway.protocol.ids import new_uuid7
from gateway.protocol.keys import PrivateKey, generate
from gateway.protocol.message import sign_message
from gateway.protocol.statements import Attestation, Delivery, LocalView, sign_attestation
from gateway.protocol.timestamps import format_timestamp, utc_now
from gateway.protocol.trust import TrustList

_ledger = itertools.count(1000)


def example_payload(message_type: str, sender: str, receiver: str, case: str | None = None, reply_to: str | None = None) -> dict[str, Any]:
    """The shipped example of `message_type`, fresh: new id, the case given (or new), created now."""
    document = json.loads((contract_dir("schemas") / f"{message_type}.json").read_text("utf-8"))
    payload = document["examples"][0]
    payload.update(
        id=new_uuid7(), case=case or new_uuid7(), created=format_timestamp(utc_now()), reply_to=reply_to, **{"from": sender, "to": receiver}
    )
    if message_type == "verification.request":
        payload["body"]["respond_by"] = format_timestamp(utc_now().replace(year=utc_now().year + 1, microsecond=0))
    return payload


def attested(compact: bytes, payload: dict[str, Any], hub_key: PrivateKey, local_view: LocalView = LocalView()) -> Delivery:
    """A delivery of `compact` whose attestation names `payload`'s envelope, as the hub signs it."""
    attestation = Attestation(
        message_id=payload["id"],
        message_digest=jws.digest(compact),
        ledger_index=next(_ledger),
        accepted_at=utc_now(),
        type=payload["type"],
        sender=payload["from"],
        receiver=payload["to"],
        case=payload["case"],
        local_view_digest=local_view.digest,
    )
    return Delivery(compact, sign_attestation(attestation, hub_key), local_view)


def delivery_of(payload: dict[str, Any], sender_key: PrivateKey, hub_key: PrivateKey) -> bytes:
    """The JSON text of a delivery of `payload`, signed by `sender_key` and attested by `hub_key`."""
    return attested(sign_message(payload, sender_key), payload, hub_key).to_json()


def with_new_key(trust: TrustList, owner: str, kid: str) -> tuple[TrustList, PrivateKey]:
    """(`trust` with one more message key of `owner`, a newer sequence; that key's private half)."""
    key = generate("Ed25519", kid)
    entry = {"kid": kid, "owner": owner, "use": "message", "alg": "Ed25519", "jwk": key.public().to_jwk(),
             "not_before": format_timestamp(utc_now().replace(year=utc_now().year - 1)),
             "not_after": format_timestamp(utc_now().replace(year=utc_now().year + 1)), "status": "active", "test_key": True}
    document = trust.to_document()
    return TrustList.from_document(dict(document, sequence=trust.sequence + 1, keys=[*document["keys"], entry])), key
