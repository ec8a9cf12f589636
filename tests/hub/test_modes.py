"""A hub in production mode refuses every key marked as a test key (docs/protocol.md §10.5)."""

from __future__ import annotations

import pytest

from gateway.protocol.errors import ProtocolError
from tests.hub.harness import running_hub


def test_production_refuses_to_import_a_trust_list_of_test_keys(database_url):
    with pytest.raises(ProtocolError) as refused:
        with running_hub(database_url, mode="production"):
            pass
    assert refused.value.code == "trust-list-invalid"


def test_production_refuses_to_serve_a_registry_holding_test_keys(database_url):
    with running_hub(database_url) as hub:  # test mode registers the published test keys
        assert hub.request("GET", "/v1/about").json()["mode"] == "test"
    with pytest.raises(ProtocolError) as refused:
        with running_hub(database_url, mode="production"):
            pass
    assert refused.value.code == "trust-list-invalid"
