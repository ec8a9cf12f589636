"""What each fault test survived, in figures: written to tests/artifacts/faults/NAME.json for bench/faults_report.py."""

from __future__ import annotations

import json
from typing import Any

from tests.conftest import REPO

FOLDER = REPO / "tests" / "artifacts" / "faults"


def record(name: str, fault: str, **figures: Any) -> None:
    """Write one fault test's figures (messages accepted, lost, duplicates on the wire and in the application...)."""
    FOLDER.mkdir(parents=True, exist_ok=True)
    (FOLDER / f"{name}.json").write_text(json.dumps({"fault": fault, **figures}, indent=1) + "\n", "utf-8")
