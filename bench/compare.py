"""Compare two revisions on this machine, runs interleaved (issue 12): is a change faster, or is the machine?

    .venv/bin/python bench/compare.py --base HEAD~1 --rounds 3 -- --seconds 30 --workers 2
    .venv/bin/python bench/compare.py --bench pipeline --base 2a91ebd -- --seconds 25 --households-in-flight 64
    .venv/bin/python bench/compare.py --bench pipeline --base HEAD~1 --rounds 2 -- --mode scaleout --kill-after 0

The speed of this 2-core machine changes from day to day and from minute to minute (a
neighbour on the host): the echo and Ed25519 ceilings measured in the same run have
varied by a factor of two between sessions. A figure from another day says little about a
change. This script checks the base revision out into a temporary git worktree and runs
the benchmark alternately on the base and on this checkout (uncommitted changes
included), `--rounds` times each, so that both see the same machine. Each revision runs
its own copy of the benchmark script, whose hub imports that revision's code
(`accept.py` and `pipeline.py` put their own checkout first on the hub's PYTHONPATH).

It prints one JSON object: every run's figures, the median of each, and the change of
the medians (this checkout against the base). Arguments after `--` go to the benchmark.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parent.parent

MEASURES: dict[str, dict[str, str]] = {
    "accept": {
        "accepted_per_s": "accepted_per_s",
        "p99_ms": "p99_ms",
        "hub_cpu_us_per_message": "hub_cpu_us_per_message",
        "database_cpu_us_per_message": "database_cpu_us_per_message",
        "echo_ceiling_per_s": "echo_ceiling_per_s",
        "ratio_to_echo": "ratio_to_echo",
    },
    "pipeline": {
        "pipeline_per_s": "pipeline_per_s",
        "p99_ms": "p99_ms",
        "hub_cpu_us_per_message": "cpu_us_per_message.hub",
        "database_cpu_us_per_message": "cpu_us_per_message.database",
        "simulators_cpu_us_per_message": "cpu_us_per_message.CN-GD+HK+MO",
        "ratio_to_echo": "ratio_to_echo",
        # --mode scaleout only (None in a plain pipeline run): both phases of the run, and their ratio
        "one_hub_pipeline_per_s": "one_hub_pipeline_per_s",
        "three_hubs_pipeline_per_s": "three_hubs_pipeline_per_s",
        "ratio_3_to_1": "ratio_3_to_1",
        "two_hubs_pipeline_per_s": "two_hubs_pipeline_per_s",  # with --two-hubs
        "ratio_2_to_1": "ratio_2_to_1",
    },
}
"""For each benchmark, the figures compared: name -> where in its JSON (dots go down, `+` adds)."""


def figure(result: dict[str, Any], where: str) -> float | None:
    """The value at `where` in a benchmark's JSON (see MEASURES); None when a part is missing."""
    *path, last = where.split(".")
    node: Any = result
    for step in path:
        node = node.get(step) if isinstance(node, dict) else None
    if not isinstance(node, dict):
        return None
    values = [node.get(name) for name in last.split("+")]
    if any(not isinstance(value, (int, float)) for value in values):
        return None
    return float(sum(values))


def summarise(bench: str, runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Per revision, each figure's values and median; per figure, the change of the medians (checkout / base - 1)."""
    summary: dict[str, Any] = {"medians": {}, "values": {}, "change": {}}
    for revision, results in runs.items():
        summary["values"][revision] = {name: [figure(result, where) for result in results] for name, where in MEASURES[bench].items()}
        summary["medians"][revision] = {
            name: statistics.median(known) if (known := [value for value in values if value is not None]) else None
            for name, values in summary["values"][revision].items()
        }
    base, head = summary["medians"].get("base", {}), summary["medians"].get("checkout", {})
    for name in MEASURES[bench]:
        if base.get(name) and head.get(name) is not None:
            summary["change"][name] = round(head[name] / base[name] - 1, 4)
    return summary


def _git(*arguments: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *arguments], check=True, capture_output=True, text=True, timeout=60).stdout.strip()


def _run(tree: Path, bench: str, arguments: Sequence[str], out: Path, log: Path, timeout: float) -> dict[str, Any]:
    """One run of `tree`'s benchmark; its JSON (with `problems` when the run failed)."""
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, (str(tree), environment.get("PYTHONPATH"))))
    command = [sys.executable, str(tree / "bench" / f"{bench}.py"), *arguments, "--json-out", str(out)]
    with log.open("wb") as handle:
        try:
            code = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, env=environment, timeout=timeout,
                                  stdin=subprocess.DEVNULL).returncode
        except subprocess.TimeoutExpired:
            return {"problems": [f"timed out after {timeout:.0f} s (log: {log})"]}
    if not out.exists():
        return {"problems": [f"exit {code} and no result (log: {log})"]}
    result = json.loads(out.read_text())
    if code != 0:
        result.setdefault("problems", []).append(f"exit {code} (log: {log})")
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="HEAD", help="the revision to compare against (default HEAD: what the uncommitted changes do)")
    parser.add_argument("--bench", choices=sorted(MEASURES), default="accept")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each revision, interleaved (default 3)")
    parser.add_argument("--run-timeout", type=float, default=900, help="seconds one run may take (default 900)")
    parser.add_argument("--json-out", type=Path)
    parser.add_argument("--keep", action="store_true", help="keep the folder with each run's log and JSON")
    parser.add_argument("arguments", nargs="*", help="after --: the benchmark's own arguments")
    options = parser.parse_args(argv)
    if options.rounds < 1:
        parser.error("--rounds must be at least 1")
    base = _git("rev-parse", "--verify", f"{options.base}^{{commit}}")
    folder = Path(tempfile.mkdtemp(prefix="gba-compare-"))
    tree = folder / "base"
    _git("worktree", "add", "--detach", str(tree), base)
    runs: dict[str, list[dict[str, Any]]] = {"base": [], "checkout": []}
    try:
        for round_number in range(1, options.rounds + 1):
            for revision, checkout in (("base", tree), ("checkout", ROOT)):
                name = f"{revision}-{round_number}"
                print(f"compare: {options.bench} {name} ...", file=sys.stderr, flush=True)
                started = time.monotonic()
                result = _run(checkout, options.bench, options.arguments, folder / f"{name}.json", folder / f"{name}.log",
                              options.run_timeout)
                runs[revision].append(result)
                shown = {key: figure(result, where) for key, where in MEASURES[options.bench].items()}
                print(f"compare: {name} in {time.monotonic() - started:.0f} s: {json.dumps(shown)}"
                      + (f" PROBLEMS {result['problems']}" if result.get("problems") else ""), file=sys.stderr, flush=True)
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], capture_output=True, timeout=120)
    changed = bool(_git("status", "--porcelain", "--untracked-files=no"))
    report = {
        "benchmark": "compare",
        "bench": options.bench,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": "bench/compare.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "base": base,
        "checkout": _git("rev-parse", "HEAD") + (" with uncommitted changes" if changed else ""),
        "rounds": options.rounds,
        **summarise(options.bench, runs),
        "problems": [f"{revision}-{number}: {problem}" for revision, results in runs.items()
                     for number, result in enumerate(results, 1) for problem in result.get("problems", [])],
        "folder": str(folder) if options.keep else None,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if options.json_out:
        options.json_out.write_text(text + "\n")
    if not options.keep:
        shutil.rmtree(folder, ignore_errors=True)
    return 1 if report["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
