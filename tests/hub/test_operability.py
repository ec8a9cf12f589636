"""What operators see: metrics from the database, health, and bounded security logging."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from structlog.testing import capture_logs

from gateway.hub.acceptance import SecurityLog
from gateway.protocol import jws, strict_json
from gateway.protocol.ids import new_uuid7
from gateway.protocol.message import sign_message
from gateway.protocol.request_proof import make_request_proof
from gateway.protocol.timestamps import format_timestamp, utc_now
from gateway.protocol.trust import TrustList
from tests.cli_runner import assert_refused
from tests.hub.harness import running_hub


def test_metrics_report_acceptances_refusals_and_shared_figures(database_url, example, test_key):
    payload = dict(example("referral.submit"), id=new_uuid7(), case=new_uuid7(), created=format_timestamp(utc_now().replace(microsecond=0)))
    with running_hub(database_url) as hub:
        assert hub.post_message(sign_message(payload, test_key("test-cn-gd-message-1"))).status == 202
        hub.post_message(b"not.a.jws")
        text = hub.request("GET", "/metrics").body.decode()
        health, ready = hub.request("GET", "/healthz"), hub.request("GET", "/readyz")
    assert 'gateway_messages_accepted_total{kind="new"} 1' in text
    assert 'gateway_refusals_total{code="jws-base64url-invalid"} 1' in text
    assert "gateway_messages_stored 1" in text and "gateway_outbox_depth 1" in text
    assert 'gateway_key_expiry_seconds{kid="test-hub-receipt-1",owner="hub",use="receipt"}' in text
    assert health.status == ready.status == 200


def test_a_request_proof_used_on_one_process_is_refused_by_another(database_url, example, test_key):
    payload = dict(example("referral.submit"), id=new_uuid7(), case=new_uuid7(), created=format_timestamp(utc_now().replace(microsecond=0)))
    with running_hub(database_url) as hub_a, running_hub(database_url) as hub_b:
        assert hub_a.post_message(sign_message(payload, test_key("test-cn-gd-message-1"))).status == 202
        path = f"/v1/messages/{payload['id']}"
        proof = make_request_proof(test_key("test-cn-gd-message-1"), "GET", hub_a.settings.public_base_url + path, None, utc_now())
        assert hub_a.request("GET", path, headers={"GBA-Request-Proof": proof.decode()}).status == 200
        assert_refused(hub_b.request("GET", path, headers={"GBA-Request-Proof": proof.decode()}), "request-proof-replayed")


def test_the_security_log_writes_a_bounded_number_of_lines_a_minute():
    now = [datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc)]
    log = SecurityLog(lambda: now[0], per_minute=5)
    with capture_logs() as lines:
        for _ in range(1000):
            log.refused("signature-invalid")
        now[0] += timedelta(minutes=1)
        log.refused("jws-malformed")
    events = [line["event"] for line in lines]
    assert events.count("unauthenticated_refusal") == 6
    assert {"event": "unauthenticated_refusals_suppressed", "count": 995, "log_level": "warning"} in lines


def test_the_hub_publishes_its_registry_as_a_signed_trust_list(database_url, trust):
    with running_hub(database_url) as hub:
        answer = hub.request("GET", "/v1/trust-list")
    assert answer.status == 200 and answer.headers["content-type"].startswith("application/jose")
    parsed = jws.parse_compact(answer.body, "gba-trust-list+jws")
    payload = jws.verify_signature(parsed, trust.keys["test-hub-receipt-1"].public)
    published = TrustList.from_document(strict_json.loads(payload))
    assert set(published.keys) == set(trust.keys) and published.jurisdictions == trust.jurisdictions
