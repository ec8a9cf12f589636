"""The embedded PostgreSQL and `gateway db`, on real servers (docs/database.md).

Lifecycle tests (start, share, stop, versions) each use a data directory of their own.
Status and backup/restore also run against the external server when
GATEWAY_TEST_DATABASE_URL is set; a backup of that server restored into the embedded
one is then the cross-version upgrade path of docs/database.md.
"""

from __future__ import annotations

import asyncio
import io
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

import asyncpg
import pytest

from gateway.store import StoreError
from gateway.store.backup import _copy, _Target
from gateway.store.database import DEFAULT_DATA_DIR, redact_url, resolve_database, server_status, split_password
from gateway.store.embedded import (
    PGDATA_NAME,
    SERVER_LOG_NAME,
    SOCKET_PATH_MAX,
    DataDirectoryVersionError,
    bundled_major,
    ensure_embedded_server,
    running_embedded_server,
    socket_directory,
    stop_embedded_server,
)
from tests.cli_runner import run_cli
from tests.hub.harness import SERVE_CONFIG
from tests.database import DatabaseServer, external_test_database_url, temporary_data_dir

REPO = Path(__file__).resolve().parents[2]
UNREACHABLE_URL = "postgresql://nobody:secret@127.0.0.1:1/nothing"

embedded_only = pytest.mark.skipif(
    external_test_database_url() is not None,
    reason="embedded server lifecycle: runs in the embedded pass, not against the external server",
)

_GATEWAY = "import sys; from gateway.cli import main; sys.exit(main(sys.argv[1:]))"
_GATEWAY_AFTER_BARRIER = (
    "import sys; from gateway.cli import main; print('ready', flush=True); sys.stdin.readline(); "
    "sys.exit(main(sys.argv[1:]))"
)


def _environment() -> dict[str, str]:
    """The subprocess sees this checkout, and no database URL of the caller's."""
    environment = {key: value for key, value in os.environ.items() if key != "GATEWAY_DATABASE_URL"}
    environment["PYTHONPATH"] = str(REPO)
    return environment


def _gateway(*arguments: str) -> subprocess.CompletedProcess[str]:
    """`gateway ARGUMENTS` in a child process, waited for."""
    return subprocess.run([sys.executable, "-c", _GATEWAY, *arguments], capture_output=True, text=True,
                          env=_environment(), timeout=120)


def _fetch(dsn: str, query: str) -> list[asyncpg.Record]:
    async def run() -> list[asyncpg.Record]:
        connection = await asyncpg.connect(dsn, timeout=10)
        try:
            return await connection.fetch(query)
        finally:
            await connection.close()

    return asyncio.run(run())


def _execute(dsn: str, script: str) -> None:
    async def run() -> None:
        connection = await asyncpg.connect(dsn, timeout=10)
        try:
            await connection.execute(script)
        finally:
            await connection.close()

    asyncio.run(run())


def _postmaster_pid(data_dir: Path) -> int:
    return int((data_dir / PGDATA_NAME / "postmaster.pid").read_text().splitlines()[0])


def _is_alive(pid: int) -> bool:
    """The process runs (a zombie, exited but not yet reaped, does not count)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.fixture
def data_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A data directory of this test's own; its embedded server is stopped afterwards."""
    monkeypatch.delenv("GATEWAY_DATABASE_URL", raising=False)
    with temporary_data_dir() as directory:
        yield directory


# --- which database ------------------------------------------------------------------


def test_the_database_url_option_wins_over_the_environment_and_the_config(tmp_path):
    database = resolve_database("postgresql://cli@h/db", "postgresql://config@h/db", tmp_path,
                                environ={"GATEWAY_DATABASE_URL": "postgresql://env@h/db"})
    assert (database.dsn, database.embedded, database.source) == ("postgresql://cli@h/db", False, "--database-url")


def test_the_environment_wins_over_the_config(tmp_path):
    database = resolve_database(None, "postgresql://config@h/db", tmp_path,
                                environ={"GATEWAY_DATABASE_URL": "postgresql://env@h/db"})
    assert (database.dsn, database.source) == ("postgresql://env@h/db", "GATEWAY_DATABASE_URL")


