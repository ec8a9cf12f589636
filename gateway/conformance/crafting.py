"""The suite's own JWS (docs/conformance.md): messages built and checked from first principles, not by the hub's code.

A conformance suite that signed and checked with the implementation under test would pass
that implementation's bugs. So this module writes compact JWS itself — base64url with the
standard library, signatures with `cryptography` — knows how to break them in each way a
case asks for (`craft`), and verifies the statements a target signs (`verify_compact`)
against the suite's own reading of a trust list (docs/protocol.md §3, §10.3).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import os
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

MESSAGE_TYP = "gba-case+jws"
RECEIPT_TYP = "gba-receipt+jws"
ATTESTATION_TYP = "gba-attestation+jws"
REQUEST_TYP = "gba-request+jws"
MAX_JWS_BYTES = 262144


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def digest(compact: bytes) -> str:
    """The digest of a JWS: SHA-256 of its exact bytes, as hex (§5.6)."""
    return hashlib.sha256(compact).hexdigest()


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
        """The JWS signature of `data`: raw Ed25519, or ES256 as the 64-byte R||S of RFC 7518 §3.4."""
        if self.alg == "Ed25519":
            return self.key.sign(data)
        r, s = decode_dss_signature(self.key.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    def sign_der(self, data: bytes) -> bytes:
        """An ES256 signature in DER, the common mistake PROTO-3.2-4 forbids. Requires a P-256 key."""
        return self.key.sign(data, ec.ECDSA(hashes.SHA256()))

    def public_jwk(self) -> dict[str, str]:
        if self.alg == "Ed25519":
            return {"kty": "OKP", "crv": "Ed25519", "x": b64url(self.public_x)}
        numbers = self.key.public_key().public_numbers()
        return {"kty": "EC", "crv": "P-256", "x": b64url(numbers.x.to_bytes(32, "big")), "y": b64url(numbers.y.to_bytes(32, "big"))}


def header_for(key: SigningKey, typ: str = MESSAGE_TYP, **changes: Any) -> dict[str, Any]:
    return {"alg": key.alg, "kid": key.kid, "typ": typ, **changes}


def compact_raw(header_text: bytes, payload: bytes, sign: Callable[[bytes], bytes]) -> bytes:
    """A compact JWS of the exact header and payload bytes, signed by `sign(signing input)`."""
    signing_input = f"{b64url(header_text)}.{b64url(payload)}".encode("ascii")
    return signing_input + b"." + b64url(sign(signing_input)).encode("ascii")


def compact(header: dict[str, Any], payload: bytes, sign: Callable[[bytes], bytes]) -> bytes:
    return compact_raw(json.dumps(header, separators=(",", ":")).encode(), payload, sign)


def dump(payload: Any) -> bytes:
    """Payload bytes as the suite signs them: UTF-8 JSON, no whitespace, the member order of the dict."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def new_uuid7() -> str:
    """A lowercase UUIDv7 (RFC 9562 §5.7), written here rather than imported from the implementation."""
    raw = bytearray(int(time.time() * 1000).to_bytes(6, "big") + os.urandom(10))
    raw[6] = (raw[6] & 0x0F) | 0x70
    raw[8] = (raw[8] & 0x3F) | 0x80
    return str(uuid.UUID(bytes=bytes(raw)))


