"""The database's disk fills up (issue 11): the hub refuses new work cleanly, and recovers when space returns.

The embedded PostgreSQL's data directory lies on a small tmpfs that this test mounts
(root only; elsewhere the test skips, and fails under CI=true). A filler file takes the
free space; messages are then refused with `503 unavailable` and Retry-After, never 500,
and nothing half-written remains; the filler is removed and the same bytes are accepted.
Nobody restarts the hub; if PostgreSQL itself stopped on the full disk, the operator's
restart of the database (here `ensure_embedded_server`) is part of recovering.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path


from gateway.store.embedded import ensure_embedded_server, running_embedded_server, stop_embedded_server
from tests.cli_runner import run_cli
from tests.conftest import unavailable_here
from tests.faults.report import record
from tests.hub.harness import query, serve_process
from tests.hub.test_delivery_pull import GD
from tests.hub.test_transport_security import referral

FILESYSTEM_MB = 400


def _mounted_tmpfs(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        unavailable_here("mounting a small filesystem for the full-disk test needs root")
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={FILESYSTEM_MB}m,mode=0755", "tmpfs", str(folder)], check=True)
    return folder


def _fill(folder: Path) -> Path:
    """A filler file that takes every free byte of `folder`'s filesystem (unbuffered writes until ENOSPC)."""
    filler = folder / "filler"
    descriptor = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 20, 4096, 1):
            block = b"\0" * size
            while True:
                try:
                    os.write(descriptor, block)
                except OSError:
                    break
    finally:
        os.close(descriptor)
    return filler


def test_a_full_disk_is_refused_cleanly_and_the_hub_recovers_when_space_returns(tmp_path, example, test_key):
    mount = _mounted_tmpfs(tmp_path / "small-disk")
    data_dir = mount / "data"
    try:
        database_url = ensure_embedded_server(data_dir).dsn
        with serve_process(tmp_path, database_url, name="full-disk") as (process, hub):
            assert hub.post_message(referral(example, test_key(GD))).status == 202
            before = query(database_url, "SELECT count(*) AS n FROM messages")[0]["n"]
            filler = _fill(mount)
            refused, statuses = [], set()
            for _ in range(20):
                body = referral(example, test_key(GD))
                try:
                    answer = hub.post_message(body)
                except OSError:
                    continue
                statuses.add(answer.status)
                if answer.status == 503:
                    assert "retry-after" in answer.headers and answer.code == "unavailable"
                    refused.append(body)
            assert 500 not in statuses, f"a full disk is no internal error: {statuses}"
            assert refused, f"the full disk was met: {statuses}"
            filler.unlink()
            if running_embedded_server(data_dir) is None:  # PostgreSQL may stop when it cannot write its WAL
                ensure_embedded_server(data_dir)
            deadline = time.monotonic() + 60
            for body in refused:
                while (status := hub.post_message(body).status) != 202:
                    assert status == 503 and time.monotonic() < deadline, f"not accepted once space returned: {status}"
                    time.sleep(0.2)  # the client's back-off while the hub reconnects (bounded by the deadline)
            assert process.poll() is None, "the hub never stopped"
            stored = query(database_url, "SELECT count(*) AS n FROM messages")[0]["n"]
            assert stored >= before + len(refused) and stored <= before + 20, "nothing half-written, nothing lost"
            verified = run_cli("ledger", "verify", "--database-url", database_url)
            assert verified.status == 0, verified.stdout + verified.stderr
            record("disk-full", "the database's disk full, then space back", refused_503=len(refused), accepted_after=len(refused),
                   lost=0, answered_500=0)
    finally:
        stop_embedded_server(data_dir)
        subprocess.run(["umount", "-l", str(mount)], check=False)
