"""The acceptance benchmark works and keeps its shape (issue 3, item 7): a 10-second smoke run.

It runs `bench/accept.py --seconds 10` exactly as a person would — a real hub process, a
real PostgreSQL (the embedded server in a temporary directory, or a fresh database on
GATEWAY_TEST_DATABASE_URL's server), load from another process — and checks the JSON it
prints: every stable key present with its type, messages accepted, none refused. No
timing thresholds: how fast is the benchmark's business (docs/performance.md), not a
test's.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path


from tests.conftest import unavailable_here
from tests.database import external_test_database_url

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench" / "accept.py"

STABLE_KEYS: dict[str, type | tuple[type, ...]] = {
    "accepted_per_s": float,
    "p50_ms": float,
    "p99_ms": float,
    "echo_ceiling_per_s": float,
    "ratio_to_echo": float,
    "ed25519_verify_per_s": int,
    "person_index_behind": int,
    "messages": int,
    "concurrency": int,
    "seconds": float,
    "generator_cpu_s": float,
    "errors": dict,
    "machine": dict,
    "generator": str,
}


def run_benchmark(*arguments: str, out: Path) -> tuple[dict, str]:
    """Run the benchmark; its JSON report (also checked against --json-out) and its stderr."""
    command = [sys.executable, str(BENCH), *arguments, "--json-out", str(out)]
    external = external_test_database_url()
    if external:
        command += ["--database-url", external]
    # Bounded: the run takes about 30 s; anything near this limit is a hang.
    result = subprocess.run(command, capture_output=True, text=True, timeout=150, cwd=ROOT)
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stderr[-4000:]}"
    printed = json.loads(result.stdout)
    assert json.loads(out.read_text("utf-8")) == printed
    return printed, result.stderr


def test_a_ten_second_run_accepts_every_message_and_reports_stable_keys(tmp_path):
    report, stderr = run_benchmark("--seconds", "10", out=tmp_path / "accept.json")

    for key, kind in STABLE_KEYS.items():
        assert key in report, key
        assert isinstance(report[key], kind) and not isinstance(report[key], bool), (key, report[key])
    assert report["generator"] in ("wrk", "python")
    assert report["seconds"] == 10.0
    assert report["concurrency"] == 64

    assert report["errors"] == {}, "every message must be answered 202"
    assert report["problems"] == []
    assert report["accepted_per_s"] > 0
    assert report["accepted"] == report["messages"] > 0
    assert report["stored_messages"] >= report["accepted"]
    assert 0 < report["p50_ms"] <= report["p99_ms"]
    assert report["echo_ceiling_per_s"] > 0 and report["ed25519_verify_per_s"] > 0
    assert report["ratio_to_echo"] > 0
    assert report["generator_cpu_s"] > 0
    if report["database_cpu_s"] is not None:  # the embedded server: its CPU by process kind adds up
        by_kind = report["database_cpu_us_per_message_by_kind"]
        assert by_kind["client backends"] > 0 and "ended in the window" in by_kind
        assert abs(sum(by_kind.values()) - report["database_cpu_us_per_message"]) <= 0.1 * len(by_kind)
    # Context switches a message in the window: the machine's, and the hub's, which waits on a socket at least once a
    # batch (a batch is at most one message a connection, so more than one wait in 64 messages).
    switches = report["context_switches_per_message"]
    assert switches["machine"]["all"] > 0
    assert switches["hub"]["voluntary"] > 1 / 64 and switches["hub"]["involuntary"] >= 0
    if report["database_cpu_s"] is not None:
        assert switches["database"]["voluntary"] > 0
    # The hub's collector in the window, from its /metrics: the youngest generation runs many times in 10 s of load.
    gc = report["hub_gc"]
    assert sorted(gc) == ["0", "1", "2"]
    assert gc["0"]["collections"] > 0 and gc["0"]["pause_ms"] > 0
    assert all(0 <= figures["pauses_over_10ms"] <= figures["collections"] for figures in gc.values()), gc
    # The hub's stage timers over the window, per accepted message: every message verified, every batch committed.
    stages = report["stages"]
    assert stages["signature"]["count_per_message"] >= 1.0 and stages["signature"]["us_per_message"] > 0
    assert 0 < stages["commit"]["count_per_message"] <= 1.0, "a batch commits one message or more"
    assert report["open_loop"] is False and report["rate_per_s"] is None, "by default each connection sends on its answer"
    assert report["service_ms"] is None and report["late"] is None and report["p99_9_ms"] is None
    assert report["timeline"] is None and report["over_bound"] is None
    assert report["wal_seasoned"] is None, "by default the fresh cluster is measured as it is"
    assert report["hub_toml"] is None, "by default the hub runs on the generated configuration alone"
    for key in ("cpus", "python", "postgresql", "platform"):
        assert key in report["machine"], key
    # Nothing it started outlives it: hub, echo server, embedded PostgreSQL, temporary folder.
    folder = re.search(r"working in (/\S+)", stderr).group(1)
    pids = [int(pid) for pid in re.findall(r"(?:hub|echo) pid (\d+)", stderr)]
    assert len(pids) == 2
    assert not [pid for pid in pids if Path(f"/proc/{pid}").exists()]
    assert _processes_mentioning(folder) == []
    assert not Path(folder).exists()


def test_the_python_generator_works_too(tmp_path):
    """Machines without wrk use client processes: a short run of that path (where wrk is the default), the WAL seasoned
    first, and the hub's configuration extended by --hub-toml (batches of at most 4)."""
    report, stderr = run_benchmark(
        "--generator", "python", "--seconds", "2", "--warmup-seconds", "1", "--echo-seconds", "2",
        "--concurrency", "16", "--season-wal", "4", "--hub-toml", "[commit]\nmax_batch = 4", "--keep",
        out=tmp_path / "python.json",
    )
    assert report["generator"] == "python"
    assert report["hub_toml"] == "[commit]\nmax_batch = 4"
    folder = Path(re.search(r"working in (/\S+)", stderr).group(1))
    try:
        assert "[commit]\nmax_batch = 4\n" in (folder / "gateway.toml").read_text("utf-8")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    # --season-wal: PostgreSQL made four segments and recycled them, so at least four are ready ahead of the window.
    assert report["wal_seasoned"]["segments"] == 4 and report["wal_seasoned"]["recycled_ahead"] >= 4, report["wal_seasoned"]
    assert report["errors"] == {} and report["problems"] == []
    assert report["accepted"] == report["messages"] > 0
    assert 0 < report["p50_ms"] <= report["p99_ms"]


