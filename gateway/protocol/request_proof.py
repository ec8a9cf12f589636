"""Signed request proofs (docs/protocol.md §9.5), modelled on DPoP (RFC 9449).

Every non-public request to the hub carries a `gba-request+jws` signed by a `message`
key of the calling jurisdiction. Its payload binds the request: method (`htm`), the
target URI without query or fragment (`htu`), the body's SHA-256 (`body_sha256`), the
time (`iat`, integer seconds) and a one-time id (`jti`).

`check_request_proof` runs every check of §9.5 but the last: whether `jti` was seen
before needs the hub's shared replay set (PROTO-9.5-5), so it returns the `jti` for
the hub to record. Its order: the JWS with its key judged at the hub's clock (§3.5
steps 1-8, PROTO-9.5-6), the payload (PROTO-9.5-2), `htm`, `htu`, `body_sha256`
(PROTO-9.5-3), then `iat` (PROTO-9.5-4).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from gateway.protocol import jws, strict_json
from gateway.protocol.errors import ProtocolError
from gateway.protocol.ids import UUID7, new_uuid7
from gateway.protocol.keys import PrivateKey
from gateway.protocol.trust import TrustList

REQUEST_TYP: jws.Typ = "gba-request+jws"
WINDOW_SECONDS = 300
"""How far `iat` may be from the hub's clock, either way (PROTO-9.5-4)."""

_MEMBERS = frozenset({"htm", "htu", "iat", "jti", "body_sha256"})
_METHOD = re.compile(r"[A-Z]{1,32}")
_DIGEST = re.compile(r"[0-9a-f]{64}")
_ABSOLUTE_URL = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://([^/?#]*)(.*)", re.DOTALL)


@dataclass(frozen=True, slots=True)
class RequestProof:
    """The payload of a request proof (§9.5)."""

    htm: str
    htu: str
    iat: int
    jti: str
    body_sha256: str | None

    def to_payload(self) -> dict[str, Any]:
        return {"htm": self.htm, "htu": self.htu, "iat": self.iat, "jti": self.jti, "body_sha256": self.body_sha256}


@dataclass(frozen=True, slots=True)
class VerifiedProof:
    """A request proof that passed every check but the replay check: the hub records `jti` (PROTO-9.5-5).

    `owner` is the caller's identity for the request (PROTO-9.5-6).
    """

    kid: str
    owner: str
    jti: str
    iat: int


def make_request_proof(key: PrivateKey, method: str, url: str, body: bytes | None, now: datetime) -> bytes:
    """A fresh `gba-request+jws` for one request, signed by the caller's `message` key (§9.5).

    `url` is the absolute URL requested; its query and fragment are left out of `htu`.
    Requires an uppercase `method` and an aware `now` (ValueError otherwise).
    """
    proof = RequestProof(
        htm=method,
        htu=_without_query(url),
        iat=_seconds(now),
        jti=new_uuid7(),
        body_sha256=_body_digest(body),
    )
    payload = proof.to_payload()
    try:
        _proof_from_payload(payload)
    except ProtocolError as refusal:
        raise ValueError(f"refusing to sign a request proof that the hub refuses: {refusal}") from None
    return jws.sign_compact(strict_json.dumps(payload), key, REQUEST_TYP)