def test_the_config_url_wins_over_the_embedded_server(tmp_path):
    database = resolve_database(None, "postgresql://config@h/db", tmp_path, environ={"GATEWAY_DATABASE_URL": ""})
    assert (database.dsn, database.source) == ("postgresql://config@h/db", "config database_url")


def test_with_no_url_the_embedded_server_of_the_default_data_dir_is_used(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    database = resolve_database(None, None, None, environ={})
    assert database.embedded and database.source == "embedded"
    assert database.data_dir == (tmp_path / DEFAULT_DATA_DIR).resolve()
    assert database.dsn.startswith("postgresql://postgres@/postgres?host=")


def test_a_url_that_is_not_postgresql_is_refused_naming_its_source(tmp_path):
    with pytest.raises(StoreError, match="GATEWAY_DATABASE_URL must start with postgresql://"):
        resolve_database(None, None, tmp_path, environ={"GATEWAY_DATABASE_URL": "mysql://u:pw@h/db"})


def test_a_password_is_never_shown(tmp_path):
    database = resolve_database("postgresql://gateway:hunter2@db.example:5432/gba", None, tmp_path, environ={})
    assert "hunter2" not in database.describe() and "gateway:***@db.example:5432" in database.describe()
    as_parameter = resolve_database("postgresql://db.example/gba?user=gateway&password=hunter2&sslmode=disable",
                                    None, tmp_path, environ={})
    assert as_parameter.describe().startswith("postgresql://db.example/gba?user=gateway&password=***&sslmode=disable")


def test_the_socket_goes_in_pgdata_unless_its_path_would_be_too_long(tmp_path):
    short = tmp_path / "data" / PGDATA_NAME
    assert socket_directory(short) == short
    long = Path("/" + "d" * (SOCKET_PATH_MAX - len("/.s.PGSQL.5432"))) / PGDATA_NAME
    fallback = socket_directory(long)
    assert fallback.parent == Path("/tmp") and fallback.name.startswith("gateway-pg-")
    assert socket_directory(long) == fallback  # the same folder for every process


# --- the embedded server's lifecycle -------------------------------------------------


@embedded_only
def test_start_runs_a_detached_socket_only_server_that_outlives_the_starting_process(data_dir):
    started = _gateway("db", "start", "--data-dir", str(data_dir))
    assert started.returncode == 0, started.stderr
    dsn = started.stdout.strip()
    pid = _postmaster_pid(data_dir)
    assert os.getsid(pid) == pid != os.getsid(0)  # a session of its own: no terminal signal reaches it

    settings = {row["name"]: row["setting"] for row in _fetch(
        dsn, "SELECT name, setting FROM pg_settings WHERE name IN ('listen_addresses', 'fsync', 'server_version_num')")}
    assert settings == {"listen_addresses": "", "fsync": "on", "server_version_num": settings["server_version_num"]}
    assert settings["server_version_num"].startswith(bundled_major())
    if os.geteuid() == 0:
        assert (data_dir / PGDATA_NAME).owner() == "embedded_postgres"
        assert Path(f"/proc/{pid}").owner() == "embedded_postgres"


@embedded_only
def test_two_processes_starting_together_share_one_server(data_dir):
    command = [sys.executable, "-c", _GATEWAY_AFTER_BARRIER, "db", "start", "--data-dir", str(data_dir)]
    children = [subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True, env=_environment()) for _ in range(2)]
    try:
        for child in children:  # both have imported the gateway and wait at the barrier
            assert child.stdout is not None and child.stdout.readline() == "ready\n"
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        results = [child.communicate(timeout=120) for child in children]
    finally:
        for child in children:
            child.kill()
            child.wait()
    assert [child.returncode for child in children] == [0, 0], results
    pid = _postmaster_pid(data_dir)
    urls = {stdout.strip() for stdout, _ in results}
    assert len(urls) == 1
    messages = sorted(stderr for _, stderr in results)
    assert sum(f"started (pid {pid}," in message for message in messages) == 1, messages
    assert sum(f"already running (pid {pid}," in message for message in messages) == 1, messages
    assert _fetch(urls.pop(), "SELECT pg_backend_pid() AS backend")[0]["backend"] != pid


