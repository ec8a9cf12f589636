"""Trust lists the suite serves an endpoint as the hub it plays, sound or broken one way (docs/protocol.md §10).

In the endpoint role the suite is the endpoint's hub: with `--serve-hub` it answers
`GET /v1/trust-list` itself (gateway/conformance/served_hub.py). Each list it serves is
the run's trust list (`--trust`) plus a fresh message key of the sender the suite plays,
which only that list introduces; a case then pushes a message signed with that key. An
endpoint that took the list accepts it; one that refused the list, as it must when the
list is broken (§10.1 to §10.3, §10.5), does not know the key (`key-unknown`, PROTO-10.4-1).

The lists are written and signed here from first principles (JSON, base64url, Ed25519 with
`cryptography`), never by the hub's code: a broken list must be broken exactly one way.
"""

from __future__ import annotations

import copy
import itertools
import os
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from gateway.conformance import crafting
from gateway.conformance.crafting import SigningKey

TRUST_LIST_TYP = "gba-trust-list+jws"

SMALL_ORDER_POINT = bytes([1]) + bytes(31)
"""The Ed25519 identity point (order 1) in its canonical RFC 8032 encoding: a "key" every signature may fit (PROTO-10.1-2)."""

FAULTS = {
    "none": "a sound list",
    "private-member": "a key of the list carries its private member d (PROTO-10.1-1)",
    "small-order": "a key of the list is the small-order Ed25519 identity point (PROTO-10.1-2)",
    "jwk-invalid": "a key of the list has an x of 31 bytes (PROTO-10.1-3)",
    "same-key-two-kids": "the new key is listed again under a second kid, as a witness key (PROTO-10.2-2)",
    "jurisdiction-receipt-key": "a jurisdiction key of use receipt (PROTO-10.2-3)",
    "p256-witness-key": "a P-256 witness key (PROTO-10.2-4)",
    "schema": "the list lacks its required member issued (PROTO-10.3-1)",
    "kid-twice": "the new key's kid is listed twice, with two public keys (PROTO-10.3-2)",
    "signed-by-message-key": "the list is signed by the sender's message key, not a hub receipt key (PROTO-10.3-3)",
    "lower-sequence": "the list's sequence is 1, not greater than any list the endpoint holds (PROTO-10.3-4)",
    "test-mode": "a test-mode list served to an endpoint configured for production (PROTO-10.5-2)",
}
"""The ways a served list is broken, each with the requirement it breaks."""


def new_message_key(owner: str) -> SigningKey:
    """A fresh Ed25519 key with a kid no list has used: the key a served list introduces for `owner`."""
    private = Ed25519PrivateKey.generate()
    kid = f"conformance-{owner.lower()}-{os.urandom(5).hex()}"
    return SigningKey(kid, "Ed25519", private, private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))


def _entry(kid: str, owner: str, use: str, alg: str, jwk: dict[str, Any], now: datetime, test_key: bool) -> dict[str, Any]:
    return {"kid": kid, "owner": owner, "use": use, "alg": alg, "jwk": dict(jwk, kid=kid),
            "not_before": crafting.timestamp(now - timedelta(days=1)),
            "not_after": crafting.timestamp(now + timedelta(days=30)),
            "status": "active", "test_key": test_key}


def _ed25519_jwk(public: bytes) -> dict[str, Any]:
    return {"kty": "OKP", "crv": "Ed25519", "x": crafting.b64url(public)}


def _p256_jwk() -> dict[str, Any]:
    numbers = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers()
    return {"kty": "EC", "crv": "P-256", "x": crafting.b64url(numbers.x.to_bytes(32, "big")), "y": crafting.b64url(numbers.y.to_bytes(32, "big"))}


@dataclass
class TrustListPublisher:
    """The lists the suite serves in one run: from the run's own list (`base`), in `mode`, with growing sequences.

    Keys that sound lists introduced stay in every later list, as a hub never removes a key (PROTO-10.3-5)."""

    base: dict[str, Any]
    hub_key: SigningKey
    mode: str = "test"

    def __post_init__(self) -> None:
        # Greater than any sequence a test endpoint holds from an earlier run: the clock, then one more per list.
        self._sequences = itertools.count(max(int(self.base.get("sequence", 1)), int(time.time())) + 1)
        self._introduced: list[dict[str, Any]] = []

    def document(self, extra: list[dict[str, Any]] | None = None, mode: str | None = None) -> dict[str, Any]:
        """A sound list document: the base keys, those introduced so far and `extra`, issued now."""
        mode = mode or self.mode
        keys = [dict(copy.deepcopy(entry), test_key=entry["test_key"] and mode == "test") for entry in self.base["keys"]]
        return {"v": 1, "issued": crafting.timestamp(datetime.now(timezone.utc)), "sequence": next(self._sequences),
                "mode": mode, "jurisdictions": copy.deepcopy(self.base["jurisdictions"]),
                "keys": keys + copy.deepcopy(self._introduced) + list(extra or [])}

    def sound(self) -> bytes:
        """The list as it stands (nothing new), signed by the hub key."""
        return self.sign(self.document())

    def sign(self, document: dict[str, Any], key: SigningKey | None = None) -> bytes:
        signer = key or self.hub_key
        return crafting.compact(crafting.header_for(signer, TRUST_LIST_TYP), crafting.dump(document), signer.sign)

    def craft(self, fault: str, new_key: SigningKey, owner: str, message_key: SigningKey) -> bytes:
        """A signed list introducing `new_key` as `owner`'s message key, broken as `fault` says (FAULTS)."""
        now = datetime.now(timezone.utc)
        test_key = self.mode == "test"
        entry = _entry(new_key.kid, owner, "message", "Ed25519", _ed25519_jwk(new_key.public_x), now, test_key)
        other = f"{new_key.kid}-x"
        extra = {
            "private-member": [_entry(other, owner, "message", "Ed25519", _private_jwk(), now, test_key)],
            "small-order": [_entry(other, owner, "message", "Ed25519", _ed25519_jwk(SMALL_ORDER_POINT), now, test_key)],
            "jwk-invalid": [_entry(other, owner, "message", "Ed25519", _ed25519_jwk(os.urandom(31)), now, test_key)],
            "same-key-two-kids": [_entry(other, owner, "witness", "Ed25519", _ed25519_jwk(new_key.public_x), now, test_key)],
            "jurisdiction-receipt-key": [_entry(other, owner, "receipt", "Ed25519", _ed25519_jwk(new_message_key(owner).public_x), now, test_key)],
            "p256-witness-key": [_entry(other, owner, "witness", "ES256", _p256_jwk(), now, test_key)],
            "kid-twice": [_entry(new_key.kid, owner, "message", "Ed25519", _ed25519_jwk(new_message_key(owner).public_x), now, test_key)],
        }.get(fault, [])
        document = self.document([entry, *extra], mode="test" if fault == "test-mode" else None)
        if fault == "schema":
            del document["issued"]
        if fault == "lower-sequence":
            document["sequence"] = 1
        signed = self.sign(document, message_key if fault == "signed-by-message-key" else None)
        if fault == "none":
            self._introduced.append(entry)
        return signed


def _private_jwk() -> dict[str, Any]:
    """A fresh Ed25519 public JWK that also carries its private member `d`."""
    private = Ed25519PrivateKey.generate()
    raw = private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return dict(_ed25519_jwk(private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)), d=crafting.b64url(raw))
