"""A gateway's host vanishes without closing its connections (power lost, network cut): the database drops them.

Until it does, the process counts as alive: its pull leases are not offered again, so a pull
served elsewhere can pass a receipt that it leased (docs/operations.md, "Pull leases"), and
registry changes wait for it. Left to the operating system that takes two hours and more;
the serving pool asks the server to drop a silent peer within `database_timeout_seconds`
(gateway/store/database.py, `dead_peer_settings`).

PostgreSQL and `gateway serve` run in a network namespace of this test's own (root only;
elsewhere the test skips, and fails under CI=true), connected over TCP on that namespace's
loopback. The test reaches the server through its Unix socket, which no network namespace
cuts. Taking the namespace's loopback down cuts the TCP connections with nothing sent on
them (no FIN, no reset), as a host that lost its power does.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import asyncpg

from gateway.hub.registry import live_processes
from gateway.store.database import dead_peer_settings, with_database_name
from gateway.store.embedded import PGDATA_NAME, embedded_dsn, ensure_embedded_server, stop_embedded_server, tool
from tests.conftest import unavailable_here
from tests.database import temporary_data_dir
from tests.faults.report import record
from tests.hub.harness import SERVE_CONFIG, query, serve_process, wait_for_row

TIMEOUT_SECONDS = 2
DEADLINE_SECONDS = 60.0
"""Bounds every wait below; a vanished peer left to the operating system's defaults stays for two hours and more."""
_TOOLS = ("unshare", "nsenter", "ip", "setpriv")


def _server_in_namespace(data_dir: Path) -> int:
    """Start the embedded cluster's postmaster in a new network namespace, listening on that namespace's 127.0.0.1
    too; its pid once it accepts connections (`pg_ctl start -w` waits for that)."""
    pgdata = data_dir / PGDATA_NAME
    owner = pgdata.stat()
    hba = pgdata / "test-tcp-hba.conf"
    hba.write_text("local all all trust\nhost all all 127.0.0.1/32 trust\n", "utf-8")
    os.chown(hba, owner.st_uid, owner.st_gid)
    options = " ".join(f"-c {shlex.quote(setting)}" for setting in (
        "listen_addresses=127.0.0.1", f"hba_file={hba}", f"unix_socket_directories={pgdata}"))
    with (pgdata / "namespace-start.log").open("w") as output:  # a file, not a pipe: the postmaster inherits it
        subprocess.run(
            ["unshare", "--net", "--", "sh", "-c", 'ip link set lo up && exec "$@"', "sh",
             "setpriv", f"--reuid={owner.st_uid}", f"--regid={owner.st_gid}", "--clear-groups", "--",
             str(tool("pg_ctl")), "start", "-w", "-t", str(int(DEADLINE_SECONDS)), "-D", str(pgdata),
             "-l", str(pgdata / "namespace.log"), "-o", options],
            stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT, cwd="/", check=True,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"},
        )
    return int((pgdata / "postmaster.pid").read_text().split()[0])


def test_a_vanished_gateway_host_has_its_connections_dropped_and_counts_as_gone(tmp_path):
    if os.geteuid() != 0 or any(shutil.which(name) is None for name in _TOOLS):
        unavailable_here(f"a network namespace to cut needs root and {', '.join(_TOOLS)}")
    with temporary_data_dir() as data_dir:
        ensure_embedded_server(data_dir)  # initialises the cluster, owned by the server user
        stop_embedded_server(data_dir)
        try:
            postmaster = _server_in_namespace(data_dir)
            admin = embedded_dsn(data_dir / PGDATA_NAME)
            query(admin, "CREATE DATABASE gba_vanish")
            local = with_database_name(admin, "gba_vanish")
            namespace = ("nsenter", f"--net=/proc/{postmaster}/ns/net")
            config = f"database_timeout_seconds = {TIMEOUT_SECONDS}\n" + SERVE_CONFIG
            with serve_process(tmp_path, "postgresql://postgres@127.0.0.1:5432/gba_vanish", name="vanishing",
                               config_text=config, prefix=namespace) as (process, _):
                try:
                    (process_id,) = {row["process_id"] for row in query(local, "SELECT process_id FROM gateway_processes")}
                    connections = query(local, "SELECT client_addr FROM pg_stat_activity WHERE application_name = $1",
                                        process_id)
                    assert connections and all(row["client_addr"] is not None for row in connections), "over TCP"
                    assert [row[0] for row in _live(local)] == [process_id]
                    # Probes start after half the timeout of silence: connections idle for three timeouts stay, since
                    # a live host's kernel answers them (as many as before, and none opened again since).
                    wait_for_row(
                        local,
                        "SELECT 1 WHERE (SELECT count(*) FROM pg_stat_activity WHERE application_name = $1) >= $2"
                        " AND NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name = $1"
                        "                 AND now() - backend_start <= make_interval(secs => $3))",
                        process_id, len(connections), float(3 * TIMEOUT_SECONDS), timeout=DEADLINE_SECONDS,
                    )

                    subprocess.run([*namespace, "ip", "link", "set", "lo", "down"], check=True)
                    cut = time.monotonic()
                    wait_for_row(local, "SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name = $1)",
                                 process_id, timeout=DEADLINE_SECONDS)
                    dropped_after = time.monotonic() - cut
                    assert _live(local) == [], "the process counts as gone: its pull leases are offered again"
                    assert query(local, "SELECT process_id FROM gateway_processes")[0]["process_id"] == process_id, (
                        "it never unregistered: the database alone decided")
                finally:  # a host cut off cannot drain: it is killed, as its power was
                    process.kill()
                    process.wait(60)
            record("vanished-gateway-host", "the gateway's host vanished from the network (loopback of its namespace down)",
                   timeout_seconds=TIMEOUT_SECONDS, connections=len(connections), dropped_after_s=round(dropped_after, 2))
        finally:
            stop_embedded_server(data_dir)


def _live(dsn: str) -> list[tuple[str, int]]:
    async def run() -> list[tuple[str, int]]:
        connection = await asyncpg.connect(dsn, timeout=10)
        try:
            return await live_processes(connection)
        finally:
            await connection.close()

    return asyncio.run(run())


def test_the_dead_peer_settings_give_up_on_a_silent_peer_after_the_timeout():
    """Probing starts at half the timeout; the probes, and data left unacknowledged, give up when it has passed."""
    assert dead_peer_settings(30) == {
        "tcp_keepalives_idle": "15", "tcp_keepalives_interval": "5", "tcp_keepalives_count": "3", "tcp_user_timeout": "30000"}
    for seconds in (1, 2, 7.5, 30, 3600):
        settings = {name: int(value) for name, value in dead_peer_settings(seconds).items()}
        probing = settings["tcp_keepalives_idle"] + settings["tcp_keepalives_interval"] * settings["tcp_keepalives_count"]
        assert seconds <= probing <= seconds + 4, "probes give up at about the timeout, never before it"
        assert settings["tcp_user_timeout"] == seconds * 1000
