"""`pip install .` works from outside the checkout: the wheel carries schemas, test keys and vectors."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def _run(*command: str | Path, cwd: Path) -> str:
    result = subprocess.run([str(part) for part in command], cwd=cwd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_a_wheel_installed_in_a_fresh_environment_verifies_a_shipped_vector(tmp_path):
    dist = tmp_path / "dist"
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", dist, REPO, cwd=tmp_path)
    (wheel,) = dist.glob("gba_case_gateway-*.whl")
    environment = tmp_path / "env"
    venv.create(environment, with_pip=True)
    python, gateway = environment / "bin" / "python", environment / "bin" / "gateway"
    _run(python, "-m", "pip", "install", "-q", wheel, cwd=tmp_path)

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    installed = _run(python, "-c", "from gateway.contract import contract_dir; print(contract_dir('keys').parent)", cwd=outside).strip()
    assert Path(installed).is_relative_to(environment), f"contract found at {installed}, not in the installed wheel"
    contract = Path(installed)

    verified = _run(gateway, "message", "verify", "--trust", contract / "keys" / "test" / "trust-list.json",
                    "--at", "2026-11-28T12:00:00Z", contract / "conformance" / "vectors" / "valid" / "referral.submit.jws", cwd=outside)
    assert '"type": "referral.submit"' in verified
    demo = _run(gateway, "demo", "--data-dir", outside / "demo", cwd=outside)
    assert "every step ended as docs/protocol.md requires" in demo
