"""The README's two set-up commands stay true: CI runs the same test command, the demo runs."""

from __future__ import annotations

import re
from pathlib import Path

from tests.cli_runner import run_cli

ROOT = Path(__file__).resolve().parents[1]


def _setup_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text("utf-8")
    first_section = readme.split("\n## ", 2)[1]
    return re.findall(r"```sh\n(.+?)\n```", first_section, re.DOTALL)


def test_readme_starts_with_the_demo_and_the_test_command():
    demo, tests = _setup_commands()
    assert demo.endswith("gateway demo")
    assert "pytest" in tests


def test_ci_runs_exactly_the_readme_test_command():
    ci_lines = (ROOT / ".ci" / "run").read_text("utf-8").splitlines()
    assert _setup_commands()[1] in ci_lines


def test_the_demo_signs_verifies_and_refuses_as_the_spec_says(tmp_path):
    result = run_cli("demo", "--data-dir", str(tmp_path))
    assert result.status == 0, result.stdout + result.stderr
    for expected in ("accepted", "signature-invalid", "sender-mismatch", "jws-base64url-invalid", "key-expired"):
        assert expected in result.stdout
    assert (tmp_path / "trust-list.json").exists() and (tmp_path / "referral.jws").exists()