@embedded_only
def test_status_then_stop_then_status(data_dir):
    server = ensure_embedded_server(data_dir)
    status = run_cli("db", "status", "--data-dir", str(data_dir))
    assert status.status == 0, status.stderr
    assert "reachable: yes" in status.stdout and f"pid: {server.pid}" in status.stdout
    assert f"server: PostgreSQL {bundled_major()}." in status.stdout

    stopped = run_cli("db", "stop", "--data-dir", str(data_dir))
    assert stopped.status == 0 and "stopped" in stopped.stderr
    assert not _is_alive(server.pid)
    assert running_embedded_server(data_dir) is None
    assert not asyncio.run(server_status(server.dsn, timeout=2)).reachable

    status = run_cli("db", "status", "--data-dir", str(data_dir))
    assert status.status == 1 and "reachable: no" in status.stdout and "gateway db start" in status.stderr
    again = run_cli("db", "stop", "--data-dir", str(data_dir))
    assert again.status == 0 and "no embedded PostgreSQL was running" in again.stderr


@embedded_only
def test_the_dsn_works_with_asyncpg_and_a_restart_keeps_the_data(data_dir):
    first = ensure_embedded_server(data_dir)
    _execute(first.dsn, "CREATE TABLE kept (n int); INSERT INTO kept VALUES (42)")
    assert stop_embedded_server(data_dir)
    second = ensure_embedded_server(data_dir)
    assert second.started and second.pid != first.pid and second.dsn == first.dsn
    assert [row["n"] for row in _fetch(second.dsn, "SELECT n FROM kept")] == [42]
    assert ensure_embedded_server(data_dir).started is False


@embedded_only
def test_a_data_dir_too_long_for_a_socket_name_gets_its_socket_in_tmp(data_dir):
    long_data_dir = data_dir / ("long-" + "x" * SOCKET_PATH_MAX)
    try:
        server = ensure_embedded_server(long_data_dir)
        assert server.socket_dir == socket_directory(long_data_dir / PGDATA_NAME) != long_data_dir / PGDATA_NAME
        assert resolve_database(None, None, long_data_dir, environ={}).dsn == server.dsn
        assert _fetch(server.dsn, "SELECT 1 AS one")[0]["one"] == 1
    finally:
        stop_embedded_server(long_data_dir)
    assert not server.socket_dir.exists()


@embedded_only
def test_a_data_directory_of_another_major_version_is_refused_with_the_upgrade_path(data_dir):
    other = str(int(bundled_major()) - 1)
    (data_dir / PGDATA_NAME).mkdir(parents=True)
    (data_dir / PGDATA_NAME / "PG_VERSION").write_text(f"{other}\n")

    result = run_cli("db", "start", "--data-dir", str(data_dir))
    assert result.status == 1
    assert f"PostgreSQL {other}" in result.stderr and f"PostgreSQL {bundled_major()}" in result.stderr
    assert "docs/database.md" in result.stderr and "gateway db backup" in result.stderr
    assert sorted(path.name for path in (data_dir / PGDATA_NAME).iterdir()) == ["PG_VERSION"]
    with pytest.raises(DataDirectoryVersionError):
        running_embedded_server(data_dir)
    assert run_cli("db", "status", "--data-dir", str(data_dir)).status == 1


@embedded_only
def test_a_non_empty_folder_that_is_no_data_directory_is_refused(data_dir):
    (data_dir / PGDATA_NAME).mkdir(parents=True)
    (data_dir / PGDATA_NAME / "notes.txt").write_text("mine")
    result = run_cli("db", "start", "--data-dir", str(data_dir))
    assert result.status == 1 and "not a PostgreSQL data directory" in result.stderr


