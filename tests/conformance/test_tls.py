"""The suite over HTTPS with mutual TLS (--tls-ca, --tls-cert, --tls-key): cases run; a TLS fault is a set-up error."""

from __future__ import annotations

import pytest

from gateway.hub.transport import server_context
from tests.conformance.suite import run_suite
from tests.hub.harness import running_hub
from tests.tls import CertificateAuthority

CASES = ("--case", "hub-ingress-001", "--case", "hub-ingress-004", "--case", "hub-flow-007", "--case", "hub-flow-033")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    authority = CertificateAuthority(tmp_path_factory.mktemp("pki"))
    return {"ca": authority.certificate, "server": authority.server(), "CN-GD": authority.client("cn-gd", ["urn:gba:jurisdiction:CN-GD"])}


@pytest.fixture
def mtls_hub(database_url, pki):
    with running_hub(database_url, server_tls=server_context(pki["server"].certificate, pki["server"].private_key, pki["ca"]),
                     client_certificates=True) as hub:
        yield hub


def test_cases_run_against_a_hub_with_mutual_tls_and_those_speaking_for_others_skip(mtls_hub, pki, tmp_path):
    assert mtls_hub.base_url.startswith("https://")
    client = pki["CN-GD"]
    result, report = run_suite(mtls_hub.base_url, tmp_path, "--tls-ca", str(pki["ca"]), "--tls-cert", str(client.certificate),
                               "--tls-key", str(client.private_key), *CASES)
    assert result.status == 0, result.stdout + result.stderr
    assert report["counts"] == {"pass": 3, "fail": 0, "skip": 1, "error": 0}
    (skipped,) = [r for r in report["results"] if r["verdict"] == "skip"]
    assert skipped["case"] == "hub-flow-007" and "client certificate names only yours" in skipped["reason"]


def test_a_hub_certificate_the_suite_cannot_verify_is_a_set_up_error(mtls_hub, tmp_path):
    result, report = run_suite(mtls_hub.base_url, tmp_path, *CASES)
    assert result.status == 2 and "preflight: TLS" in result.stderr and report is None


def test_a_client_key_without_its_certificate_is_a_usage_error(pki, tmp_path):
    result, report = run_suite("https://127.0.0.1:9", tmp_path, "--tls-key", str(pki["CN-GD"].private_key), *CASES)
    assert result.status == 2 and "--tls-key needs --tls-cert" in result.stderr and report is None
