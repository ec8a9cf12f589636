"""Interoperability with an independent JOSE implementation (joserfc), used only here.

Our signatures verify in joserfc and joserfc's verify with us, for Ed25519 (both
`Ed25519` and the legacy `EdDSA` name) and ES256 (raw R||S); and the RFC 8037
Appendix A.4 example verifies at the JWS-primitive layer.
"""

from __future__ import annotations

import json

import pytest
from joserfc import jws as jose_jws
from joserfc.jwk import ECKey, OKPKey

from gateway.protocol import base64url, jws
from gateway.protocol.keys import PublicKey, generate, private_key_from_jwk, public_key_from_jwk
from gateway.protocol.message import sign_message, verify_message
from tests.conftest import NOW

RFC8037_A4_KEY = {
    "kty": "OKP",
    "crv": "Ed25519",
    "d": "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A",
    "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
}
RFC8037_A4_JWS = (
    b"eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc."
    b"hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"
)


def _their_key(our_private):
    # Without "alg": joserfc binds a JWK's alg strictly, and the legacy EdDSA case needs the same key.
    jwk = {name: value for name, value in our_private.to_jwk().items() if name != "alg"}
    return OKPKey.import_key(jwk) if jwk["kty"] == "OKP" else ECKey.import_key(jwk)


def test_rfc8037_a4_example_verifies_with_our_primitive():
    public = public_key_from_jwk({k: v for k, v in RFC8037_A4_KEY.items() if k != "d"} | {"kid": "rfc8037"})
    header, payload, signature = RFC8037_A4_JWS.split(b".")

    assert public.verify(base64url.decode(signature), header + b"." + payload)
    assert base64url.decode(payload) == b"Example of Ed25519 signing"


def test_rfc8037_a4_signature_is_reproduced_by_our_signer():
    # Ed25519 is deterministic: the same key and input give the RFC's exact bytes.
    private = private_key_from_jwk(RFC8037_A4_KEY | {"kid": "rfc8037"})
    header, payload, signature = RFC8037_A4_JWS.split(b".")

    assert base64url.encode(private.sign(header + b"." + payload)) == signature


@pytest.mark.parametrize("alg", ["Ed25519", "ES256"])
def test_our_messages_verify_in_joserfc(alg, example):
    key = generate(alg, f"interop-{alg.lower()}")
    compact = sign_message(example("referral.submit"), key)
    result = jose_jws.deserialize_compact(compact.decode(), _their_key(key), algorithms=[alg])
    assert result.protected == {"alg": alg, "kid": key.kid, "typ": "gba-case+jws"}
    assert json.loads(result.payload) == example("referral.submit")


@pytest.mark.filterwarnings("ignore:EdDSA is deprecated:Warning")
@pytest.mark.parametrize("alg", ["Ed25519", "EdDSA", "ES256"])
def test_joserfc_messages_verify_with_us(alg, example, trust, schemas, test_key):
    kid = "test-mo-message-1" if alg == "ES256" else "test-cn-gd-message-1"
    ours = test_key(kid)
    payload = example("referral.submit")
    if alg == "ES256":
        payload["from"] = "MO"
    compact = jose_jws.serialize_compact(
        {"alg": alg, "kid": kid, "typ": "gba-case+jws"},
        json.dumps(payload).encode(),
        _their_key(ours),
        algorithms=[alg],
    )

    message = verify_message(compact.encode(), trust, schemas, NOW)
    assert message.id == payload["id"] and message.kid == kid


def test_joserfc_reads_our_public_jwks():
    for alg in ("Ed25519", "ES256"):
        key = generate(alg, "jwk-interop")
        theirs = (OKPKey if alg == "Ed25519" else ECKey).import_key(key.public().to_jwk())
        assert theirs.as_dict(private=False)["x"] == key.public().to_jwk()["x"]
        back: PublicKey = public_key_from_jwk({k: v for k, v in theirs.as_dict(private=False).items()} | {"kid": "jwk-interop"})
        assert back.to_jwk()["x"] == key.public().to_jwk()["x"]


def test_parse_compact_splits_what_joserfc_signed():
    key = generate("ES256", "split-check")
    compact = jose_jws.serialize_compact({"alg": "ES256", "kid": "split-check", "typ": "gba-request+jws"}, b"{}", _their_key(key), algorithms=["ES256"])
    parsed = jws.parse_compact(compact, "gba-request+jws")
    assert jws.verify_signature(parsed, key.public()) == b"{}"
