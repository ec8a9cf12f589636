"""Trust lists between consumers: production consumers stay production (PROTO-10.5-2)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from gateway.protocol import jws, strict_json
from gateway.protocol.errors import ProtocolError
from gateway.protocol.keys import generate
from gateway.protocol.trust import KeyRecord, TrustList, sign_trust_list, verify_signed_trust_list

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc)
HUB_KEY = generate("Ed25519", "prod-hub-receipt-1")
HK_KEY = generate("Ed25519", "prod-hk-message-1")


def _list(mode: str, sequence: int) -> TrustList:
    records = [
        KeyRecord(key.kid, owner, use, key.public(), NOW - timedelta(days=1), NOW + timedelta(days=30), None, mode == "test")
        for owner, use, key in (("hub", "receipt", HUB_KEY), ("HK", "message", HK_KEY))
    ]
    return TrustList.from_document({
        "v": 1, "issued": "2026-11-28T00:00:00Z", "sequence": sequence, "mode": mode,
        "jurisdictions": {"HK": {"name": {"en": "HK"}}, "MO": {"name": {"en": "MO"}}},
        "keys": [record.to_document() for record in records],
    })


def test_a_production_consumer_refuses_a_test_mode_list_even_when_well_signed():
    with pytest.raises(ProtocolError) as refused:
        verify_signed_trust_list(sign_trust_list(_list("test", 2), HUB_KEY), _list("production", 1), NOW)
    assert refused.value.code == "trust-list-invalid" and refused.value.where == "/mode"


def test_a_production_consumer_takes_the_next_production_list():
    newer = verify_signed_trust_list(sign_trust_list(_list("production", 2), HUB_KEY), _list("production", 1), NOW)
    assert newer.sequence == 2 and newer.mode == "production"


def test_a_message_key_cannot_sign_a_trust_list():
    forged = jws.sign_compact(strict_json.dumps(_list("production", 2).to_document()), HK_KEY, "gba-trust-list+jws")
    with pytest.raises(ProtocolError) as refused:
        verify_signed_trust_list(forged, _list("production", 1), NOW)
    assert refused.value.code == "key-use-mismatch"