def test_the_embedded_server_log_keeps_no_value_from_a_failed_statement(database_server: DatabaseServer, database_url):
    if database_server.data_dir is None:
        pytest.skip("the external server's log is configured by its operator")
    person = "Chan Tai Man A123456(7)"
    _execute(database_url, f"CREATE TABLE people (name text PRIMARY KEY); INSERT INTO people VALUES ('{person}')")
    for failing in (f"INSERT INTO people VALUES ('{person}')", f"SELECT '{person}'::int"):
        with pytest.raises(asyncpg.PostgresError):
            _execute(database_url, failing)  # the server logs before it answers the client
    log = (database_server.data_dir / PGDATA_NAME / SERVER_LOG_NAME).read_text("utf-8")
    assert "ready to accept connections" in log
    assert "Chan Tai Man" not in log and "A123456" not in log


def test_start_and_stop_refuse_an_external_database(tmp_path, monkeypatch):
    for verb in ("start", "stop"):
        result = run_cli("db", verb, "--data-dir", str(tmp_path), "--database-url", UNREACHABLE_URL)
        assert result.status == 1 and "manages only the embedded server" in result.stderr
        assert "secret" not in result.stderr
    monkeypatch.setenv("GATEWAY_DATABASE_URL", UNREACHABLE_URL)
    result = run_cli("db", "start", "--data-dir", str(tmp_path))
    assert result.status == 1 and "from GATEWAY_DATABASE_URL" in result.stderr
    assert not (tmp_path / PGDATA_NAME).exists()


# --- status, backup and restore: embedded or external --------------------------------


def test_status_reports_a_reachable_server_and_its_version(database_server: DatabaseServer, database_url):
    result = run_cli("db", "status", "--database-url", database_url)
    assert result.status == 0, result.stderr
    assert "reachable: yes" in result.stdout
    version = asyncio.run(server_status(database_url)).version_num
    assert version is not None and 150000 <= version < 190000
    assert f"server: PostgreSQL {version // 10000}." in result.stdout


def test_status_of_an_unreachable_server_fails(tmp_path):
    result = run_cli("db", "status", "--database-url", UNREACHABLE_URL)
    assert result.status == 1 and "reachable: no" in result.stdout and "cannot connect" in result.stderr
    assert "secret" not in result.stdout + result.stderr


def _fill(dsn: str, rows: int) -> None:
    async def run() -> None:
        connection = await asyncpg.connect(dsn)
        try:
            await connection.execute("CREATE TABLE case_files (id int PRIMARY KEY, leaf bytea NOT NULL, note text)")
            await connection.copy_records_to_table(
                "case_files", records=[(n, os.urandom(64), f"案件 {n} — ü") for n in range(rows)])
        finally:
            await connection.close()

    asyncio.run(run())


def _rows(dsn: str) -> list[tuple]:
    return [tuple(row) for row in _fetch(dsn, "SELECT id, leaf, note FROM case_files ORDER BY id")]


def _objects(dsn: str) -> list[str]:
    query = "SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE nspname = 'public'"
    return [row["relname"] for row in _fetch(dsn, query)]


def test_backup_then_restore_into_a_fresh_data_dir_reproduces_the_rows(database_url, tmp_path, monkeypatch):
    """With GATEWAY_TEST_DATABASE_URL on an older server, this is the major-version upgrade path."""
    monkeypatch.delenv("GATEWAY_DATABASE_URL", raising=False)
    _fill(database_url, 500)
    archive = tmp_path / "gateway.backup"
    backup = run_cli("db", "backup", str(archive), "--database-url", database_url)
    assert backup.status == 0, backup.stderr
    assert archive.stat().st_mode & 0o777 == 0o600, "TOTP secrets and password hashes: the owner's only"
    with temporary_data_dir() as fresh:
        restore = run_cli("db", "restore", str(archive), "--data-dir", str(fresh))
        assert restore.status == 0, restore.stderr
        restored = running_embedded_server(fresh)
        assert restored is not None and _rows(restored.dsn) == _rows(database_url)


