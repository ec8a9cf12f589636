"""Build JWS bytes the protocol's own signer never would: any header, any payload bytes."""

from __future__ import annotations

import json
from typing import Any

from gateway.protocol import base64url
from gateway.protocol.keys import PrivateKey


def forge(header: bytes | dict[str, Any], payload: bytes | dict[str, Any], key: PrivateKey) -> bytes:
    """A compact JWS of exactly these header and payload bytes, validly signed by `key`."""
    header_bytes = header if isinstance(header, bytes) else json.dumps(header).encode()
    payload_bytes = payload if isinstance(payload, bytes) else json.dumps(payload, ensure_ascii=False).encode()
    signing_input = base64url.encode(header_bytes) + b"." + base64url.encode(payload_bytes)
    return signing_input + b"." + base64url.encode(key.sign(signing_input))


def message_header(key: PrivateKey, **changes: Any) -> dict[str, Any]:
    header = {"alg": key.alg, "kid": key.kid, "typ": "gba-case+jws"}
    header.update(changes)
    return {name: value for name, value in header.items() if value is not None}
