"""The long fuzz run (issue 11): the CI fuzzer (tests/fuzz/ingress.py) for as many inputs as asked.

Starts an embedded PostgreSQL in a new temporary data directory and `gateway serve` on the
example configuration, drives `--inputs` inputs at it (default 1,000,000) from `--seed`,
prints progress every 10,000 inputs, and writes the report — inputs per family, the stage
each input stopped at, the codes seen, every server error, the hub's memory at the start
and the end and its database connections — to `--out` (default bench/results/fuzz-SEED.json).
Exit status 0 when no request got a server error (or no answer), 1 otherwise.

    .venv/bin/python bench/fuzz.py --inputs 1000000 --seed 20261129
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gateway.store.embedded import ensure_embedded_server, stop_embedded_server  # noqa: E402
from tests.fuzz.ingress import drive  # noqa: E402
from tests.fuzz.test_fuzz_ingress import _example_config, _resident_bytes  # noqa: E402
from tests.hub.harness import query, serve_process  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inputs", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=20261129)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--out", type=Path)
    arguments = parser.parse_args()
    out = arguments.out or REPO / "bench" / "results" / f"fuzz-{arguments.seed}.json"
    folder = Path(tempfile.mkdtemp(prefix="gba-fuzz-"))
    server = ensure_embedded_server(folder / "db")
    started = time.monotonic()
    try:
        with serve_process(folder, server.dsn, config_text=_example_config(folder / "data"), name="fuzzed") as (process, hub):
            before = _resident_bytes(process.pid)

            def progress(report) -> None:
                rate = report.inputs / (time.monotonic() - started)
                print(f"{report.inputs:>9} inputs, {report.passed_signature():>9} past the signature, "
                      f"{len(report.server_errors)} server errors, {rate:.0f}/s", flush=True)

            report = asyncio.run(drive(hub.base_url, arguments.seed, arguments.inputs, arguments.concurrency,
                                       "http://127.0.0.1:8443", progress if arguments.inputs >= 10_000 else None))
            after = _resident_bytes(process.pid)
            connections = query(server.dsn, "SELECT count(*) AS n FROM pg_stat_activity WHERE application_name LIKE 'gateway:%'")[0]["n"]
    finally:
        stop_embedded_server(folder / "db")
    document = report.to_document() | {
        "memory_at_start_bytes": before, "memory_at_end_bytes": after, "database_connections": connections,
        "command": f"bench/fuzz.py --inputs {arguments.inputs} --seed {arguments.seed} --concurrency {arguments.concurrency}",
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=1) + "\n", "utf-8")
    print(json.dumps({key: document[key] for key in ("inputs", "seconds", "inputs_per_s", "passed_signature", "reached")}, indent=1))
    print(f"server errors: {len(report.server_errors)}; report: {out}")
    return 1 if report.server_errors else 0


if __name__ == "__main__":
    sys.exit(main())
