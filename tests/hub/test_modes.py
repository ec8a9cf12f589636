"""A hub in production mode refuses every key marked as a test key (docs/protocol.md §10.5), and a database keeps
the mode its registry was first used in (docs/operations.md, "The registry's mode")."""

from __future__ import annotations

import pytest

from gateway.contract import contract_dir
from gateway.hub.http import HubStartError
from gateway.protocol.errors import ProtocolError
from tests.hub.harness import query, running_hub


def test_production_refuses_to_import_a_trust_list_of_test_keys(database_url):
    with pytest.raises(HubStartError, match=r"refused as a production trust list: trust-list-invalid") as refused:
        with running_hub(database_url, mode="production"):
            pass
    assert isinstance(refused.value.__cause__, ProtocolError) and refused.value.__cause__.code == "trust-list-invalid"
    assert query(database_url, "SELECT count(*) AS n FROM keys")[0]["n"] == 0
    assert query(database_url, "SELECT mode FROM registry_version")[0]["mode"] is None, "a failed start records nothing"


def test_production_refuses_to_serve_a_registry_holding_test_keys(database_url):
    with running_hub(database_url) as hub:  # test mode registers the published test keys
        assert hub.request("GET", "/v1/about").json()["mode"] == "test"
    assert query(database_url, "SELECT mode FROM registry_version")[0]["mode"] == "test"
    with pytest.raises(HubStartError, match="a test registry, and this is a production gateway"):
        with running_hub(database_url, mode="production"):
            pass
    # A database from before the registry recorded its mode: its test keys say which it is.
    query(database_url, "UPDATE registry_version SET mode = NULL")
    with pytest.raises(HubStartError, match="holds test keys, so it is a test registry"):
        with running_hub(database_url, mode="production"):
            pass
    assert query(database_url, "SELECT mode FROM registry_version")[0]["mode"] is None, "a failed start records nothing"
    with running_hub(database_url) as hub:
        assert hub.request("GET", "/v1/about").json()["mode"] == "test"
    assert query(database_url, "SELECT mode FROM registry_version")[0]["mode"] == "test"


def test_a_start_refused_for_its_receipt_key_records_no_mode(database_url):
    wrong_key = contract_dir("keys") / "test" / "test-hk-message-1.key.jwk"
    with pytest.raises(HubStartError, match="cannot sign for the hub"):
        with running_hub(database_url, receipt_key_file=wrong_key):
            pass
    assert query(database_url, "SELECT mode FROM registry_version")[0]["mode"] is None
