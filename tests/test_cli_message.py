"""`gateway message sign|verify` as an integrator uses them: every refusal has its exact code.

These tests are the public-interface evidence for the error catalogue
(tests/test_catalogue.py): each `assert_refused` names the code the CLI must print.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.protocol import base64url
from tests.cli_runner import assert_refused, run_cli
from tests.conftest import NOW, TEST_KEYS, TRUST_LIST
from tests.jws_forge import forge, message_header

AT = NOW.strftime("%Y-%m-%dT%H:%M:%SZ")
GD = "test-cn-gd-message-1"
HK = "test-hk-message-1"
MO = "test-mo-message-1"


def verify(compact: bytes, *options: str):
    return run_cli("message", "verify", "--trust", str(TRUST_LIST), "--at", AT, *options, "-", stdin=compact)


@pytest.fixture
def referral(example):
    return example("referral.submit")


@pytest.fixture
def signed(referral, test_key):
    def sign(payload=None, kid=GD) -> bytes:
        return forge(message_header(test_key(kid)), payload if payload is not None else referral, test_key(kid))

    return sign


def test_sign_then_verify_prints_the_payload(tmp_path: Path, referral):
    payload_file = tmp_path / "referral.json"
    payload_file.write_text(json.dumps(referral), "utf-8")
    signed = run_cli("message", "sign", "--key", str(TEST_KEYS / f"{GD}.key.jwk"), "--kid", GD, str(payload_file))
    assert signed.status == 0, signed.stderr
    verified = verify(signed.stdout.encode())
    assert verified.status == 0, verified.stderr
    assert json.loads(verified.stdout) == referral


def test_sign_reads_stdin_and_an_es256_key(referral):
    signed = run_cli("message", "sign", "--key", str(TEST_KEYS / f"{MO}.key.jwk"), "--kid", MO, "-",
                     stdin=json.dumps(dict(referral, **{"from": "MO"})).encode())
    assert signed.status == 0, signed.stderr
    assert verify(signed.stdout.encode()).status == 0


def test_sign_refuses_a_kid_that_is_not_the_keys(tmp_path: Path, referral):
    result = run_cli("message", "sign", "--key", str(TEST_KEYS / f"{GD}.key.jwk"), "--kid", HK, "-",
                     stdin=json.dumps(referral).encode())
    assert result.status == 1 and "is not the kid of" in result.stderr


def test_problem_json_is_an_rfc9457_problem_without_input_values(signed):
    compact = signed()
    header, payload, signature = compact.split(b".")
    result = verify(b".".join((header, base64url.encode(b'{"secret":"\\u0000 Chan Tai Man"}'), signature)), "--problem-json")
    problem = json.loads(result.stderr)
    assert problem["code"] == "signature-invalid"
    assert problem["type"] == "tag:gba-case-gateway,2026:problem:signature-invalid"
    assert problem["status"] == 401 and problem["requirement"] == "PROTO-3.5-1"
    assert "Chan" not in result.stderr


# --- size and JWS structure (§3.1, §4.5) -------------------------------------------

def test_oversize_message_is_refused(signed):
    assert_refused(verify(b"e" * 262_145), "message-too-large")


@pytest.mark.parametrize("text", [b"abc", b"a.b", b"a..c", b"a.b.c.d"])
def test_not_three_segments_is_malformed(text):
    assert_refused(verify(text), "jws-malformed")


def test_non_canonical_last_signature_character_is_refused(signed):
    compact = signed()
    signature = compact.rsplit(b".", 1)[1]
    assert len(signature) == 86
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    index = alphabet.index(signature[-1:])
    for flipped in (index ^ 1, index ^ 2, index ^ 4, index ^ 8):
        assert_refused(verify(compact[:-1] + alphabet[flipped:flipped + 1]), "jws-base64url-invalid")


@pytest.mark.parametrize("segment", [0, 1, 2])
def test_padding_or_foreign_alphabet_is_refused(signed, segment):
    parts = signed().split(b".")
    for bad in (parts[segment] + b"=", parts[segment].replace(parts[segment][:1], b"+", 1)):
        changed = list(parts)
        changed[segment] = bad
        assert_refused(verify(b".".join(changed)), "jws-base64url-invalid")


def test_a_non_ascii_character_is_outside_the_alphabet():
    result = verify("é.b.c".encode())
    assert_refused(result, "jws-base64url-invalid")
    assert "at header" in result.stderr


def test_every_segment_is_decoded_before_the_header_is_read(referral, test_key):
    # alg "none" would be alg-refused, but the padded payload segment comes first (PROTO-3.5-2).
    header, payload, signature = forge(message_header(test_key(GD), alg="none"), referral, test_key(GD)).split(b".")
    result = verify(b".".join((header, payload + b"=", signature)))
    assert_refused(result, "jws-base64url-invalid")
    assert "at payload" in result.stderr


def test_an_oversized_header_is_refused_before_it_is_decoded(referral, test_key):
    header = b'{"alg":"Ed25519","kid":"%s","typ":"gba-case+jws"' % GD.encode() + b" " * 800 + b"}"
    result = verify(forge(header, referral, test_key(GD)))
    assert_refused(result, "header-invalid")
    assert "at header" in result.stderr


def test_a_malformed_time_option_is_a_usage_error(signed):
    result = run_cli("message", "verify", "--trust", str(TRUST_LIST), "--at", "2026-11-28T12:00:00+08:00", "-", stdin=signed())
    assert result.status == 2 and "is not a UTC timestamp" in result.stderr


# --- header (§3.2-§3.4) ------------------------------------------------------------

@pytest.mark.parametrize("alg", ["none", "HS256", "RS256", "ES384", "Ed448", "ed25519"])
def test_algorithms_outside_the_profile_are_refused(referral, test_key, alg):
    assert_refused(verify(forge(message_header(test_key(GD), alg=alg), referral, test_key(GD))), "alg-refused")


def test_an_algorithm_not_bound_to_the_key_is_refused(referral, test_key):
    assert_refused(verify(forge(message_header(test_key(GD), alg="ES256"), referral, test_key(GD))), "key-alg-mismatch")
    assert_refused(verify(forge(message_header(test_key(MO), alg="Ed25519"), referral, test_key(MO))), "key-alg-mismatch")


def test_legacy_eddsa_name_is_accepted_for_an_ed25519_key(referral, test_key):
    assert verify(forge(message_header(test_key(GD), alg="EdDSA"), referral, test_key(GD))).status == 0


@pytest.mark.parametrize("name", ["crit", "b64", "jwk", "jku", "x5u", "x5c", "cty", "zip"])
def test_header_parameters_outside_the_profile_are_refused(referral, test_key, name):
    header = message_header(test_key(GD), **{name: ["alg"] if name == "crit" else "x"})
    assert_refused(verify(forge(header, referral, test_key(GD))), "header-parameter-refused")


@pytest.mark.parametrize("header", [
    {"alg": "Ed25519", "kid": GD},
    {"alg": "Ed25519", "typ": "gba-case+jws"},
    {"kid": GD, "typ": "gba-case+jws"},
    {"alg": "Ed25519", "kid": 7, "typ": "gba-case+jws"},
    {"alg": "Ed25519", "kid": "has space", "typ": "gba-case+jws"},
    ["alg", "Ed25519"],
])
def test_incomplete_or_ill_typed_header_is_invalid(referral, test_key, header):
    assert_refused(verify(forge(header, referral, test_key(GD))), "header-invalid")


def test_duplicate_header_member_is_refused(referral, test_key):
    header = b'{"alg":"Ed25519","kid":"%s","typ":"gba-case+jws","alg":"none"}' % GD.encode()
    assert_refused(verify(forge(header, referral, test_key(GD))), "json-duplicate-key")


@pytest.mark.parametrize("typ", ["gba-receipt+jws", "JWT", "gba-case+JWS"])
def test_other_typ_is_unexpected(referral, test_key, typ):
    assert_refused(verify(forge(message_header(test_key(GD), typ=typ), referral, test_key(GD))), "typ-unexpected")


def test_changed_payload_breaks_the_signature(signed):
    header, payload, signature = signed().split(b".")
    changed = base64url.decode(payload).replace(b'"HK"', b'"MO"')
    assert_refused(verify(b".".join((header, base64url.encode(changed), signature))), "signature-invalid")


# --- keys (§10) ------------------------------------------------------------------

def test_unknown_kid_is_refused(referral, test_key):
    assert_refused(verify(forge(message_header(test_key(GD), kid="nobody-1"), referral, test_key(GD))), "key-unknown")


def test_a_hub_receipt_key_cannot_sign_a_message(referral, signed):
    assert_refused(verify(signed(kid="test-hub-receipt-1")), "key-use-mismatch")


def test_revoked_key_is_refused(referral, signed):
    assert_refused(verify(signed(dict(referral, **{"from": "HK", "to": "CN-GD"}), kid="test-hk-message-revoked")), "key-revoked")


def test_revoked_key_still_verifies_what_it_signed_before_revocation(referral, signed):
    compact = signed(dict(referral, **{"from": "HK", "to": "CN-GD"}), kid="test-hk-message-revoked")
    result = run_cli("message", "verify", "--trust", str(TRUST_LIST), "--at", "2025-12-31T23:59:59Z", "-", stdin=compact)
    assert result.status == 0, result.stderr


def test_expired_key_is_refused(referral, signed):
    assert_refused(verify(signed(dict(referral, **{"from": "MO"}), kid="test-mo-message-expired")), "key-expired")


def test_key_before_its_validity_is_refused(signed):
    assert_refused(verify(signed(kid="test-cn-gd-message-future")), "key-not-yet-valid")


# --- payload JSON (§4), after a valid signature -----------------------------------

@pytest.mark.parametrize(("payload", "code"), [
    (b'{"v":1,"v":1}', "json-duplicate-key"),
    (b'{"v":1e400}', "json-number-out-of-range"),
    (b'{"v":"\\ud800"}', "json-lone-surrogate"),
    (b'{"v":"a\\u0000b"}', "json-nul-character"),
    (b'{"v":' + b"9" * 5000 + b"}", "json-integer-too-large"),
    (b'{"v":9007199254740993}', "json-integer-too-large"),
    (b'{"v":NaN}', "json-non-finite-number"),
    (b'{"v":-Infinity}', "json-non-finite-number"),
    (b'{"v":' + b"[" * 40 + b"]" * 40 + b"}", "json-too-deep"),
    (b'{"v":' + b"[" * 90_000 + b"]" * 90_000 + b"}", "json-too-deep"),  # deeper than Python's recursion limit
    (b'{"v":"\xff"}', "json-invalid-utf8"),
    (b'\xef\xbb\xbf{"v":1}', "json-invalid-utf8"),
    (b'{"v":1', "json-syntax"),
    (b"{'v':1}", "json-syntax"),
])
def test_payload_outside_i_json_is_refused_with_its_own_code(test_key, payload, code):
    assert_refused(verify(forge(message_header(test_key(GD)), payload, test_key(GD))), code)


# --- envelope (§5) and jurisdictions (§2) -----------------------------------------

def test_schema_violation_names_the_field(referral, signed):
    result = verify(signed(dict(referral, created="2026-11-28T09:30:00+08:00")))
    assert_refused(result, "schema-violation")
    assert "at /created" in result.stderr and "+08:00" not in result.stderr


def test_repeated_member_refs_are_a_schema_violation(referral, signed):
    members = referral["body"]["household"]["members"]
    members[1]["ref"] = members[0]["ref"]
    result = verify(signed(referral))
    assert_refused(result, "schema-violation")
    assert "at /body/household/members:" in result.stderr


def test_repeated_refs_in_a_verification_request_are_refused(example, signed):
    request = example("verification.request")
    request["body"]["members"].append(dict(request["body"]["members"][0]))
    result = verify(signed(request))
    assert_refused(result, "schema-violation")
    assert "at /body/members:" in result.stderr


def test_a_receipt_must_reply_to_the_message_it_names(example, test_key):
    receipt = example("receipt")
    receipt["body"]["message_id"] = receipt["id"]
    result = verify(forge(message_header(test_key(HK)), receipt, test_key(HK)))
    assert_refused(result, "schema-violation")
    assert "at /body/message_id" in result.stderr


def test_payload_that_is_not_an_object_violates_the_schema(signed):
    assert_refused(verify(signed([1, 2, 3])), "schema-violation")


def test_unknown_type_is_refused(referral, signed):
    assert_refused(verify(signed(dict(referral, type="referral.approve"))), "type-unknown")


def test_other_protocol_version_is_refused(referral, signed):
    assert_refused(verify(signed(dict(referral, v=2))), "version-unsupported")


def test_from_must_be_the_signers_jurisdiction(referral, signed):
    assert_refused(verify(signed(kid=HK)), "sender-mismatch")


def test_unregistered_receiver_is_refused(referral, signed):
    assert_refused(verify(signed(dict(referral, to="TW"))), "jurisdiction-unknown")


def test_message_to_oneself_is_refused(referral, signed):
    assert_refused(verify(signed(dict(referral, to="CN-GD"))), "self-addressed")
