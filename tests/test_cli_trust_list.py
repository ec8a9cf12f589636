"""Trust lists as integrators handle them: bad lists refused with exact codes (§10.1, §10.3)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from gateway.protocol import base64url
from gateway.protocol.errors import ProtocolError
from gateway.protocol.trust import TrustList
from tests.cli_runner import assert_refused, run_cli
from tests.conftest import TEST_KEYS, TRUST_LIST

ORDER_8_POINT = "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"


@pytest.fixture
def document() -> dict:
    return json.loads(TRUST_LIST.read_text("utf-8"))


def verify_with(tmp_path: Path, document: dict):
    trust_file = tmp_path / "trust.json"
    trust_file.write_text(json.dumps(document), "utf-8")
    # Any message will do: the trust list is checked before it.
    return run_cli("message", "verify", "--trust", str(trust_file), "-", stdin=b"x.y.z")


def test_a_jwk_with_a_private_member_is_refused(tmp_path, document):
    private = json.loads((TEST_KEYS / "test-hk-message-1.key.jwk").read_text())
    document["keys"][1]["jwk"] = private
    result = verify_with(tmp_path, document)
    assert_refused(result, "jwk-private-member")
    assert "/keys/1/jwk/d" in result.stderr


@pytest.mark.parametrize("point", [ORDER_8_POINT, "01" + "00" * 31, "ec" + "ff" * 30 + "7f", "00" * 32])
def test_a_small_order_ed25519_key_is_refused(tmp_path, document, point):
    document["keys"][0]["jwk"]["x"] = base64url.encode_str(bytes.fromhex(point))
    assert_refused(verify_with(tmp_path, document), "jwk-small-order")


@pytest.mark.parametrize("change", [
    {"kty": "RSA"},
    {"crv": "Ed448"},
    {"x": "AAAA"},
    {"use": "enc"},
    {"key_ops": ["sign"]},
])
def test_keys_outside_the_jwk_profile_are_invalid(tmp_path, document, change):
    document["keys"][0]["jwk"].update(change)
    assert_refused(verify_with(tmp_path, document), "jwk-invalid")


def test_a_p256_point_off_the_curve_is_invalid(tmp_path, document):
    mo = next(entry for entry in document["keys"] if entry["alg"] == "ES256")
    y = bytearray(base64url.decode(mo["jwk"]["y"]))
    y[-1] ^= 1
    mo["jwk"]["y"] = base64url.encode_str(bytes(y))
    assert_refused(verify_with(tmp_path, document), "jwk-invalid")


@pytest.mark.parametrize("mutate", [
    lambda d: d.pop("sequence"),
    lambda d: d.update(mode="staging"),
    lambda d: d["keys"][0].update(use="encryption"),
    lambda d: d["keys"][0].update(not_after="2036-01-01T00:00:00+08:00"),
    lambda d: d["keys"][0].update(status="revoked"),
    lambda d: d["keys"][0].update(owner="TW"),
    lambda d: d["keys"][0]["jwk"].update(kid="another"),
    lambda d: d.update(mode="production"),
    lambda d: d["keys"][0].update(not_after="2036-01-01T00:00:00Z\n"),
    lambda d: d["keys"][0].update(not_before="0000-01-01T00:00:00Z"),
    lambda d: d["keys"][0].update(owner="HK\n"),
    lambda d: d["keys"][0].update(use="receipt"),  # a jurisdiction's key for hub statements
    lambda d: d["keys"][3].update(use="message"),  # a hub key for messages
    lambda d: d["keys"][0].update(use="witness", alg="ES256"),
    lambda d: d["keys"][0].update(not_after=d["keys"][0]["not_before"]),
    lambda d: d["keys"].append(dict(d["keys"][0], kid="same-key-again", jwk=dict(d["keys"][0]["jwk"], kid="same-key-again"))),
])
def test_a_list_outside_its_format_is_invalid(tmp_path, document, mutate):
    mutate(document)
    assert_refused(verify_with(tmp_path, document), "trust-list-invalid")


def test_the_test_keys_are_refused_by_a_production_consumer(document):
    with pytest.raises(ProtocolError) as refused:
        TrustList.from_document(document, require_production=True)
    assert refused.value.code == "trust-list-invalid" and refused.value.where == "/mode"


def test_a_fault_inside_a_jurisdiction_entry_is_located_without_echoing_its_code(tmp_path, document):
    document["jurisdictions"]["SECRET-XYZ"] = {"name": {}}
    result = verify_with(tmp_path, document)
    assert_refused(result, "trust-list-invalid")
    assert "at /jurisdictions:" in result.stderr and "SECRET" not in result.stderr


def _signed_list(tmp_path: Path, document: dict) -> bytes:
    source = tmp_path / "new.json"
    source.write_text(json.dumps(document), "utf-8")
    signed = run_cli("trust-list", "sign", "--key", str(TEST_KEYS / "test-hub-receipt-1.key.jwk"), str(source))
    assert signed.status == 0, signed.stderr
    return signed.stdout.encode()


def _verify_against(tmp_path: Path, anchor: dict, compact: bytes):
    anchor_file = tmp_path / "anchor.json"
    anchor_file.write_text(json.dumps(anchor), "utf-8")
    return run_cli("trust-list", "verify", "--anchor", str(anchor_file), "--at", "2026-11-28T12:00:00Z", "-", stdin=compact)


def test_a_newer_signed_list_replaces_the_held_one(tmp_path, document):
    newer = dict(document, sequence=2)
    assert _verify_against(tmp_path, document, _signed_list(tmp_path, newer)).status == 0


def test_a_signed_list_cannot_roll_back(tmp_path, document):
    held = dict(document, sequence=5)
    result = _verify_against(tmp_path, held, _signed_list(tmp_path, dict(document, sequence=4)))
    assert_refused(result, "trust-list-invalid")
    assert "at /sequence" in result.stderr


def test_the_same_sequence_with_other_contents_is_refused(tmp_path, document):
    changed = dict(document, issued="2026-11-29T00:00:00Z")
    assert_refused(_verify_against(tmp_path, document, _signed_list(tmp_path, changed)), "trust-list-invalid")


def test_a_kid_used_twice_is_refused_even_across_jurisdictions(tmp_path, document):
    twin = copy.deepcopy(document["keys"][0])
    twin["owner"] = "HK"
    document["keys"].append(twin)
    assert_refused(verify_with(tmp_path, document), "kid-duplicate")


def test_signed_trust_list_round_trip(tmp_path):
    signed = run_cli("trust-list", "sign", "--key", str(TEST_KEYS / "test-hub-receipt-1.key.jwk"), str(TRUST_LIST))
    assert signed.status == 0, signed.stderr
    checked = run_cli("trust-list", "verify", "--anchor", str(TRUST_LIST), "--at", "2026-11-28T12:00:00Z", "-",
                      stdin=signed.stdout.encode())
    assert checked.status == 0, checked.stderr
    assert json.loads(checked.stdout) == json.loads(TRUST_LIST.read_text("utf-8"))


def test_another_key_under_the_hub_receipt_kid_cannot_sign_the_list(tmp_path):
    """The list names its signer's public key: a key that only borrows the kid signs a list no consumer accepts."""
    made = run_cli("keys", "generate", "--jurisdiction", "hub", "--use", "receipt", "--alg", "ES256", "--out", str(tmp_path),
                   "--kid", "test-hub-receipt-1")
    assert made.status == 0, made.stderr
    (key,) = tmp_path.glob("*.key.jwk")
    refused = run_cli("trust-list", "sign", "--key", str(key), str(TRUST_LIST))
    assert refused.status == 1 and refused.stdout == "" and "not the one the trust list holds as test-hub-receipt-1" in refused.stderr


