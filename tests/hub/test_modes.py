"""A hub in production mode refuses every key marked as a test key (docs/protocol.md §10.5)."""

from __future__ import annotations

import pytest

from gateway.hub.http import HubStartError
from gateway.protocol.errors import ProtocolError
from tests.hub.harness import query, running_hub


def test_production_refuses_to_import_a_trust_list_of_test_keys(database_url):
    with pytest.raises(ProtocolError) as refused:
        with running_hub(database_url, mode="production"):
            pass
    assert refused.value.code == "trust-list-invalid"


def test_production_refuses_to_serve_a_registry_holding_test_keys(database_url):
    with running_hub(database_url) as hub:  # test mode registers the published test keys
        assert hub.request("GET", "/v1/about").json()["mode"] == "test"
    with pytest.raises(HubStartError, match="a test registry, and this is a production gateway"):
        with running_hub(database_url, mode="production"):
            pass
    # A database from before the registry recorded its mode: the registry itself is refused, and the failed
    # start leaves no mode behind, so the test hub it belongs to still starts.
    query(database_url, "UPDATE registry_version SET mode = NULL")
    with pytest.raises(ProtocolError) as refused:
        with running_hub(database_url, mode="production"):
            pass
    assert refused.value.code == "trust-list-invalid"
    assert query(database_url, "SELECT mode FROM registry_version")[0]["mode"] is None
    with running_hub(database_url) as hub:
        assert hub.request("GET", "/v1/about").json()["mode"] == "test"
    assert query(database_url, "SELECT mode FROM registry_version")[0]["mode"] == "test"
