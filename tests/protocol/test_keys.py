"""The JWK profile and key objects (docs/protocol.md §10.1)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.protocol import base64url
from gateway.protocol.errors import ProtocolError
from gateway.protocol.keys import generate, private_key_from_jwk, public_key_from_jwk

P = 2**255 - 19
# The eight points of small order, as libsodium's blocklist and RFC 8032 arithmetic give them,
# with both sign bits where x != 0, plus non-canonical encodings (y >= p) of some of them.
SMALL_ORDER = [
    "0100000000000000000000000000000000000000000000000000000000000000",  # identity, order 1
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # y = -1, order 2
    "0000000000000000000000000000000000000000000000000000000000000000",  # y = 0, order 4
    "0000000000000000000000000000000000000000000000000000000000000080",  # y = 0, other x
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",  # order 8
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",  # order 8
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # y = p, i.e. 0
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # y = p + 1, i.e. 1
    "0100000000000000000000000000000000000000000000000000000000000080",  # identity, sign bit set
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",  # y = -1, sign bit set
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",  # y = p + 1, sign bit set
]


def _okp(x_hex: str) -> dict:
    return {"kty": "OKP", "crv": "Ed25519", "x": base64url.encode_str(bytes.fromhex(x_hex)), "kid": "k1"}


@pytest.mark.parametrize("point", SMALL_ORDER)
def test_small_order_ed25519_points_are_refused(point):
    with pytest.raises(ProtocolError) as refused:
        public_key_from_jwk(_okp(point))
    assert refused.value.code == "jwk-small-order"


def test_generated_ed25519_keys_are_accepted():
    for _ in range(20):
        key = generate("Ed25519", "k1").public()
        assert public_key_from_jwk(key.to_jwk()).to_jwk() == key.to_jwk()


def test_an_encoding_that_is_no_point_is_invalid():
    # y = 2 has no x on the curve ((y^2 - 1) / (d y^2 + 1) is not a square mod p).
    with pytest.raises(ProtocolError) as refused:
        public_key_from_jwk(_okp("02" + "00" * 31))
    assert refused.value.code == "jwk-invalid"


@pytest.mark.parametrize("member", ["d", "p", "q", "dp", "dq", "qi", "k", "oth"])
def test_any_private_member_is_refused(member):
    jwk = generate("ES256", "k1").public().to_jwk() | {member: "AAAA"}
    with pytest.raises(ProtocolError) as refused:
        public_key_from_jwk(jwk)
    assert refused.value.code == "jwk-private-member" and refused.value.where == f"/{member}"


@pytest.mark.parametrize("alg", ["Ed25519", "ES256"])
def test_private_jwk_round_trip_signs_verifiably(alg):
    key = generate(alg, "round-trip")
    again = private_key_from_jwk(key.to_jwk())
    assert key.public().verify(again.sign(b"input"), b"input")


def test_a_private_jwk_whose_d_does_not_match_x_is_refused():
    jwk = generate("Ed25519", "k1").to_jwk()
    jwk["d"] = generate("Ed25519", "k1").to_jwk()["d"]
    with pytest.raises(ValueError, match="does not match"):
        private_key_from_jwk(jwk)


def test_es256_signatures_are_raw_64_bytes_and_der_is_refused():
    key = generate("ES256", "k1")
    signature = key.sign(b"input")
    assert len(signature) == 64 and key.public().verify(signature, b"input")
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
    assert not key.public().verify(der, b"input")


# --- Ed25519 verification (PROTO-3.5-1): libsodium verifies, and agrees with OpenSSL on every honest signature ---

L = 2**252 + 27742317777372353535851937790883648493  # the order of the Ed25519 base point (RFC 8032 §5.1)


def _openssl_accepts(key, signature: bytes, message: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature

    try:
        key.public().key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


@settings(max_examples=200, deadline=None)
@given(message=st.binary(max_size=600), flip=st.integers(min_value=0, max_value=64 * 8 - 1))
def test_ed25519_verification_agrees_with_openssl_on_valid_and_altered_signatures(message, flip):
    key = generate("Ed25519", "k1")
    signature = key.sign(message)
    assert key.public().verify(signature, message) and _openssl_accepts(key, signature, message)
    altered = bytearray(signature)
    altered[flip // 8] ^= 1 << (flip % 8)
    assert not key.public().verify(bytes(altered), message) and not _openssl_accepts(key, bytes(altered), message)
    assert not key.public().verify(signature, message + b"x")


def test_an_ed25519_signature_with_s_not_below_the_group_order_fails():
    key = generate("Ed25519", "k1")
    signature = key.sign(b"input")
    s = int.from_bytes(signature[32:], "little")
    malleated = signature[:32] + (s + L).to_bytes(32, "little")  # the same point equation, S >= L
    assert not key.public().verify(malleated, b"input")
    assert not key.public().verify(signature[:63], b"input") and not key.public().verify(signature + b"\0", b"input")


def test_an_ed25519_signature_whose_r_has_small_order_fails_although_openssl_takes_it():
    """Only the key's holder can make one: R = identity, S = h·a. RFC 8032 §5.1.7 accepts it, §3.5 refuses it."""
    import hashlib

    from cryptography.hazmat.primitives import serialization

    key = generate("Ed25519", "k1")
    seed = key.key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    half = bytearray(hashlib.sha512(seed).digest()[:32])
    half[0] &= 248
    half[31] &= 127
    half[31] |= 64
    a = int.from_bytes(half, "little")
    public = key.public().key.public_bytes_raw()
    message = b"input"
    identity = (1).to_bytes(32, "little")
    h = int.from_bytes(hashlib.sha512(identity + public + message).digest(), "little") % L
    signature = identity + (h * a % L).to_bytes(32, "little")
    assert _openssl_accepts(key, signature, message)  # the crafted signature satisfies the equation
    assert not key.public().verify(signature, message)