def test_backup_then_restore_into_a_new_database_of_the_same_server(database_server: DatabaseServer, database_url,
                                                                     tmp_path):
    _fill(database_url, 200)
    archive = tmp_path / "gateway.backup"
    assert run_cli("db", "backup", str(archive), "--database-url", database_url).status == 0
    with database_server.fresh_database() as target:
        restore = run_cli("db", "restore", str(archive), "--database-url", target)
        assert restore.status == 0, restore.stderr
        assert _rows(target) == _rows(database_url)


def test_a_backup_never_overwrites_a_file(database_url, tmp_path):
    archive = tmp_path / "gateway.backup"
    archive.write_bytes(b"older backup")
    result = run_cli("db", "backup", str(archive), "--database-url", database_url)
    assert result.status == 1 and "never overwritten" in result.stderr
    assert archive.read_bytes() == b"older backup"
    assert list(tmp_path.iterdir()) == [archive]


def test_restore_refuses_a_database_that_is_not_empty(database_server: DatabaseServer, database_url, tmp_path):
    _fill(database_url, 10)
    archive = tmp_path / "gateway.backup"
    assert run_cli("db", "backup", str(archive), "--database-url", database_url).status == 0
    with database_server.fresh_database() as target:
        _execute(target, "CREATE TABLE local_notes (n int); INSERT INTO local_notes VALUES (1)")
        result = run_cli("db", "restore", str(archive), "--database-url", target)
        assert result.status == 1, result.stderr
        assert "not empty" in result.stderr and "public.local_notes" in result.stderr
        assert sorted(_objects(target)) == ["local_notes"]
        assert [row["n"] for row in _fetch(target, "SELECT n FROM local_notes")] == [1]


def test_a_truncated_backup_restores_nothing(database_server: DatabaseServer, database_url, tmp_path):
    _fill(database_url, 3000)  # ~200 kB of random bytes: the cut lands in the table's data
    archive = tmp_path / "gateway.backup"
    assert run_cli("db", "backup", str(archive), "--database-url", database_url).status == 0
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) * 2 // 3])
    with database_server.fresh_database() as target:
        result = run_cli("db", "restore", str(archive), "--database-url", target)
        assert result.status == 1 and "Nothing was restored" in result.stderr, result.stderr
        assert _objects(target) == []


def test_a_restore_that_fails_half_way_leaves_nothing_behind(database_server: DatabaseServer, database_url, tmp_path):
    # A classic: a CHECK that calls a function reading a table by its unqualified name
    # holds in the source, but fails in a restore, whose search_path is empty, while the
    # rows are loaded: the tables exist by then, and some rows may be in.
    _fill(database_url, 50)
    _execute(database_url, """
        CREATE TABLE codes (n int);
        INSERT INTO codes SELECT generate_series(0, 49);
        CREATE FUNCTION code_exists(k int) RETURNS boolean LANGUAGE sql
            AS 'SELECT EXISTS (SELECT 1 FROM codes WHERE n = k)';
        ALTER TABLE case_files ADD CONSTRAINT known_code CHECK (code_exists(id));
    """)
    archive = tmp_path / "gateway.backup"
    assert run_cli("db", "backup", str(archive), "--database-url", database_url).status == 0
    with database_server.fresh_database() as target:
        result = run_cli("db", "restore", str(archive), "--database-url", target)
        assert result.status == 1, result.stderr
        assert "rolled back, nothing was restored" in result.stderr and "codes" in result.stderr
        assert _objects(target) == []


def test_restore_of_a_file_that_is_no_backup_restores_nothing(database_url, tmp_path):
    archive = tmp_path / "notes.txt"
    archive.write_text("CREATE TABLE sneaky (n int);\n")
    result = run_cli("db", "restore", str(archive), "--database-url", database_url)
    assert result.status == 1 and "Nothing was restored" in result.stderr
    assert _objects(database_url) == []


