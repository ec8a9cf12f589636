"""`gateway delivery verify`: what a receiver checks on every delivery (docs/protocol.md §9.2)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from gateway.protocol.jws import digest
from gateway.protocol.statements import Attestation, Delivery, LocalView, sign_attestation
from tests.cli_runner import assert_refused, run_cli
from tests.conftest import TEST_KEYS, TRUST_LIST

VECTOR = TEST_KEYS.parent.parent / "conformance" / "vectors" / "valid" / "referral.submit.jws"


def delivery(test_key, example, **changes) -> bytes:
    message = VECTOR.read_bytes().strip()
    payload = example("referral.submit")
    fields = dict(
        message_id=payload["id"], message_digest=digest(message), ledger_index=7,
        accepted_at=datetime(2026, 11, 28, 9, 30, tzinfo=timezone.utc), type="referral.submit",
        sender="CN-GD", receiver="HK", case=payload["case"], local_view_digest=LocalView().digest,
    )
    fields.update(changes)
    attestation = sign_attestation(Attestation(**fields), test_key("test-hub-receipt-1"))
    return Delivery(message, attestation, LocalView()).to_json()


def test_a_matching_delivery_verifies_and_prints_the_message(test_key, example):
    result = run_cli("delivery", "verify", "--trust", str(TRUST_LIST), "-", stdin=delivery(test_key, example))
    assert result.status == 0, result.stderr
    assert '"type": "referral.submit"' in result.stdout


@pytest.mark.parametrize("change", [{"local_view_digest": "0" * 64}, {"case": "01a2217d-75c0-7754-90bd-7b93e6fa7d18"}, {"message_digest": "f" * 64}])
def test_an_attestation_that_does_not_match_the_delivery_is_refused(test_key, example, change):
    result = run_cli("delivery", "verify", "--trust", str(TRUST_LIST), "-", stdin=delivery(test_key, example, **change))
    assert_refused(result, "attestation-mismatch")