def timestamp(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def flip_signature(compact_jws: bytes) -> bytes:
    """`compact_jws` with one bit of its signature flipped, still canonical base64url."""
    head, _, signature = compact_jws.rpartition(b".")
    raw = bytearray(b64url_decode(signature.decode()))
    raw[len(raw) // 2] ^= 0x01
    return head + b"." + b64url(bytes(raw)).encode()


class NotApplicable(Exception):
    """The case does not apply to this configuration (a skip, with this reason)."""


# --- payload edits: JSON Pointer (RFC 6901) operations a case lists as data ---


def parent_of(document: Any, pointer: str) -> tuple[Any, str]:
    parts = [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:]]
    node = document
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node, parts[-1]


def apply_edits(payload: dict[str, Any], edits: list[list[Any]]) -> dict[str, Any]:
    """`payload` with each edit applied in order: ["set", pointer, value], ["remove", pointer] or ["append", pointer, value]."""
    result = copy.deepcopy(payload)
    for edit in edits:
        operation, pointer = edit[0], edit[1]
        parent, last = parent_of(result, pointer)
        if operation == "set":
            if isinstance(parent, list):
                parent[int(last)] = copy.deepcopy(edit[2])
            else:
                parent[last] = copy.deepcopy(edit[2])
        elif operation == "remove":
            del parent[int(last) if isinstance(parent, list) else last]
        elif operation == "append":
            (parent[int(last)] if isinstance(parent, list) else parent[last]).append(copy.deepcopy(edit[2]))
        else:
            raise ValueError(f"unknown edit {operation!r}")
    return result


# --- signature and profile mutations (§3, §4): payload dict -> the bytes to send ---


@dataclass(frozen=True)
class Signer:
    """Who signs a crafted message, and the published keys a mutation may borrow."""

    key: SigningKey
    borrowed: dict[str, SigningKey]
    """Published test keys by role: revoked-key, expired-key, future-key, witness-key, p256-key, ed25519-key."""


_CANONICAL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
REFUSED_PARAMETERS = ("crit", "b64", "jwk", "jku", "x5u", "x5c", "x5t", "cty", "zip", "enc")


def mutate(mutation: str, payload: dict[str, Any], signer: Signer, typ: str = MESSAGE_TYP, splice: str | None = None) -> bytes:
    """The compact JWS of `payload` broken as `mutation` says (the names of conformance/cases/README.md)."""
    key = signer.key
    header = header_for(key, typ)
    body = dump(payload)
    if mutation == "none":
        return compact(header, body, key.sign)
    if mutation == "alg-eddsa":
        if key.alg != "Ed25519":
            raise NotApplicable("EdDSA needs an Ed25519 key")
        return compact(dict(header, alg="EdDSA"), body, key.sign)
    if mutation == "flip-signature":
        return flip_signature(compact(header, body, key.sign))
    if mutation == "flip-payload":
        head, payload_segment, signature = compact(header, body, key.sign).split(b".")
        raw = bytearray(b64url_decode(payload_segment.decode()))
        raw[len(raw) // 2] ^= 0x20
        return head + b"." + b64url(bytes(raw)).encode() + b"." + signature
    if mutation == "alg-none":
        # A non-empty signature segment, so that the alg is what is refused, not an empty segment.
        return compact(dict(header, alg="none"), body, key.sign)
    if mutation == "hmac-public-key":
        return compact(dict(header, alg="HS256"), body, lambda data: hmac.new(key.public_x, data, hashlib.sha256).digest())
    if mutation in ("eddsa-p256-key", "ed25519-p256-key", "es256-der"):
        p256 = key if key.alg == "ES256" else signer.borrowed["p256-key"]
        alg = {"eddsa-p256-key": "EdDSA", "ed25519-p256-key": "Ed25519", "es256-der": "ES256"}[mutation]
        sign = p256.sign_der if mutation == "es256-der" else p256.sign
        return compact(header_for(p256, typ, alg=alg), body, sign)
    if mutation == "es256-ed25519-key":
        ed = key if key.alg == "Ed25519" else signer.borrowed["ed25519-key"]
        return compact(header_for(ed, typ, alg="ES256"), body, ed.sign)
    if mutation == "unknown-kid":
        return compact(dict(header, kid=f"conformance-unknown-{new_uuid7()[-8:]}"), body, key.sign)
    if mutation in ("revoked-key", "expired-key", "future-key", "witness-key"):
        other = signer.borrowed[mutation]
        return compact(header_for(other, typ), body, other.sign)
    if mutation.startswith("header-") and mutation[len("header-"):] in REFUSED_PARAMETERS:
        name = mutation[len("header-"):]
        value: Any = {"jwk": key.public_jwk(), "crit": ["b64"], "b64": False, "x5c": ["MIIB"]}.get(name, "https://example.invalid/k")
        return compact(dict(header, **{name: value}), body, key.sign)
    if mutation == "header-private-parameter":
        return compact(dict(header, trace="x"), body, key.sign)
    if mutation == "header-missing-kid":
        return compact({k: v for k, v in header.items() if k != "kid"}, body, key.sign)
    if mutation == "header-duplicate-alg":
        text = json.dumps(header, separators=(",", ":")).encode()[:-1] + b',"alg":"' + key.alg.encode() + b'"}'
        return compact_raw(text, body, key.sign)
    if mutation == "header-too-long":
        return compact(dict(header, kid=key.kid + "-" + "x" * 1100), body, key.sign)
    if mutation == "two-segments":
        return compact(header, body, key.sign).rpartition(b".")[0]
    if mutation == "non-canonical-signature":
        jws = compact(header, body, key.sign)
        return jws[:-1] + _CANONICAL[_CANONICAL.index(chr(jws[-1])) ^ 0x01].encode()
    if mutation == "padded-signature":
        jws = compact(header, body, key.sign)
        return jws + b"=" * (-len(jws.rpartition(b".")[2]) % 4 or 2)
    if mutation == "padded-payload":
        head, payload_segment, _ = compact(header, body + b" " * (len(body) % 3 == 0), key.sign).split(b".")
        if len(payload_segment) % 4 == 0:
            raise NotApplicable("the payload's encoding needs no padding")
        # Signed over the padded segment: only the encoding is at fault.
        signing_input = head + b"." + payload_segment + b"=" * (-len(payload_segment) % 4)
        return signing_input + b"." + b64url(key.sign(signing_input)).encode()
    if mutation == "typ-receipt":
        return compact(dict(header, typ=RECEIPT_TYP), body, key.sign)
    if mutation == "raw-payload":
        assert splice is not None, "a raw-payload case gives the payload text"
        return compact(header, splice.encode("utf-8").decode("unicode_escape").encode("latin-1"), key.sign)
    if mutation == "duplicate-member":
        duplicated = body[:-1] + b',"purpose":' + json.dumps(payload["purpose"]).encode() + b"}"
        return compact(header, duplicated, key.sign)
    if mutation == "splice":
        # Raw JSON text added as a last member: the JSON fault is the case, before any schema check.
        assert splice is not None, "a splice case names the text it adds"
        return compact(header, body[:-1] + splice.encode("utf-8") + b"}", key.sign)
    if mutation == "bom":
        return compact(header, b"\xef\xbb\xbf" + body, key.sign)
    if mutation == "invalid-utf8":
        return compact(header, body[:-1] + b',"note":"\xc3\x28"}', key.sign)
    if mutation == "too-deep":
        return compact(header, body[:-1] + b',"deep":' + b"[" * 40 + b"]" * 40 + b"}", key.sign)
    if mutation == "too-large":
        padding = b"x" * (MAX_JWS_BYTES * 3 // 4)
        return compact(header, body[:-1] + b',"pad":"' + padding + b'"}', key.sign)
    raise ValueError(f"unknown mutation {mutation!r}")


# --- request proofs (§9.5) ---


def request_proof(key: SigningKey, method: str, url: str, body: bytes, *, iat: int | None = None, jti: str | None = None,
                  **changes: Any) -> bytes:
    """A `gba-request+jws` for `method url` with this body (`changes` override payload members, to break it)."""
    payload = {"htm": method, "htu": url, "iat": int(time.time()) if iat is None else iat, "jti": jti or new_uuid7(),
               "body_sha256": hashlib.sha256(body).hexdigest() if body else None}
    payload.update(changes)
    return compact(header_for(key, REQUEST_TYP), dump(payload), key.sign)


# --- verifying what a target signs, against the suite's own reading of a trust list ---


class StatementInvalid(Exception):
    """A statement the target signed does not verify; the message says which check failed."""


@dataclass(frozen=True)
class TrustedKey:
    kid: str
    owner: str
    use: str
    alg: str
    jwk: dict[str, Any]


def read_trust_list(document: dict[str, Any]) -> dict[str, TrustedKey]:
    """The keys of a trust list document (§10.3) by kid; what the suite needs of it, nothing judged here."""
    return {item["kid"]: TrustedKey(item["kid"], item["owner"], item["use"], item["alg"], item["jwk"]) for item in document["keys"]}


def verify_compact(compact_jws: bytes, trust: dict[str, TrustedKey], typ: str, owner: str, use: str) -> dict[str, Any]:
    """The payload of `compact_jws` once its header, key (owner, use) and signature check out; StatementInvalid otherwise."""
    try:
        head, payload_segment, signature = compact_jws.decode("ascii").split(".")
        header = json.loads(b64url_decode(head))
        raw_signature = b64url_decode(signature)
    except (ValueError, UnicodeDecodeError) as error:
        raise StatementInvalid(f"not a compact JWS ({type(error).__name__})") from None
    if header.get("typ") != typ:
        raise StatementInvalid(f"typ is {header.get('typ')!r}, want {typ!r}")
    key = trust.get(header.get("kid"))
    if key is None:
        raise StatementInvalid(f"kid {header.get('kid')!r} is not in the trust list")
    if (key.owner, key.use) != (owner, use):
        raise StatementInvalid(f"kid {key.kid} is a {key.use} key of {key.owner}, want a {use} key of {owner}")
    if header.get("alg") not in ({"Ed25519", "EdDSA"} if key.alg == "Ed25519" else {key.alg}):
        raise StatementInvalid(f"alg {header.get('alg')!r} is not registered for {key.kid}")
    signing_input = f"{head}.{payload_segment}".encode("ascii")
    try:
        if key.alg == "Ed25519":
            Ed25519PublicKey.from_public_bytes(b64url_decode(key.jwk["x"])).verify(raw_signature, signing_input)
        else:
            if len(raw_signature) != 64:
                raise StatementInvalid(f"an ES256 signature of {len(raw_signature)} bytes, want 64")
            public = ec.EllipticCurvePublicNumbers(int.from_bytes(b64url_decode(key.jwk["x"]), "big"),
                                                   int.from_bytes(b64url_decode(key.jwk["y"]), "big"), ec.SECP256R1()).public_key()
            der = encode_dss_signature(int.from_bytes(raw_signature[:32], "big"), int.from_bytes(raw_signature[32:], "big"))
            public.verify(der, signing_input, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise StatementInvalid(f"the signature does not verify with {key.kid}") from None
    try:
        return json.loads(b64url_decode(payload_segment))
    except ValueError:
        raise StatementInvalid("the payload is not JSON") from None


def jcs(value: Any) -> bytes:
    """The RFC 8785 form of `value`, for what the suite meets (a local view §9.3, a ledger entry §13.1): ASCII member
    names, strings, integers, booleans, null, lists and objects, where sorting by code point equals JCS's UTF-16 order."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def jcs_digest(value: Any) -> str:
    """SHA-256 hex of `jcs(value)`."""
    return hashlib.sha256(jcs(value)).hexdigest()


def b64_decode(text: str) -> bytes:
    """Standard base64 with padding (the ledger's resources, §13.6)."""
    return base64.b64decode(text, validate=True)


def stale(now: datetime) -> str:
    return timestamp(now - timedelta(minutes=10))


def future(now: datetime) -> str:
    return timestamp(now + timedelta(minutes=10))