def test_an_open_loop_run_offers_its_rate_and_reports_both_latencies(tmp_path):
    """--rate: the measured run is an open loop at the offered rate (the warm-up and the echo ceiling stay closed
    loops); the headline latencies count from when each message was due, and `service_ms` from when it left."""
    report, stderr = run_benchmark(
        "--rate", "200", "--seconds", "3", "--warmup-seconds", "1", "--echo-seconds", "2", "--concurrency", "8",
        out=tmp_path / "open.json",
    )
    assert report["open_loop"] is True and report["rate_per_s"] == 200.0
    assert "open loop of 200 requests/s" in report["generator_detail"]
    assert "200 messages/s offered" in stderr
    assert report["errors"] == {} and report["problems"] == []
    assert report["accepted"] == report["messages"] > 0
    # 200/s over 8 connections: one a connection every 40 ms, and one more each for the fence post.
    assert report["messages"] <= 8 * (int(report["duration_s"] / 0.040) + 1)
    # The pool is sized from the rate (and wrk's whole seconds, and a tenth of one more), not from the warm-up.
    assert report["presigned"] <= 200 * (3 + 0.2) * 1.1 + 4 * 8
    service = report["service_ms"]
    assert sorted(service) == ["max_ms", "p50_ms", "p90_ms", "p95_ms", "p99_9_ms", "p99_ms"]
    assert report["p50_ms"] >= service["p50_ms"] and report["p99_ms"] >= service["p99_ms"]
    assert report["p99_ms"] <= report["p99_9_ms"] <= report["max_ms"]
    assert isinstance(report["late"], int) and 0 <= report["late"] <= report["messages"]
    assert report["echo_ceiling_per_s"] > 0
    # Second by second, every answer once; `over_bound` counts those over 100 ms from the same rows.
    rows = report["timeline"]
    assert [row[0] for row in rows] == list(range(len(rows))) and 3 <= len(rows) <= 5, rows
    assert sum(row[1] for row in rows) == report["messages"]
    assert report["over_bound"]["answers"] == sum(row[2] for row in rows)
    assert report["over_bound"]["seconds"] == sum(1 for row in rows if row[2])
    # The first row's second as wall-clock time, to find it in the logs: within the run, before the report's date.
    started = datetime.fromisoformat(report["timeline_start"].replace("Z", "+00:00"))
    ended = datetime.fromisoformat(report["date"].replace("Z", "+00:00"))
    assert timedelta(0) < ended - started < timedelta(minutes=5), (report["timeline_start"], report["date"])


def test_the_profile_covers_every_worker(tmp_path):
    """`--profile-out` with `--workers 2` records the workers that accept, not only their idle supervisor."""
    if not _may_trace_other_processes():
        unavailable_here("py-spy needs to trace the hub's workers: run as root, or with kernel.yama.ptrace_scope = 0")
    profile = tmp_path / "hub.txt"
    report, _ = run_benchmark(
        "--seconds", "3", "--warmup-seconds", "1", "--echo-seconds", "2", "--workers", "2", "--profile-out", str(profile),
        out=tmp_path / "profiled.json",
    )
    assert report["errors"] == {} and not [note for note in report["notes"] if "py-spy" in note], report["notes"]
    # py-spy's raw format: one line a distinct stack, "process <supervisor>:...;process <worker>:...;frames... count".
    accepting = {
        re.findall(r"process (\d+):", line)[-1] for line in profile.read_text("utf-8").splitlines() if "Hub.accept " in line
    }
    assert len(accepting) == 2, f"stacks of Hub.accept from {len(accepting)} worker process(es), want both"


def _may_trace_other_processes() -> bool:
    """Whether py-spy, started by the benchmark, may attach to the hub it also started (a sibling, not a child)."""
    if os.geteuid() == 0:
        return True
    try:
        return Path("/proc/sys/kernel/yama/ptrace_scope").read_text().strip() == "0"
    except OSError:
        return True  # no Yama: ordinary same-user tracing rules


def _processes_mentioning(text: str) -> list[int]:
    """Processes whose command line contains `text`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command_line = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if text.encode() in command_line:
            found.append(int(entry.name))
    return found
