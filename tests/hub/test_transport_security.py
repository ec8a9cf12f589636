"""Mutual TLS (docs/protocol.md §12.8): a client certificate names a jurisdiction, and the signer must be it.

A real hub serves HTTPS on a socket with certificates this test issues itself
(tests/tls.py); clients are `http.client` with their own TLS contexts.
"""

from __future__ import annotations

import dataclasses
import json
import ssl

import pytest

from gateway.hub.transport import certificate_party, client_context, server_context
from gateway.protocol.ids import new_uuid7
from gateway.protocol.message import sign_message
from gateway.protocol.timestamps import format_timestamp, utc_now
from tests.cli_runner import assert_refused
from tests.hub.harness import query, running_hub
from tests.hub.test_delivery_pull import GD, HK, Party
from tests.tls import CertificateAuthority

MO = "test-mo-message-1"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pki")
    authority = CertificateAuthority(folder)
    stranger = CertificateAuthority(folder / "stranger", "Someone else's CA")
    return {
        "ca": authority.certificate,
        "server": authority.server(),
        "CN-GD": authority.client("cn-gd", ["urn:gba:jurisdiction:CN-GD"]),
        "HK": authority.client("hk", ["urn:gba:jurisdiction:HK"]),
        "hub": authority.client("hub", ["urn:gba:hub"]),
        "stranger-HK": stranger.client("stranger-hk", ["urn:gba:jurisdiction:HK"]),
    }


@pytest.fixture
def mtls_hub(database_url, pki):
    context = server_context(pki["server"].certificate, pki["server"].private_key, pki["ca"])
    with running_hub(database_url, server_tls=context, client_certificates=True) as hub:
        yield hub


def as_holder(hub, pki, holder: str | None):
    """The hub as seen by a client presenting `holder`'s certificate (None: no certificate)."""
    credential = pki[holder] if holder else None
    context = client_context(pki["ca"], credential.certificate if credential else None, credential.private_key if credential else None)
    return dataclasses.replace(hub, client_tls=context)


def referral(example, key, sender: str = "CN-GD", receiver: str = "HK") -> bytes:
    payload = dict(example("referral.submit"), id=new_uuid7(), case=new_uuid7(), created=format_timestamp(utc_now()))
    payload.update({"from": sender, "to": receiver})
    return sign_message(payload, key)


def test_a_client_certificate_of_hk_cannot_submit_a_message_signed_by_mo_key(mtls_hub, pki, example, test_key, database_url):
    compact = referral(example, test_key(MO), sender="MO", receiver="CN-GD")
    answer = as_holder(mtls_hub, pki, "HK").post_message(compact)
    assert_refused(answer, "client-certificate-mismatch")
    refusals = [json.loads(row["entry"]) for row in query(database_url, "SELECT entry FROM ledger_entries ORDER BY idx")]
    refused = [entry for entry in refusals if entry.get("code") == "client-certificate-mismatch"]
    assert len(refused) == 1 and refused[0]["kid"] == MO, "the refusal of an authenticated signer is ledgered"


def test_the_signers_own_certificate_submits_and_a_resend_under_another_certificate_is_still_refused(mtls_hub, pki, example, test_key):
    compact = referral(example, test_key(GD))
    assert as_holder(mtls_hub, pki, "CN-GD").post_message(compact).status == 202
    assert_refused(as_holder(mtls_hub, pki, "HK").post_message(compact), "client-certificate-mismatch")


def test_without_a_client_certificate_only_public_resources_answer(mtls_hub, pki, example, test_key):
    anonymous = as_holder(mtls_hub, pki, None)
    assert_refused(anonymous.post_message(referral(example, test_key(GD))), "client-certificate-required")
    assert_refused(Party(anonymous, test_key(HK)).inbox(), "client-certificate-required")
    assert anonymous.request("GET", "/v1/about").status == 200
    assert anonymous.request("GET", "/v1/trust-list").status == 200


def test_the_hubs_own_certificate_does_not_speak_for_a_jurisdiction(mtls_hub, pki, example, test_key):
    assert_refused(as_holder(mtls_hub, pki, "hub").post_message(referral(example, test_key(GD))), "client-certificate-required")


def test_a_request_proof_must_come_from_the_certificates_jurisdiction(mtls_hub, pki, test_key):
    assert_refused(Party(as_holder(mtls_hub, pki, "HK"), test_key(GD)).inbox(), "client-certificate-mismatch")
    answer = Party(as_holder(mtls_hub, pki, "HK"), test_key(HK)).inbox()
    assert answer.status == 200, answer.body


def test_a_certificate_from_another_authority_fails_the_handshake(mtls_hub, pki, example, test_key):
    with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
        as_holder(mtls_hub, pki, "stranger-HK").post_message(referral(example, test_key(GD)))


def test_a_certificate_names_exactly_one_party():
    assert certificate_party({"subjectAltName": (("URI", "urn:gba:jurisdiction:HK"),)}) == "HK"
    assert certificate_party({"subjectAltName": (("URI", "urn:gba:hub"),)}) == "hub"
    assert certificate_party({"subjectAltName": (("DNS", "hk.example"),)}) is None
    two = {"subjectAltName": (("URI", "urn:gba:jurisdiction:HK"), ("URI", "urn:gba:jurisdiction:MO"))}
    assert certificate_party(two) is None, "a certificate naming two jurisdictions speaks for neither"
    assert certificate_party({}) is None and certificate_party(None) is None
