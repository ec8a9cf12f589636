"""The README's two set-up commands stay true: CI runs the same test command, the demo runs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.privacy import leaks_in

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


def test_the_demo_tells_the_whole_story_and_says_where_everything_is(tmp_path):
    # A process of its own, as a newcomer runs it: the demo points the logging at its log file.
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "demo", "--data-dir", str(tmp_path)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for expected in (
        "Referral CN-GD -> HK: submitted (ledger", "outcome granted",
        "in zh-Hant-HK", "綜合社會保障援助", "Hong Kong time", "in Simplified Chinese",
        "Verification CN-GD -> HK: requested", "Verification CN-GD -> MO: requested",
        "refused 401 signature-invalid", "refused 403 route-refused", "replayed: True",
        "refused 422 message-stale", "refused 409 id-conflict", "verified intact",
        "API: http://127.0.0.1:", "every step ended as docs/protocol.md requires",
    ):
        assert expected in result.stdout, expected
    assert not leaks_in((tmp_path / "demo.log").read_text("utf-8")), "personal data in the demo's log"
    assert not (tmp_path / "postgres" / "postmaster.pid").exists(), "the demo stops the database it started"