@settings(max_examples=50, deadline=None)
@given(message=st.binary(max_size=600))
def test_ed25519_signatures_are_the_bytes_openssl_makes(message):
    key = generate("Ed25519", "k1")
    assert key.sign(message) == key.key.sign(message)  # RFC 8032 signatures are deterministic


def test_a_signature_given_as_any_bytes_like_object_verifies_as_before():
    """`cryptography` took any bytes-like signature; PyNaCl takes bytes only, and the key converts."""
    key = generate("Ed25519", "k1")
    signature = key.sign(b"input")
    assert key.public().verify(bytearray(signature), b"input") and key.public().verify(memoryview(signature), b"input")
    assert not key.public().verify(bytearray(64), b"input")


P256 = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
P256_B = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B


def _p256_point_with_small_x() -> tuple[int, int]:
    """A point of P-256 whose x is small enough that x + p still fits 32 bytes."""
    for x in range(1, 100):
        rhs = (x**3 - 3 * x + P256_B) % P256
        y = pow(rhs, (P256 + 1) // 4, P256)  # p = 3 (mod 4): the square root, when there is one
        if y * y % P256 == rhs:
            return x, y
    raise AssertionError("no point with a small x")


def _ec(x: int, y: int) -> dict:
    return {"kty": "EC", "crv": "P-256", "kid": "k1", "x": base64url.encode_str(x.to_bytes(32, "big")),
            "y": base64url.encode_str(y.to_bytes(32, "big"))}


def test_a_p256_coordinate_at_or_above_the_field_prime_is_refused_not_reduced():
    """PROTO-10.1-3: x and y are the point's affine coordinates, elements of the field; x + p names the same point as x,
    and taking it would give one key two encodings (and two RFC 7638 thumbprints)."""
    x, y = _p256_point_with_small_x()
    assert public_key_from_jwk(_ec(x, y)).to_jwk()["x"] == _ec(x, y)["x"]
    with pytest.raises(ProtocolError) as refused:
        public_key_from_jwk(_ec(x + P256, y))
    assert refused.value.code == "jwk-invalid"


@pytest.mark.parametrize("alg", [None, "ES256", "RS256", ""])
def test_a_present_alg_must_name_the_keys_algorithm_even_when_null(alg):
    """PROTO-10.1-3: `alg` may be left out; when present, it is the key's algorithm (null is present)."""
    for key, allowed in ((generate("Ed25519", "k1").public().to_jwk(), ("Ed25519", "EdDSA")),
                         (generate("ES256", "k1").public().to_jwk(), ("ES256",))):
        key = {name: value for name, value in key.items() if name != "alg"}
        assert public_key_from_jwk(key) is not None, "no alg at all is allowed"
        jwk = key | {"alg": alg}
        if alg in allowed:
            assert public_key_from_jwk(jwk) is not None
        else:
            with pytest.raises(ProtocolError) as refused:
                public_key_from_jwk(jwk)
            assert refused.value.code == "jwk-invalid" and refused.value.where.endswith("/alg")
