"""The published test keys (keys/test/) the suite signs with besides the run's own key.

Against a hub in test mode the suite speaks for the counterparts of a case with their
published keys, and borrows the revoked, expired, not-yet-valid, witness and other-curve
keys its signature cases need (docs/protocol.md §10.5: test keys exist for this).
"""

from __future__ import annotations

from pathlib import Path

from gateway.conformance.crafting import Signer, SigningKey
from gateway.contract import contract_dir

BORROWED_KEY_FILES = {"revoked-key": "test-hk-message-revoked", "expired-key": "test-mo-message-expired",
                      "future-key": "test-cn-gd-message-future", "p256-key": "test-mo-message-1", "ed25519-key": "test-cn-gd-message-1"}
"""A mutation's borrowed key -> its published key file (the witness key is the signer's own jurisdiction's)."""

BORROWED_KEY_OWNERS = {"revoked-key": "HK", "expired-key": "MO", "future-key": "CN-GD", "eddsa-p256-key": "MO",
                       "ed25519-p256-key": "MO", "es256-der": "MO", "es256-ed25519-key": "CN-GD"}
"""A mutation -> the jurisdiction whose published key it signs with (when not the signer's own)."""


def test_key_path(name: str) -> Path:
    return contract_dir("keys") / "test" / f"{name}.key.jwk"


def published_key(jurisdiction: str, kind: str = "message-1") -> SigningKey:
    """A published test key (keys/test/) of `jurisdiction`: the counterparts a test-mode run may speak for."""
    return SigningKey.load(test_key_path(f"test-{jurisdiction.lower()}-{kind}"))


def signer_for(key: SigningKey, owner: str) -> Signer:
    """`key` of `owner`, with every published key a mutation may borrow."""
    borrowed = {name: SigningKey.load(test_key_path(file)) for name, file in BORROWED_KEY_FILES.items()}
    borrowed["witness-key"] = published_key(owner, "witness-1")
    return Signer(key, borrowed)
