"""Signing keys as typed objects, and the JWK profile of docs/protocol.md §10.1.

Two algorithms exist and each key is bound to one (PROTO-3.2-2): `Ed25519` (RFC 8037
OKP keys; RFC 9864 names the algorithm) and `ES256` (P-256, RFC 7518 §3.4, signatures
as raw 64-byte R||S). Public JWKs are read strictly: private members, unknown members,
points off the curve and small-order Ed25519 points are refused with catalogue codes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal, Union

import nacl.exceptions
import nacl.signing
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from gateway.protocol import base64url
from gateway.protocol.errors import ProtocolError

Algorithm = Literal["Ed25519", "ES256"]
ALGORITHMS: tuple[Algorithm, ...] = ("Ed25519", "ES256")
HEADER_ALGORITHMS: dict[str, Algorithm] = {"Ed25519": "Ed25519", "EdDSA": "Ed25519", "ES256": "ES256"}
"""`alg` header values accepted, mapped to the key algorithm they need (EdDSA is the legacy name)."""

KID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_PUBLIC_MEMBERS = {
    "Ed25519": frozenset({"kty", "crv", "x", "kid", "alg", "use"}),
    "ES256": frozenset({"kty", "crv", "x", "y", "kid", "alg", "use"}),
}
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_P256_FIELD = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
"""p, the prime of the field P-256 is defined over."""

_Public = Union[ed25519.Ed25519PublicKey, ec.EllipticCurvePublicKey]
_Private = Union[ed25519.Ed25519PrivateKey, ec.EllipticCurvePrivateKey]


@dataclass(frozen=True, slots=True)
class PublicKey:
    """A verification key bound to one algorithm and one key id.

    Ed25519 signatures are verified by libsodium (PyNaCl), not by `cryptography`'s OpenSSL: it is
    1.7 times as fast (docs/architecture.md, "Ed25519 by libsodium"), and it also
    refuses a signature whose R is a point of small order (§3.5), which no honest signer makes.
    """

    kid: str
    alg: Algorithm
    key: _Public
    _sodium: nacl.signing.VerifyKey | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.alg == "Ed25519":
            object.__setattr__(self, "_sodium", nacl.signing.VerifyKey(self.key.public_bytes_raw()))  # type: ignore[union-attr]

    def verify(self, signature: bytes, signing_input: bytes) -> bool:
        """True iff `signature` (raw, as in the JWS) is valid over `signing_input`."""
        if len(signature) != 64:
            return False
        try:
            if self._sodium is not None:
                self._sodium.verify(signing_input, bytes(signature))  # PyNaCl takes bytes only, as the JWS gives
            else:
                r = int.from_bytes(signature[:32], "big")
                s = int.from_bytes(signature[32:], "big")
                der = encode_dss_signature(r, s)
                self.key.verify(der, signing_input, ec.ECDSA(hashes.SHA256()))  # type: ignore[call-arg]
        except (InvalidSignature, nacl.exceptions.BadSignatureError):
            return False
        return True

    def to_jwk(self) -> dict[str, str]:
        """The public JWK, with `kid` and `alg`."""
        if self.alg == "Ed25519":
            raw = self.key.public_bytes_raw()  # type: ignore[union-attr]
            return {"kty": "OKP", "crv": "Ed25519", "x": base64url.encode_str(raw), "kid": self.kid, "alg": "Ed25519"}
        numbers = self.key.public_numbers()  # type: ignore[union-attr]
        return {
            "kty": "EC",
            "crv": "P-256",
            "x": base64url.encode_str(numbers.x.to_bytes(32, "big")),
            "y": base64url.encode_str(numbers.y.to_bytes(32, "big")),
            "kid": self.kid,
            "alg": "ES256",
        }


@dataclass(frozen=True, slots=True)
class PrivateKey:
    """A signing key bound to one algorithm and one key id. Never logged, never shipped.

    Ed25519 signs through libsodium too: the same bytes as OpenSSL's (RFC 8032 signatures are
    deterministic), in about two thirds of the time.
    """

    kid: str
    alg: Algorithm
    key: _Private
    _sodium: nacl.signing.SigningKey | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.alg == "Ed25519":
            object.__setattr__(self, "_sodium", nacl.signing.SigningKey(self._ed25519_seed()))

    def _ed25519_seed(self) -> bytes:
        """The 32-byte RFC 8032 private key (the JWK's `d`)."""
        return self.key.private_bytes(  # type: ignore[union-attr]
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )

    def sign(self, signing_input: bytes) -> bytes:
        """The raw JWS signature: 64 bytes for both algorithms (R||S for ES256)."""
        if self._sodium is not None:
            return self._sodium.sign(signing_input).signature
        der = self.key.sign(signing_input, ec.ECDSA(hashes.SHA256()))  # type: ignore[call-arg]
        r, s = decode_dss_signature(der)
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    def public(self) -> PublicKey:
        return PublicKey(self.kid, self.alg, self.key.public_key())

    def to_jwk(self) -> dict[str, str]:
        """The private JWK (public members plus `d`). Write it only to a 0600 file."""
        jwk = self.public().to_jwk()
        if self.alg == "Ed25519":
            raw = self._ed25519_seed()
        else:
            raw = self.key.private_numbers().private_value.to_bytes(32, "big")  # type: ignore[union-attr]
        jwk["d"] = base64url.encode_str(raw)
        return jwk


def generate(alg: Algorithm, kid: str) -> PrivateKey:
    """A fresh key pair for `alg`."""
    _check_kid(kid)
    if alg == "Ed25519":
        return PrivateKey(kid, alg, ed25519.Ed25519PrivateKey.generate())
    if alg == "ES256":
        return PrivateKey(kid, alg, ec.generate_private_key(ec.SECP256R1()))
    raise ValueError(f"unknown algorithm {alg!r}")


def public_key_from_jwk(jwk: Any, where: str = "") -> PublicKey:
    """Read a public JWK strictly (PROTO-10.1-1..3); `where` prefixes error locations."""
    if not isinstance(jwk, dict):
        raise ProtocolError("jwk-invalid", "A JWK must be a JSON object", where=where)
    private = sorted(_PRIVATE_MEMBERS & jwk.keys())
    if private:
        raise ProtocolError("jwk-private-member", where=f"{where}/{private[0]}")
    alg = _jwk_algorithm(jwk, where)
    unknown = sorted(jwk.keys() - _PUBLIC_MEMBERS[alg])
    if unknown:
        # `where` names the JWK, not the member: a member name is input and is never echoed.
        raise ProtocolError("jwk-invalid", "The JWK has a member this profile does not allow", where=where)
    kid = jwk.get("kid")
    if not isinstance(kid, str) or not KID_PATTERN.fullmatch(kid):
        raise ProtocolError("jwk-invalid", "The JWK needs a kid of 1-64 letters, digits, '.', '_' or '-'", where=f"{where}/kid")
    if jwk.get("use", "sig") != "sig":
        raise ProtocolError("jwk-invalid", "A signing JWK may only have use 'sig'", where=f"{where}/use")
    x = _coordinate(jwk, "x", where)
    if alg == "Ed25519":
        if _is_small_order_ed25519(x):
            raise ProtocolError("jwk-small-order", where=f"{where}/x")
        if not _is_canonical_ed25519_point(x):
            raise ProtocolError("jwk-invalid", "x is not an Ed25519 point", where=f"{where}/x")
        return PublicKey(kid, alg, ed25519.Ed25519PublicKey.from_public_bytes(x))
    y = _coordinate(jwk, "y", where)
    if not (int.from_bytes(x, "big") < _P256_FIELD and int.from_bytes(y, "big") < _P256_FIELD):
        # An affine coordinate is an element of the field (SEC 1 §3.2.2.1); OpenSSL would reduce x + p to x and so give
        # one key two encodings, and two RFC 7638 thumbprints.
        raise ProtocolError("jwk-invalid", "x and y are not a point on P-256", where=f"{where}/x")
    try:
        key = ec.EllipticCurvePublicNumbers(
            int.from_bytes(x, "big"), int.from_bytes(y, "big"), ec.SECP256R1()
        ).public_key()
    except ValueError:
        raise ProtocolError("jwk-invalid", "x and y are not a point on P-256", where=f"{where}/x") from None
    return PublicKey(kid, alg, key)


def private_key_from_jwk(jwk: Any) -> PrivateKey:
    """Read a private JWK (as `gateway keys generate` writes it)."""
    if not isinstance(jwk, dict) or not isinstance(jwk.get("d"), str):
        raise ValueError("not a private JWK: the member 'd' is missing")
    public_part = {name: value for name, value in jwk.items() if name != "d"}
    public = public_key_from_jwk(public_part)
    try:
        d = base64url.decode(jwk["d"])
    except base64url.Base64urlError:
        raise ValueError("the private JWK's 'd' is not canonical base64url") from None
    if public.alg == "Ed25519":
        if len(d) != 32:
            raise ValueError("an Ed25519 private key 'd' must be 32 bytes")
        key: _Private = ed25519.Ed25519PrivateKey.from_private_bytes(d)
    else:
        if len(d) != 32 or not 0 < int.from_bytes(d, "big") < _P256_ORDER:
            raise ValueError("a P-256 private key 'd' must be 32 bytes in range")
        key = ec.derive_private_key(int.from_bytes(d, "big"), ec.SECP256R1())
    private = PrivateKey(public.kid, public.alg, key)
    if private.public().to_jwk() != public.to_jwk():
        raise ValueError("the private JWK's 'd' does not match its public part")
    return private


def _check_kid(kid: str) -> None:
    if not KID_PATTERN.fullmatch(kid):
        raise ValueError("a kid is 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")


_ABSENT = object()
"""A JWK member that is not there, told apart from one that is null."""


def _jwk_algorithm(jwk: dict[str, Any], where: str) -> Algorithm:
    # A missing `alg` is allowed (§10.1); a present one, null included, must name the key's algorithm (PROTO-10.1-3).
    kty, crv, alg = jwk.get("kty"), jwk.get("crv"), jwk.get("alg", _ABSENT)
    if kty == "OKP" and crv == "Ed25519":
        if alg not in (_ABSENT, "Ed25519", "EdDSA"):
            raise ProtocolError("jwk-invalid", "alg does not fit an Ed25519 key", where=f"{where}/alg")
        return "Ed25519"
    if kty == "EC" and crv == "P-256":
        if alg not in (_ABSENT, "ES256"):
            raise ProtocolError("jwk-invalid", "alg does not fit a P-256 key", where=f"{where}/alg")
        return "ES256"
    raise ProtocolError("jwk-invalid", "Only OKP/Ed25519 and EC/P-256 keys are allowed", where=f"{where}/kty")


def _coordinate(jwk: dict[str, Any], name: str, where: str) -> bytes:
    value = jwk.get(name)
    if not isinstance(value, str):
        raise ProtocolError("jwk-invalid", f"The JWK member {name} is missing", where=f"{where}/{name}")
    try:
        raw = base64url.decode(value)
    except base64url.Base64urlError:
        raise ProtocolError("jwk-invalid", f"The JWK member {name} is not canonical base64url", where=f"{where}/{name}") from None
    if len(raw) != 32:
        raise ProtocolError("jwk-invalid", f"The JWK member {name} must be 32 bytes", where=f"{where}/{name}")
    return raw


# Ed25519 point arithmetic, only to tell small-order and malformed points apart (RFC 8032 §5.1).
_P = 2**255 - 19
_D = (-121665 * pow(121666, _P - 2, _P)) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)