def check_request_proof(
    compact: bytes | str | None,
    trust: TrustList,
    *,
    method: str,
    url: str,
    body: bytes | None,
    public_base_url: str,
    now: datetime,
    max_age_seconds: int = WINDOW_SECONDS,
) -> VerifiedProof:
    """Check the proof of one request against it; every check of §9.5 except replay.

    `compact` is the proof as received (None when the request carries none);
    `method`, `url` and `body` are the request as received, `url` being its target
    (origin form such as ``/v1/inbox?cursor=7``, or absolute): only its path is used,
    never its host (PROTO-9.5-3). `public_base_url` is the hub's configured public
    base URL; `now` is the hub's clock, at which the key must be valid (PROTO-9.5-6)
    and from which `iat` may be at most `max_age_seconds` away (PROTO-9.5-4: 300 in v1).
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if not compact:
        raise ProtocolError("request-proof-missing")
    parsed = jws.parse_compact(compact, REQUEST_TYP)
    record = trust.key_for(parsed.kid, parsed.typ, now)
    proof = _proof_from_payload(strict_json.loads(jws.verify_signature(parsed, record.public)))
    if proof.htm != method:
        raise ProtocolError("request-proof-mismatch", "htm is not the request's method", where="/htm")
    if _comparable(proof.htu) != _comparable(_expected_htu(public_base_url, url)):
        raise ProtocolError("request-proof-mismatch", "htu is not the public base URL followed by the request's path", where="/htu")
    if proof.body_sha256 != _body_digest(body):
        raise ProtocolError("request-proof-mismatch", "body_sha256 is not the digest of the request body", where="/body_sha256")
    if abs(now.timestamp() - proof.iat) > max_age_seconds:
        raise ProtocolError("request-proof-stale", f"iat is more than {max_age_seconds} s from the hub's clock", where="/iat")
    return VerifiedProof(kid=record.kid, owner=record.owner, jti=proof.jti, iat=proof.iat)


def _expected_htu(public_base_url: str, url: str) -> str:
    """The `htu` a request to `url` must carry: the public base URL followed by the request's path (PROTO-9.5-3).

    Requires an absolute `public_base_url` without query or fragment (ValueError otherwise).
    """
    if _ABSOLUTE_URL.fullmatch(public_base_url) is None or "?" in public_base_url or "#" in public_base_url:
        raise ValueError("the public base URL is an absolute URL without query or fragment")
    path = _without_query(url) if url.startswith("/") else urlsplit(url).path
    return public_base_url.rstrip("/") + path


def _proof_from_payload(payload: Any) -> RequestProof:
    """The proof in `payload`, if it has exactly the five members of §9.5 with their types (PROTO-9.5-2)."""
    if not isinstance(payload, dict) or payload.keys() != _MEMBERS:
        raise ProtocolError("request-proof-invalid", "The payload is an object of exactly htm, htu, iat, jti and body_sha256", where="")
    if not isinstance(payload["htm"], str) or not _METHOD.fullmatch(payload["htm"]):
        raise ProtocolError("request-proof-invalid", "htm is an HTTP method in uppercase", where="/htm")
    if not isinstance(payload["htu"], str) or not payload["htu"]:
        raise ProtocolError("request-proof-invalid", "htu is a URI", where="/htu")
    iat = payload["iat"]
    if isinstance(iat, bool) or not (isinstance(iat, int) or (isinstance(iat, float) and iat.is_integer())):
        raise ProtocolError("request-proof-invalid", "iat is an integer number of seconds", where="/iat")
    if not isinstance(payload["jti"], str) or not UUID7.fullmatch(payload["jti"]):
        raise ProtocolError("request-proof-invalid", "jti is a lowercase UUIDv7", where="/jti")
    digest = payload["body_sha256"]
    if digest is not None and (not isinstance(digest, str) or not _DIGEST.fullmatch(digest)):
        raise ProtocolError("request-proof-invalid", "body_sha256 is 64 lowercase hex characters or null", where="/body_sha256")
    return RequestProof(payload["htm"], payload["htu"], int(iat), payload["jti"], digest)


def _body_digest(body: bytes | None) -> str | None:
    """The `body_sha256` of a request body: hex SHA-256, or None for an empty body (§9.5)."""
    return hashlib.sha256(body).hexdigest() if body else None


def _comparable(url: str) -> str:
    """`url` with its scheme and host lowercased, nothing else changed (PROTO-9.5-3)."""
    match = _ABSOLUTE_URL.fullmatch(url)
    if match is None:
        return url
    scheme, authority, rest = match.groups()
    return f"{scheme.lower()}://{authority.lower()}{rest}"


def _without_query(url: str) -> str:
    return url.split("#", 1)[0].split("?", 1)[0]


def _seconds(now: datetime) -> int:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return int(now.timestamp())
