"""Schemathesis hooks for tests/fuzz/test_openapi_schemathesis.py (loaded with SCHEMATHESIS_HOOKS=tests.fuzz.schemathesis_hooks).

`application/jose` bodies and bulk bodies (`application/vnd.gba.jose-lines`) are sent as generated (a string as UTF-8), and every GET gets a
fresh request proof (docs/protocol.md §9.5) signed by the key in GBA_PROOF_KEY_FILE for
the hub's public base URL in GBA_PUBLIC_BASE_URL.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import schemathesis

from gateway.keyfiles import read_private_key
from gateway.protocol.request_proof import make_request_proof
from gateway.protocol.timestamps import utc_now

_KEY = read_private_key(Path(os.environ["GBA_PROOF_KEY_FILE"]))
_PUBLIC_BASE = os.environ["GBA_PUBLIC_BASE_URL"].rstrip("/")


@schemathesis.serializer("application/jose", "application/vnd.gba.jose-lines")
def as_sent(ctx: schemathesis.SerializationContext, value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    return value.encode("utf-8", "surrogatepass") if isinstance(value, str) else json.dumps(value).encode()


@schemathesis.auth()
class RequestProof:
    def get(self, case: schemathesis.Case, ctx: schemathesis.AuthContext) -> bool:
        return True

    def set(self, case: schemathesis.Case, data: bool, ctx: schemathesis.AuthContext) -> None:
        if case.method.upper() == "GET":
            proof = make_request_proof(_KEY, "GET", _PUBLIC_BASE + case.formatted_path, None, utc_now())
            case.headers = {**(case.headers or {}), "GBA-Request-Proof": proof.decode()}