def _decode_ed25519(encoded: bytes) -> tuple[int, int] | None:
    """The affine point of a 32-byte encoding, or None if it is not a canonical point."""
    y = int.from_bytes(encoded, "little") & ((1 << 255) - 1)
    sign = encoded[31] >> 7
    if y >= _P:
        return None
    u, v = (y * y - 1) % _P, (_D * y * y + 1) % _P
    x = (u * pow(v, 3, _P) * pow(u * pow(v, 7, _P), (_P - 5) // 8, _P)) % _P
    if (v * x * x - u) % _P != 0:
        x = (x * _SQRT_M1) % _P
        if (v * x * x - u) % _P != 0:
            return None
    if x == 0 and sign == 1:
        return None
    if x & 1 != sign:
        x = _P - x
    return x, y


def _edwards_add(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    (x1, y1), (x2, y2) = a, b
    t = _D * x1 * x2 * y1 * y2 % _P
    x3 = (x1 * y2 + y1 * x2) * pow(1 + t, _P - 2, _P) % _P
    y3 = (y1 * y2 + x1 * x2) * pow(1 - t, _P - 2, _P) % _P
    return x3, y3


def _is_canonical_ed25519_point(encoded: bytes) -> bool:
    return _decode_ed25519(encoded) is not None


def _is_small_order_ed25519(encoded: bytes) -> bool:
    """True for the eight points of order 1, 2, 4 or 8 (whose signatures prove nothing).

    Non-canonical encodings of them (y >= p) count too: they decode to the same points.
    """
    y = int.from_bytes(encoded, "little") & ((1 << 255) - 1)
    canonical = ((y % _P) | ((encoded[31] >> 7) << 255)).to_bytes(32, "little")
    # With x = 0 (the points of order 1 and 2) a set sign bit is a non-canonical
    # encoding of the same point, as libsodium also counts it: decode without it.
    point = _decode_ed25519(canonical) or _decode_ed25519((y % _P).to_bytes(32, "little"))
    if point is None:
        return False
    for _ in range(3):
        point = _edwards_add(point, point)
    return point == (0, 1)
