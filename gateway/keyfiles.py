"""Key files on disk: private JWKs (mode 0600) and public JWKs, as `gateway keys generate` writes them."""

from __future__ import annotations

import json
import os
from pathlib import Path

from gateway.protocol.errors import ProtocolError
from gateway.protocol.keys import PrivateKey, PublicKey, private_key_from_jwk


def write_private_key(key: PrivateKey, path: Path) -> None:
    """Write `key` as a private JWK readable by its owner only; never overwrite."""
    data = (json.dumps(key.to_jwk(), indent=2) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def write_public_key(key: PublicKey, path: Path) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(key.to_jwk(), indent=2) + "\n")


def read_private_key(path: Path) -> PrivateKey:
    """A private key from a JWK file; ValueError naming the file if it is not one."""
    try:
        document = json.loads(path.read_text("utf-8"))
        return private_key_from_jwk(document)
    except (ValueError, ProtocolError) as error:
        raise ValueError(f"{path}: not a private signing key: {error}") from None
