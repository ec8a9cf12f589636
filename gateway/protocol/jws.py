"""The JWS profile of docs/protocol.md §3: compact serialization only, strict header.

`parse_compact` does everything that needs no key: size, the three canonical
base64url segments, the strictly parsed protected header with exactly `alg`, `kid`
and `typ`. The payload stays bytes until the signature has been checked
(§4.5): `verify_signature` is the only way to a verified payload.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from typing import Literal

from gateway.protocol import base64url, strict_json
from gateway.protocol.errors import ProtocolError
from gateway.protocol.keys import HEADER_ALGORITHMS, KID_PATTERN, PrivateKey, PublicKey

MAX_COMPACT_BYTES = 262_144
"""Size limit of a compact JWS in bytes (PROTO-4.5-1)."""

Typ = Literal["gba-case+jws", "gba-receipt+jws", "gba-attestation+jws", "gba-request+jws", "gba-trust-list+jws"]
TYPES: tuple[Typ, ...] = ("gba-case+jws", "gba-receipt+jws", "gba-attestation+jws", "gba-request+jws", "gba-trust-list+jws")

MAX_HEADER_SEGMENT = 1024
"""Size limit of the protected header segment in characters (PROTO-4.5-3); a real one is about 100."""

_HEADER_MEMBERS = ("alg", "kid", "typ")
_EXPLICITLY_REFUSED = ("crit", "b64", "jwk", "jku", "x5u", "x5c")


@dataclass(frozen=True, slots=True)
class CompactJWS:
    """A parsed, not yet verified, JWS. `raw` is exactly the bytes received."""

    raw: bytes
    alg: str
    kid: str
    typ: Typ
    signing_input: bytes
    payload: bytes
    signature: bytes

    @property
    def digest(self) -> str:
        return digest(self.raw)


def digest(compact: bytes) -> str:
    """The message digest of PROTO-5.6: SHA-256 of the compact JWS bytes, lowercase hex."""
    return hashlib.sha256(compact).hexdigest()


def parse_compact(raw: bytes | str, expected_typ: Typ, max_bytes: int = MAX_COMPACT_BYTES) -> CompactJWS:
    """Parse a compact JWS whose `typ` must be `expected_typ` (§3.1, §3.3, §3.4)."""
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogatepass")
    if len(raw) > max_bytes:
        raise ProtocolError("message-too-large", f"A compact JWS may have at most {max_bytes} bytes")
    segments = raw.split(b".")
    if len(segments) != 3 or not all(segments):
        raise ProtocolError("jws-malformed", "A compact JWS is three non-empty segments joined by '.'")
    header_segment, payload_segment, signature_segment = segments
    if len(header_segment) > MAX_HEADER_SEGMENT:
        raise ProtocolError("header-invalid", f"The header segment may have at most {MAX_HEADER_SEGMENT} characters", where="header")
    header = _decode_segment(header_segment, "header")
    payload = _decode_segment(payload_segment, "payload")
    signature = _decode_segment(signature_segment, "signature")
    alg, kid, typ = _read_header(header, expected_typ)
    return CompactJWS(raw, alg, kid, typ, header_segment + b"." + payload_segment, payload, signature)


def _decode_segment(segment: bytes, name: str) -> bytes:
    try:
        return base64url.decode(segment)
    except base64url.Base64urlError:
        raise ProtocolError("jws-base64url-invalid", where=name) from None


@functools.lru_cache(maxsize=1024)
def _read_header(header: bytes, expected_typ: Typ) -> tuple[str, str, Typ]:
    # A sender uses the same few headers for every message: remembering the accepted
    # ones saves a strict parse per message. Headers are at most MAX_HEADER_SEGMENT
    # characters, so the cache stays small; refusals are not cached.
    return _check_header(strict_json.loads(header, part="header"), expected_typ)


def _check_header(header: object, expected_typ: Typ) -> tuple[str, str, Typ]:
    if not isinstance(header, dict):
        raise ProtocolError("header-invalid", "The protected header must be a JSON object", where="header")
    for name in _EXPLICITLY_REFUSED:
        if name in header:
            raise ProtocolError("header-parameter-refused", where=name)
    extra = sorted(header.keys() - set(_HEADER_MEMBERS))
    if extra:
        raise ProtocolError("header-parameter-refused", "Only alg, kid and typ are allowed", where="header")
    for name in _HEADER_MEMBERS:
        if not isinstance(header.get(name), str):
            raise ProtocolError("header-invalid", "alg, kid and typ are required strings", where=name)
    if header["alg"] not in HEADER_ALGORITHMS:
        raise ProtocolError("alg-refused", "Only Ed25519, EdDSA and ES256 are allowed", where="alg")
    if not KID_PATTERN.fullmatch(header["kid"]):
        raise ProtocolError("header-invalid", "kid is 1-64 letters, digits, '.', '_' or '-'", where="kid")
    if header["typ"] != expected_typ:
        raise ProtocolError("typ-unexpected", f"Expected typ {expected_typ}", where="typ")
    return header["alg"], header["kid"], header["typ"]


def verify_signature(jws: CompactJWS, key: PublicKey) -> bytes:
    """The payload bytes, once `jws` is proven signed by `key` with `key`'s algorithm (§3.2, §3.5)."""
    if HEADER_ALGORITHMS[jws.alg] != key.alg:
        raise ProtocolError("key-alg-mismatch", f"Key {key.kid} is registered for {key.alg}", where="alg")
    if not key.verify(jws.signature, jws.signing_input):
        raise ProtocolError("signature-invalid")
    return jws.payload


def sign_compact(payload: bytes, key: PrivateKey, typ: Typ) -> bytes:
    """A compact JWS of `payload` with header {alg, kid, typ} (alg `Ed25519` or `ES256`)."""
    header = strict_json.dumps({"alg": key.alg, "kid": key.kid, "typ": typ})
    signing_input = base64url.encode(header) + b"." + base64url.encode(payload)
    return signing_input + b"." + base64url.encode(key.sign(signing_input))