def _with_user_part(url: str, user_part: str) -> str:
    """`url` with its user part (before the @) replaced."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{user_part}@{rest.partition('@')[2]}"


def _config(folder: Path, top: str) -> Path:
    """A test-mode configuration with `top` among its top-level keys."""
    path = folder / "gateway.toml"
    path.write_text(SERVE_CONFIG.replace("[hub]", f"{top}\n[hub]", 1), "utf-8")
    return path


def test_backup_and_restore_take_the_database_from_the_configuration(database_url, tmp_path, monkeypatch):
    # A site that names its database only in gateway.toml: the backup is of that database, not of a new
    # empty embedded cluster in ./var/gateway, and a restore goes into the configured data directory.
    monkeypatch.delenv("GATEWAY_DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    _fill(database_url, 40)
    archive = tmp_path / "gateway.backup"
    backup = run_cli("db", "backup", str(archive), "--config", str(_config(tmp_path, f'database_url = "{database_url}"')))
    assert backup.status == 0, backup.stderr
    assert not (tmp_path / DEFAULT_DATA_DIR).exists(), "no embedded cluster was made in ./var/gateway"
    with temporary_data_dir() as fresh:
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        restore = run_cli("db", "restore", str(archive), "--config", str(_config(elsewhere, f'data_dir = "{fresh}"')))
        assert restore.status == 0, restore.stderr
        restored = running_embedded_server(fresh)
        assert restored is not None and _rows(restored.dsn) == _rows(database_url)


def test_a_backup_of_a_data_directory_without_a_database_makes_none(tmp_path, monkeypatch):
    monkeypatch.delenv("GATEWAY_DATABASE_URL", raising=False)
    empty = tmp_path / "typo"
    result = run_cli("db", "backup", str(tmp_path / "gateway.backup"), "--data-dir", str(empty))
    assert result.status == 1 and "holds no embedded PostgreSQL database" in result.stderr, result.stderr
    assert list(tmp_path.iterdir()) == [], "neither a cluster nor a backup file"


def test_a_configuration_that_cannot_be_read_is_reported_not_a_traceback(tmp_path):
    broken = tmp_path / "gateway.toml"
    broken.write_text("mode = \n", "utf-8")
    result = run_cli("db", "backup", str(tmp_path / "gateway.backup"), "--config", str(broken))
    assert result.status == 1 and result.stderr.startswith("gateway: error: ") and "Traceback" not in result.stderr
    assert not (tmp_path / "gateway.backup").exists()


def test_the_tools_get_the_password_in_their_environment_never_on_their_command_line():
    # A command line is readable by every local user (/proc/PID/cmdline); libpq also repeats a malformed
    # password in its error message.
    assert split_password("postgresql://gba:S%40c%25r@db.example:5432/gba?sslmode=require") == (
        "postgresql://gba@db.example:5432/gba?sslmode=require", "S@c%r")
    assert split_password("postgresql://db.example/gba?user=gba&password=hunter2&sslmode=disable") == (
        "postgresql://db.example/gba?user=gba&sslmode=disable", "hunter2")
    assert split_password("postgresql://gba@db.example/gba") == ("postgresql://gba@db.example/gba", None)
    assert split_password("postgresql:///gba?host=/run/postgresql&password=a&password=&password=b") == (
        "postgresql:///gba?host=/run/postgresql", "b"), "the // before an empty host kept; asyncpg's choice of value"
    assert split_password("postgresql://db.example/gba?pass%77ord=s3cret#frag") == ("postgresql://db.example/gba", "s3cret"), \
        "an encoded name is still the password; a fragment, which asyncpg ignores, is not made part of the database name"
    assert "s3cret" not in redact_url("postgresql://db.example/gba?pass%77ord=s3cret")
    target = _Target("postgresql://gba:Sec%ret99@db.example/gba")
    assert "Sec" not in target.argument and target.environment["PGPASSWORD"] == "Sec%ret99"
    assert target.tail(io.BytesIO(b"FATAL: password Sec%ret99 rejected")) == "FATAL: password *** rejected"


def test_backup_and_restore_work_with_a_password_that_libpq_could_not_parse(database_server: DatabaseServer,
                                                                            database_url, tmp_path):
    # The test servers trust their clients, so the password is not checked: it must only not break or show.
    _fill(database_url, 30)
    user = database_url.partition("://")[2].partition("@")[0]
    archive = tmp_path / "gateway.backup"
    backup = run_cli("db", "backup", str(archive), "--database-url", _with_user_part(database_url, f"{user}:Sec%ret99"))
    assert backup.status == 0, backup.stderr
    with database_server.fresh_database() as target:
        restore = run_cli("db", "restore", str(archive), "--database-url", _with_user_part(target, f"{user}:Sec%ret99"))
        assert restore.status == 0, restore.stderr
        assert _rows(target) == _rows(database_url)
    assert "Sec%ret99" not in backup.stderr + restore.stderr


def _without_host_part(url: str) -> str:
    """`url` as `postgresql:///DB?host=...&port=...&user=...`: everything in the query, nothing before the path."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.setdefault("host", parts.hostname or "")
    if parts.port:
        query.setdefault("port", str(parts.port))
    query.setdefault("user", parts.username or "")
    return f"postgresql://{parts.path}?{urlencode(query)}"


