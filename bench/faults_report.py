"""The figures of docs/security.md's "Faults and fuzzing", produced by one command (issue 11, item 4).

Runs the fault tests and the CI fuzz run (`pytest tests/faults tests/fuzz`), reads what
they recorded (tests/artifacts/faults/*.json, tests/artifacts/fuzz/report.json) and
rewrites the table between the markers in docs/security.md: every fault survived, with
messages accepted and lost, and the fuzz run's inputs per stage and server errors.
Exit status: pytest's, or 1 when a figure is missing.

    .venv/bin/python bench/faults_report.py            # run, then rewrite docs/security.md
    .venv/bin/python bench/faults_report.py --no-run   # rewrite from the last run's artifacts
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "tests" / "artifacts"
SECURITY = REPO / "docs" / "security.md"
START, END = "<!-- faults-report:start -->", "<!-- faults-report:end -->"
STAGE_NAMES = {
    "key": "JWS parsed, key looked up", "payload-json": "past the signature", "sender": "past the schema",
    "transaction": "into the case's transaction", "accepted": "accepted",
}


def table() -> str:
    faults = [json.loads(path.read_text("utf-8")) for path in sorted((ARTIFACTS / "faults").glob("*.json"))]
    fuzz = json.loads((ARTIFACTS / "fuzz" / "report.json").read_text("utf-8"))
    if not faults:
        raise SystemExit("no fault figures in tests/artifacts/faults: run the fault tests first")
    lines = ["| fault survived | accepted | lost | more |", "| --- | ---: | ---: | --- |"]
    for fault in faults:
        more = ", ".join(f"{key.replace('_', ' ')} {value}" for key, value in fault.items()
                         if key not in ("fault", "accepted", "accepted_after", "lost"))
        accepted = fault.get("accepted", fault.get("accepted_after", "-"))
        lines.append(f"| {fault['fault']} | {accepted} | {fault.get('lost', '-')} | {more} |")
    reached = fuzz["reached"]
    lines += ["", f"Fuzzing (seed {fuzz['seed']}, {fuzz['inputs']:,} ingress inputs and {fuzz['other_requests']:,} other requests, "
              f"{fuzz['inputs_per_s']} inputs/s):", "", "| stage reached | inputs |", "| --- | ---: |"]
    lines += [f"| {name} | {reached[stage]:,} |" for stage, name in STAGE_NAMES.items()]
    lines.append(f"| **server errors (5xx, or no answer)** | **{len(fuzz['server_errors'])}** |")
    growth = (fuzz["memory_after_run_bytes"] - fuzz["memory_after_warm_up_bytes"]) / 2**20
    lines += ["", f"The hub's resident memory grew by {growth:.0f} MiB over the fuzz run; it held "
              f"{fuzz['database_connections']} database connections afterwards."]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-run", action="store_true", help="only rewrite the table from the last run's artifacts")
    arguments = parser.parse_args()
    status = 0
    if not arguments.no_run:
        status = subprocess.run([sys.executable, "-m", "pytest", "-q", "tests/faults", "tests/fuzz"], cwd=REPO).returncode
    text = SECURITY.read_text("utf-8")
    if START not in text or END not in text:
        raise SystemExit(f"docs/security.md has no {START} ... {END} markers")
    before, rest = text.split(START, 1)
    _, after = rest.split(END, 1)
    SECURITY.write_text(before + START + "\n" + table() + "\n" + END + after, "utf-8")
    print(table())
    return status


if __name__ == "__main__":
    sys.exit(main())
