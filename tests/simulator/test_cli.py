"""`gateway simulate`: starts, says where it listens, stops cleanly on SIGTERM; refuses what it cannot use."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from gateway.contract import contract_dir
from tests.cli_runner import run_cli

HK_KEY = contract_dir("keys") / "test" / "test-hk-message-1.key.jwk"


def test_simulate_prints_its_endpoint_and_exits_0_on_sigterm(tmp_path: Path):
    command = [
        sys.executable, "-m", "gateway.cli", "simulate", "--jurisdiction", "HK", "--port", "0", "--mode", "push",
        "--hub", "http://127.0.0.1:9", "--key", str(HK_KEY), "--state-dir", str(tmp_path / "state"),
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=os.environ | {"PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    try:
        line = process.stdout.readline()
        assert line.startswith("simulator: HK serving http://127.0.0.1:") and line.rstrip().endswith("/v1/deliveries (push)")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert (tmp_path / "state" / "simulator.sqlite3").exists()


def test_simulate_refuses_a_rules_file_naming_the_key(tmp_path: Path):
    rules = tmp_path / "rules.toml"
    rules.write_text('[referral]\ndecision = "maybe"\n', "utf-8")
    result = run_cli("simulate", "--jurisdiction", "HK", "--mode", "push", "--hub", "http://127.0.0.1:9", "--key", str(HK_KEY), "--rules", str(rules))
    assert result.status == 1
    assert "referral.decision" in result.stderr and str(rules) in result.stderr and "accept, decline" in result.stderr


def test_simulate_refuses_a_key_file_that_is_not_a_private_key(tmp_path: Path):
    public = tmp_path / "not-a-key.jwk"
    public.write_text('{"kty": "OKP"}', "utf-8")
    result = run_cli("simulate", "--jurisdiction", "HK", "--mode", "pull", "--hub", "http://127.0.0.1:9", "--key", str(public))
    assert result.status == 1 and "not a private signing key" in result.stderr


def test_simulate_refuses_an_award_scheme_its_jurisdiction_does_not_grant(tmp_path: Path):
    # The hub would refuse every granted close (scheme-unknown, PROTO-6.1-9): refused at start, not case by case.
    rules = tmp_path / "rules.toml"
    rules.write_text('[referral]\naward_scheme = "DIBAO"\n', "utf-8")
    result = run_cli("simulate", "--jurisdiction", "HK", "--mode", "push", "--hub", "http://127.0.0.1:9", "--key", str(HK_KEY), "--rules", str(rules))
    assert result.status == 1 and str(rules) in result.stderr
    assert "referral.award_scheme: DIBAO is not a scheme of HK, whose schemes are HK_CSSA" in result.stderr


def test_simulate_refuses_a_key_that_is_not_a_message_key_of_its_jurisdiction(tmp_path: Path):
    # With MO's key a simulator started as HK would sign as, and pull the inbox of, MO.
    for kid, held_as in (("test-mo-message-1", "MO's message key"), ("test-hk-witness-1", "HK's witness key")):
        result = run_cli("simulate", "--jurisdiction", "HK", "--mode", "pull", "--hub", "http://127.0.0.1:9",
                         "--key", str(HK_KEY.parent / f"{kid}.key.jwk"), "--state-dir", str(tmp_path / "state"))
        assert result.status == 1 and f"the key {kid} is {held_as} in the trust list, not a message key of HK" in result.stderr
    assert not (tmp_path / "state").exists()