def test_shipped_signed_trust_list_verifies_and_a_message_key_cannot_sign_one():
    shipped = (TEST_KEYS / "trust-list.jws").read_bytes()
    ok = run_cli("trust-list", "verify", "--anchor", str(TRUST_LIST), "--at", "2026-11-28T12:00:00Z", "-", stdin=shipped)
    assert ok.status == 0, ok.stderr
    refused = run_cli("trust-list", "sign", "--key", str(TEST_KEYS / "test-hk-message-1.key.jwk"), str(TRUST_LIST))
    assert refused.status == 1 and "as a key of HK for use 'message', not as the hub's receipt key" in refused.stderr


def test_keys_generate_writes_a_private_key_for_its_owner_only(tmp_path):
    result = run_cli("keys", "generate", "--jurisdiction", "HK", "--use", "witness", "--out", str(tmp_path), "--kid", "hk-witness-x")
    assert result.status == 0, result.stderr
    entry = json.loads(result.stdout)
    assert entry["owner"] == "HK" and entry["use"] == "witness" and entry["kid"] == "hk-witness-x"
    private = tmp_path / "hk-witness-x.key.jwk"
    assert private.stat().st_mode & 0o777 == 0o600
    assert "d" in json.loads(private.read_text()) and "d" not in json.loads((tmp_path / "hk-witness-x.pub.jwk").read_text())
    again = run_cli("keys", "generate", "--jurisdiction", "HK", "--use", "witness", "--out", str(tmp_path), "--kid", "hk-witness-x")
    assert again.status == 1 and "never overwritten" in again.stderr


@pytest.mark.parametrize(("owner", "use", "alg"), [
    ("HK", "receipt", "Ed25519"),
    ("hub", "message", "Ed25519"),
    ("MO", "witness", "ES256"),
    ("hub", "checkpoint", "ES256"),
])
def test_keys_generate_refuses_what_a_trust_list_would_refuse(tmp_path, owner, use, alg):
    result = run_cli("keys", "generate", "--jurisdiction", owner, "--use", use, "--alg", alg, "--out", str(tmp_path))
    assert result.status == 1 and "PROTO-10.2" in result.stderr
    assert not list(tmp_path.iterdir())


def test_keys_generate_refuses_an_owner_that_is_not_a_code(tmp_path):
    result = run_cli("keys", "generate", "--jurisdiction", "Hong Kong", "--use", "message", "--out", str(tmp_path))
    assert result.status == 1 and "--jurisdiction" in result.stderr


def test_keys_generate_refuses_a_use_outside_the_four():
    result = run_cli("keys", "generate", "--jurisdiction", "HK", "--use", "encryption", "--out", "x")
    assert result.status == 2