def test_backup_and_restore_take_a_url_with_no_host_part(database_server: DatabaseServer, database_url, tmp_path):
    _fill(database_url, 20)
    archive = tmp_path / "gateway.backup"
    backup = run_cli("db", "backup", str(archive), "--database-url", _without_host_part(database_url))
    assert backup.status == 0, backup.stderr
    with database_server.fresh_database() as target:
        restore = run_cli("db", "restore", str(archive), "--database-url", _without_host_part(target))
        assert restore.status == 0, restore.stderr
        assert _rows(target) == _rows(database_url)


def test_a_restore_the_server_refuses_says_why(database_server: DatabaseServer, database_url, tmp_path):
    # psql stops at the first statement (no CREATE on schema public) while pg_restore still has ~400 kB to
    # write: pg_restore dies of SIGPIPE, and the error to report is psql's.
    _fill(database_url, 3000)
    archive = tmp_path / "gateway.backup"
    assert run_cli("db", "backup", str(archive), "--database-url", database_url).status == 0
    role = f"gba_test_restricted_{secrets.token_hex(4)}"
    with database_server.fresh_database() as target:
        _execute(database_server.admin_url, f'CREATE ROLE "{role}" LOGIN')
        try:
            result = run_cli("db", "restore", str(archive), "--database-url", _with_user_part(target, role))
        finally:
            _execute(database_server.admin_url, f'DROP ROLE "{role}"')
        assert result.status == 1, result.stderr
        assert "rolled back, nothing was restored" in result.stderr and "permission denied" in result.stderr, result.stderr
        assert _objects(target) == []


def test_the_restore_script_loses_pg_attver_and_old_servers_lose_transaction_timeout_but_data_is_untouched():
    script = (b"SET transaction_timeout = 0;\n"
              b"CREATE TABLE public.t (n int, s text);\n"
              b"ALTER TABLE ONLY public.t ALTER COLUMN n SET (pg_attver=93408776);\n"
              b"ALTER TABLE ONLY public.t ALTER COLUMN s SET (n_distinct=-1, pg_attver=93408776);\n"
              b"COPY public.t (n, s) FROM stdin;\n"
              b"1\tALTER TABLE ONLY public.t ALTER COLUMN n SET (pg_attver=1);\n"
              b"2\tSET transaction_timeout = 0;\n"
              b"\\.\n"
              b"SELECT 1;\n")
    for old_server in (True, False):
        out = io.BytesIO()
        _copy(io.BytesIO(script), out, drop_transaction_timeout=old_server)
        assert out.getvalue() == (b"" if old_server else b"SET transaction_timeout = 0;\n") + (
            b"CREATE TABLE public.t (n int, s text);\n"
            b"ALTER TABLE ONLY public.t ALTER COLUMN s SET (n_distinct=-1);\n") + script[script.index(b"COPY"):]
