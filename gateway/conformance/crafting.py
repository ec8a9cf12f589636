"""The suite's own message crafting (docs/conformance.md): JWS built from first principles, not by the hub's code.

A conformance suite that signed and checked with the implementation under test would pass
that implementation's bugs. So this module writes compact JWS itself — base64url with the
standard library, signatures with `cryptography` — and knows how to break them in each
way a case asks for (`mutate`). Verdicts compare HTTP answers with the case's expectation;
nothing here validates anything.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class SigningKey:
    """A private JWK as the suite reads it: kid, alg, and the raw key."""

    kid: str
    alg: str
    key: Any
    public_x: bytes

    @classmethod
    def load(cls, path: Path) -> SigningKey:
        jwk = json.loads(Path(path).read_text("utf-8"))
        if jwk.get("kty") == "OKP":
            key = Ed25519PrivateKey.from_private_bytes(b64url_decode(jwk["d"]))
            return cls(jwk["kid"], "Ed25519", key, b64url_decode(jwk["x"]))
        key = ec.derive_private_key(int.from_bytes(b64url_decode(jwk["d"]), "big"), ec.SECP256R1())
        return cls(jwk["kid"], "ES256", key, b64url_decode(jwk["x"]))

    def sign(self, data: bytes) -> bytes:
        if self.alg == "Ed25519":
            return self.key.sign(data)
        r, s = decode_dss_signature(self.key.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def compact(header: dict[str, Any], payload: bytes, sign: Callable[[bytes], bytes]) -> bytes:
    """A compact JWS of `header` and the exact `payload` bytes, signed by `sign(signing input)`."""
    signing_input = f"{b64url(json.dumps(header, separators=(',', ':')).encode())}.{b64url(payload)}".encode("ascii")
    return signing_input + b"." + b64url(sign(signing_input)).encode("ascii")


def new_uuid7() -> str:
    """A lowercase UUIDv7 (RFC 9562 §5.7), written here rather than imported from the implementation."""
    import os
    import time

    millis = int(time.time() * 1000)
    raw = bytearray(millis.to_bytes(6, "big") + os.urandom(10))
    raw[6] = (raw[6] & 0x0F) | 0x70
    raw[8] = (raw[8] & 0x3F) | 0x80
    return str(uuid.UUID(bytes=bytes(raw)))


def timestamp(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass
class Crafted:
    """What a case sends: one body, or two in order (a resend, a conflict); the first is set up, the last judged."""

    bodies: list[bytes]


def payload_for(template: dict[str, Any], sender: str, receiver: str, now: datetime, **changes: Any) -> dict[str, Any]:
    payload = copy.deepcopy(template)
    payload.update(id=new_uuid7(), case=new_uuid7(), created=timestamp(now), reply_to=None)
    payload["from"], payload["to"] = sender, receiver
    payload.update(changes)
    return payload


def _dump(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def craft(mutation: str, template: dict[str, Any], key: SigningKey, others: dict[str, SigningKey], sender: str,
          receiver: str, now: datetime, splice: str | None = None) -> Crafted:
    """The request bodies for `mutation` of a message from `sender` to `receiver` (see conformance/cases/)."""
    header = {"alg": key.alg, "kid": key.kid, "typ": "gba-case+jws"}
    payload = payload_for(template, sender, receiver, now)
    signed = lambda p, h=header, k=key: compact(h, _dump(p), k.sign)  # noqa: E731
    if mutation == "none":
        return Crafted([signed(payload)])
    if mutation == "alg-eddsa":
        if key.alg != "Ed25519":
            raise NotApplicable("needs an Ed25519 key")
        return Crafted([signed(payload, dict(header, alg="EdDSA"))])
    if mutation == "flip-signature":
        body = signed(payload)
        head, _, signature = body.rpartition(b".")
        raw = bytearray(b64url_decode(signature.decode()))
        raw[len(raw) // 2] ^= 0x01
        return Crafted([head + b"." + b64url(bytes(raw)).encode()])
    if mutation == "alg-none":
        # A non-empty signature segment, so that the alg is what is refused, not an empty segment.
        return Crafted([compact(dict(header, alg="none"), _dump(payload), key.sign)])
    if mutation == "hmac-public-key":
        secret = key.public_x
        return Crafted([compact(dict(header, alg="HS256"), _dump(payload), lambda data: hmac.new(secret, data, hashlib.sha256).digest())])
    if mutation == "unknown-kid":
        return Crafted([signed(payload, dict(header, kid=f"conformance-unknown-{new_uuid7()[-8:]}"))])
    if mutation in ("revoked-key", "expired-key"):
        other = others[mutation]
        owner_payload = payload_for(template, _owner(other.kid), receiver if receiver != _owner(other.kid) else sender, now)
        return Crafted([compact({"alg": other.alg, "kid": other.kid, "typ": "gba-case+jws"}, _dump(owner_payload), other.sign)])
    if mutation == "header-jwk":
        return Crafted([signed(payload, dict(header, jwk={"kty": "OKP", "crv": "Ed25519", "x": b64url(key.public_x)}))])
    if mutation == "non-canonical-signature":
        body = signed(payload)
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        last = alphabet.index(chr(body[-1]))
        return Crafted([body[:-1] + alphabet[last ^ 0x01].encode()])
    if mutation == "duplicate-member":
        text = _dump(payload)
        duplicated = text[:-1] + b',"purpose":' + json.dumps(payload["purpose"]).encode() + b"}"
        return Crafted([compact(header, duplicated, key.sign)])
    if mutation == "splice":
        # Raw JSON text added as a last member: the JSON fault is the case, before any schema check.
        assert splice is not None, "a splice case names the text it adds"
        return Crafted([compact(header, _dump(payload)[:-1] + splice.encode("utf-8") + b"}", key.sign)])
    if mutation == "typ-receipt":
        return Crafted([signed(payload, dict(header, typ="gba-receipt+jws"))])
    if mutation == "stale":
        return Crafted([signed(dict(payload, created=timestamp(now - timedelta(minutes=10))))])
    if mutation == "future":
        return Crafted([signed(dict(payload, created=timestamp(now + timedelta(minutes=10))))])
    if mutation == "wrong-from":
        return Crafted([signed(dict(payload, **{"from": receiver, "to": sender}))])
    if mutation == "resend":
        body = signed(payload)
        return Crafted([body, body])
    if mutation == "same-id-other-bytes":
        first = signed(payload)
        return Crafted([first, signed(dict(payload, created=timestamp(now + timedelta(seconds=1))))])
    raise ValueError(f"unknown mutation {mutation!r}")


class NotApplicable(Exception):
    """The case does not apply to this configuration (a skip, with this reason)."""


def _owner(kid: str) -> str:
    """The jurisdiction of a published test key's kid (test-hk-message-revoked -> HK)."""
    match = re.fullmatch(r"test-(cn-gd|hk|mo)-message-.*", kid)
    if match is None:
        raise NotApplicable(f"{kid} is not a published test key of a jurisdiction")
    return match.group(1).upper()
