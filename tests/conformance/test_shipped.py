"""What ships: every shipped configuration refuses alg none and a stale message; the wheel carries the suite's
data and none of the broken fixtures."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from dataclasses import fields
from pathlib import Path

import pytest

from gateway.config import ConfigError, default_config, load_config
from gateway.hub.http import settings_for
from tests.conformance.suite import run_suite
from tests.conftest import REPO
from tests.hub.harness import running_hub

SHIPPED = {
    "default (gateway demo, gateway serve without --config)": lambda: default_config(Path("/nonexistent-unused")),
    "docs/examples/gateway.minimal.toml": lambda: load_config(REPO / "docs" / "examples" / "gateway.minimal.toml"),
    "docs/examples/gateway.toml": lambda: load_config(REPO / "docs" / "examples" / "gateway.toml"),
}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_every_shipped_configuration_refuses_alg_none_and_a_stale_message(name, database_url, tmp_path):
    settings = settings_for(SHIPPED[name](), database_url)
    assert settings.freshness_seconds == 300
    changes = {field.name: getattr(settings, field.name) for field in fields(settings) if field.name != "dsn"}
    with running_hub(database_url, **changes) as hub:
        result, report = run_suite(hub.base_url, tmp_path, "--case", "hub-ingress-004", "--case", "hub-ingress-012")
    assert result.status == 0, result.stdout + result.stderr
    assert report["counts"]["pass"] == 2


def test_no_configuration_can_widen_the_freshness_window(tmp_path):
    text = (REPO / "docs" / "examples" / "gateway.minimal.toml").read_text("utf-8").replace("../../keys", str(REPO / "keys"))
    config = tmp_path / "gateway.toml"
    config.write_text(text + "\n[limits]\nfreshness_seconds = 1000000\n", "utf-8")
    with pytest.raises(ConfigError, match="freshness_seconds"):
        load_config(config)


@pytest.mark.slow
def test_the_wheel_ships_the_suites_data_and_none_of_the_broken_fixtures(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(REPO)], check=True, timeout=600)
    (wheel,) = tmp_path.glob("gba_case_gateway-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert not [name for name in names if "fixtures" in name or name.startswith("tests/")]
    data = "gateway/_contract/conformance/"
    for shipped in ("requirements.json", "catalogue.json", "not-covered.json", "code-roles.json", "cases/hub-ingress.json",
                    "cases/hub-flows.json", "cases/hub-ledger.json", "cases/hub-transport.json", "cases/hub-push.json",
                    "cases/endpoint.json", "cases/endpoint-trust.json", "cases/endpoint-witness.json"):
        assert data + shipped in names, shipped
    for module in ("runner", "endpoint", "merkle", "trust_lists", "served_hub", "witness", "push_receiver", "transport"):
        assert f"gateway/conformance/{module}.py" in names, module
