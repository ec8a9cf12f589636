"""The §12.8 cases (conformance/cases/hub-transport.json) against hubs set up as their profiles say: mutual TLS, a
small per-jurisdiction burst that does not refill during the test, a short body deadline; and skipped, with the
reason, against a hub without that set-up."""

from __future__ import annotations

import pytest

from gateway.conformance.cases import load_cases
from gateway.hub.limits import CallerLimit
from gateway.hub.transport import server_context
from tests.conformance.suite import run_suite
from tests.hub.harness import running_hub
from tests.tls import CertificateAuthority

FROZEN = 1e-6
"""A refill rate (tokens a second) that no test outlives: the burst is all the budget there is."""
BURST = 2
BODY_SECONDS = 1.0
TRANSPORT = {case.id: case for case in load_cases("hub") if case.id.startswith("hub-transport-")}
MUTUAL_TLS = sorted(case.id for case in load_cases("hub") if case.profile == "mutual-tls")
"""Every case that needs mutual TLS, of §12.8 or not (hub-bulk-006: a bulk line signed by another jurisdiction)."""


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    authority = CertificateAuthority(tmp_path_factory.mktemp("pki"))
    return {"ca": authority.certificate, "server": authority.server(), "CN-GD": authority.client("cn-gd", ["urn:gba:jurisdiction:CN-GD"])}


def _hub(database_url, pki):
    return running_hub(database_url, server_tls=server_context(pki["server"].certificate, pki["server"].private_key, pki["ca"]),
                       client_certificates=True, caller_limit=CallerLimit(rate_per_second=FROZEN, burst=BURST, in_flight=10),
                       body_read_seconds=BODY_SECONDS)


def _tls(pki) -> tuple[str, ...]:
    client = pki["CN-GD"]
    return "--tls-ca", str(pki["ca"]), "--tls-cert", str(client.certificate), "--tls-key", str(client.private_key)


def test_every_transport_case_passes_against_a_hub_set_up_as_its_profile_says(database_url, pki, tmp_path):
    # The rate-limit case spends the whole burst, so it runs on a hub of its own; so do the other families' mutual-TLS
    # cases, whose lines would spend the burst of the §12.8 cases.
    others = [case for case in TRANSPORT if TRANSPORT[case].profile != "rate-limit"]
    elsewhere = [case for case in MUTUAL_TLS if case not in TRANSPORT]
    assert elsewhere == ["hub-bulk-006"]
    for name, cases in (("others", others), ("elsewhere", elsewhere)):
        with _hub(database_url, pki) as hub:
            result, report = run_suite(hub.base_url, tmp_path / name, *_tls(pki), "--body-deadline", str(BODY_SECONDS),
                                       *(argument for case in cases for argument in ("--case", case)))
        assert result.status == 0, result.stdout + result.stderr
        assert report["counts"] == {"pass": len(cases), "fail": 0, "skip": 0, "error": 0}
    with _hub(database_url, pki) as hub:
        result, report = run_suite(hub.base_url, tmp_path / "limits", *_tls(pki), "--rate-burst", str(BURST), "-k", "rate-limited")
    assert result.status == 0, result.stdout + result.stderr
    assert report["counts"] == {"pass": 1, "fail": 0, "skip": 0, "error": 0}


def test_against_a_hub_without_those_set_ups_the_profile_cases_skip_with_their_reasons(database_url, tmp_path):
    with running_hub(database_url) as hub:
        result, report = run_suite(hub.base_url, tmp_path, "-k", "hub-transport-*")
    assert result.status == 0, result.stdout + result.stderr
    reasons = {r["case"]: r["reason"] for r in report["results"] if r["verdict"] == "skip"}
    assert set(reasons) == {case for case in TRANSPORT if TRANSPORT[case].profile}
    assert all("--tls-cert" in reasons[case] for case in TRANSPORT if TRANSPORT[case].profile == "mutual-tls")
    assert "--rate-burst" in reasons["hub-transport-007"] and "--body-deadline" in reasons["hub-transport-006"]


def test_a_hub_that_takes_a_message_past_the_declared_burst_fails_the_rate_limit_case(database_url, pki, tmp_path):
    # Declared smaller than the hub's burst: to the suite the hub takes one message more than its bound allows.
    with _hub(database_url, pki) as hub:
        result, report = run_suite(hub.base_url, tmp_path, *_tls(pki), "--rate-burst", str(BURST - 1), "-k", "rate-limited")
    assert result.status == 1
    (failed,) = report["results"]
    assert failed["verdict"] == "fail" and failed["reason"].startswith("step 3: status: expected 429, got 202")


def test_a_hub_that_asks_for_certificates_but_ignores_them_fails_exactly_the_cases_of_what_it_ignores(database_url, pki, tmp_path):
    ignoring = server_context(pki["server"].certificate, pki["server"].private_key, pki["ca"])
    with running_hub(database_url, server_tls=ignoring, client_certificates=False) as hub:
        result, report = run_suite(hub.base_url, tmp_path, *_tls(pki), "-k", "mutual-tls")
    assert result.status == 1
    failed = {r["case"] for r in report["results"] if r["verdict"] == "fail"}
    assert failed == {"hub-transport-002", "hub-transport-003", "hub-transport-004", "hub-bulk-006"}, result.stdout
