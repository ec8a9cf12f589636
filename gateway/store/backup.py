"""`gateway db backup|restore`: one database to one file and back (docs/database.md, "Backup and restore").

A backup is a pg_dump custom-format archive made with the wheel's PostgreSQL tools,
so it works the same for the embedded server and for an external one (PostgreSQL 15
to 18). A restore goes only into an empty database and all at once: the archive is
replayed by psql in a single transaction that stops at the first error, and if
pg_restore cannot read the whole archive the load is killed before it can commit.
Either everything is restored or nothing is.

Restores are replayed through psql, not by pg_restore itself, so that two things a
target cannot take are left out on the way:
- `SET transaction_timeout = 0`, which pg_restore 17+ always sends and servers before
  17 do not know (only for such a target);
- the column option `pg_attver=N`, which PostgreSQL 15.20 (Debian's build, seen in
  CI) keeps on every column: that server's own pg_dump leaves it out, the wheel's
  pg_dump 18.6 dumps it, and PostgreSQL 18.6 refuses it as an unknown parameter.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import asyncpg

from gateway.store import StoreError
from gateway.store.database import split_password
from gateway.store.embedded import tool

TRANSACTION_TIMEOUT_SINCE = 170000
"""server_version_num from which `transaction_timeout` exists."""
_TRANSACTION_TIMEOUT_LINE = b"SET transaction_timeout = 0;\n"
_END_OF_COPY_DATA = b"\\.\n"
_ATTVER = b"pg_attver="
_SET_COLUMN_OPTIONS = re.compile(rb"(?P<head>ALTER TABLE ONLY .+ ALTER COLUMN .+ SET \()(?P<options>[^()]*)\);\n")

# Everything a database holds besides PostgreSQL's own catalogs and the empty `public` schema.
_USER_OBJECTS = r"""
SELECT kind || ' ' || name AS object FROM (
    SELECT 'relation' AS kind, format('%I.%I', n.nspname, c.relname) AS name
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_%'
    UNION ALL
    SELECT 'schema', quote_ident(nspname) FROM pg_namespace
     WHERE nspname NOT IN ('public', 'pg_catalog', 'information_schema') AND nspname NOT LIKE 'pg\_%'
    UNION ALL
    SELECT 'function', p.oid::regprocedure::text
      FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public'
    UNION ALL
    SELECT 'type', format_type(t.oid, NULL)
      FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
     WHERE n.nspname = 'public' AND t.typrelid = 0 AND t.typcategory <> 'A'
    UNION ALL
    SELECT 'extension', quote_ident(extname) FROM pg_extension WHERE extname <> 'plpgsql'
) AS objects ORDER BY 1
"""


class BackupError(StoreError):
    """A backup or restore failed or was refused; nothing was half-done."""


@dataclass(frozen=True, slots=True)
class Backup:
    path: Path
    size: int


def backup_database(dsn: str, target: Path) -> Backup:
    """Write the database at `dsn` to the new file `target` (pg_dump custom format).

    Requires that `target` does not exist: backups are never overwritten. The archive
    appears under its name only once complete and on disk (written beside it, fsynced, linked).
    """
    target = Path(os.path.abspath(target))
    if target.exists():
        raise BackupError(f"{target} exists; backups are never overwritten: choose a new file name")
    if not target.parent.is_dir():
        raise BackupError(f"{target.parent} is not a folder: create it first")
    partial = target.with_name(f".{target.name}.partial-{secrets.token_hex(4)}")
    # The archive holds the officers' TOTP secrets and password hashes and every sealed payload: readable by its
    # owner only, like the cluster's folder (0700) and a subject's export (0600), whatever the umask. pg_dump
    # writes into the file made here and keeps its mode.
    try:
        os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError as error:
        raise BackupError(f"cannot write in {target.parent}: {error.strerror}") from None
    try:
        _run_tool(
            [str(tool("pg_dump")), "--format=custom", "--no-password", f"--file={partial}"],
            _Target(dsn), what="back up the database",
        )
        with open(partial, "rb") as archive:
            os.fsync(archive.fileno())
        try:
            os.link(partial, target)  # fails rather than replace a file made meanwhile
        except FileExistsError:
            raise BackupError(f"{target} appeared during the backup; backups are never overwritten") from None
        _fsync_folder(target.parent)
    finally:
        partial.unlink(missing_ok=True)
    return Backup(target, target.stat().st_size)


def restore_database(dsn: str, archive: Path) -> None:
    """Load `archive` (made by `backup_database`) into the empty database at `dsn`, all or nothing.

    Refuses a database that holds anything (tables, schemas, functions, types,
    extensions). Ownership and grants in the archive are not replayed: the restoring
    role owns everything, as the gateway's own role would.
    """
    archive = Path(os.path.abspath(archive))
    if not archive.is_file():
        raise BackupError(f"{archive} is not a file")
    version_num, objects = asyncio.run(_inspect_target(dsn))
    if objects:
        shown = ", ".join(objects[:3]) + (f" and {len(objects) - 3} more" if len(objects) > 3 else "")
        raise BackupError(
            f"the target database is not empty ({len(objects)} objects: {shown}); restore only into an empty "
            f"database: a fresh data directory (gateway db restore --data-dir NEW_DIR FILE) or a new database "
            f"(CREATE DATABASE, then --database-url). Nothing was restored."
        )
    _replay(archive, _Target(dsn), drop_transaction_timeout=version_num < TRANSACTION_TIMEOUT_SINCE)


async def _inspect_target(dsn: str) -> tuple[int, list[str]]:
    try:
        connection = await asyncpg.connect(dsn, timeout=10)
    except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError, ValueError) as error:
        raise BackupError(f"cannot connect to the target database: {error}") from None
    try:
        version_num = int(await connection.fetchval("SHOW server_version_num"))
        objects = [row["object"] for row in await connection.fetch(_USER_OBJECTS)]
    finally:
        await connection.close()
    return version_num, objects


class _Target:
    """How libpq's tools are pointed at a database: the URL on the command line, its password in the environment."""

    def __init__(self, dsn: str) -> None:
        self.url, self._password = split_password(dsn)
        self.environment = dict(os.environ)
        if self._password is not None:
            self.environment["PGPASSWORD"] = self._password

    @property
    def argument(self) -> str:
        return f"--dbname={self.url}"

    def tail(self, output: IO[bytes], lines: int = 8) -> str:
        """The last `lines` of a tool's messages, never with the password in them."""
        output.seek(0)
        text = output.read().decode("utf-8", errors="replace").strip()
        if self._password:
            text = text.replace(self._password, "***")
        return "\n".join(text.splitlines()[-lines:]) or "(no message)"


def _replay(archive: Path, target: _Target, drop_transaction_timeout: bool) -> None:
    """pg_restore ARCHIVE as SQL | psql --single-transaction; commit only if both succeed.

    If psql stops first (an error in the script), pg_restore loses its reader and dies of SIGPIPE: the
    failure to report is then psql's, not pg_restore's.
    """
    with tempfile.TemporaryFile() as restore_errors, tempfile.TemporaryFile() as load_errors:
        reader = subprocess.Popen(
            [str(tool("pg_restore")), "--no-owner", "--no-acl", "--file=-", str(archive)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=restore_errors,
        )
        loader = subprocess.Popen(
            [str(tool("psql")), "--no-psqlrc", "--quiet", "--no-password", "--single-transaction",
             "--set=ON_ERROR_STOP=1", "--file=-", target.argument],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=load_errors, env=target.environment,
        )
        assert reader.stdout is not None and loader.stdin is not None
        loader_stopped = False
        try:
            _copy(reader.stdout, loader.stdin, drop_transaction_timeout)
        except BrokenPipeError:
            loader_stopped = True  # psql stopped at an error; its status and message say which
        finally:
            reader.stdout.close()
        if reader.wait() != 0 and not loader_stopped:
            # psql's input is still open, so it has not committed: killing it rolls back.
            loader.kill()
            loader.wait()
            raise BackupError(f"cannot read {archive}: {target.tail(restore_errors)}. Nothing was restored.")
        try:
            loader.stdin.close()
        except BrokenPipeError:
            pass
        if loader.wait() != 0:
            raise BackupError(f"the restore failed and was rolled back, nothing was restored: {target.tail(load_errors)}")


def _copy(source: IO[bytes], sink: IO[bytes], drop_transaction_timeout: bool) -> None:
    """Pass the script on, leaving out two things a target cannot take (see the module docstring).

    Rows of COPY data (one line each, up to the `\\.` line) are passed on untouched.
    """
    in_copy_data = False
    for line in source:
        if in_copy_data:
            in_copy_data = line != _END_OF_COPY_DATA
        elif line.startswith(b"COPY ") and line.endswith(b" FROM stdin;\n"):
            in_copy_data = True
        elif drop_transaction_timeout and line == _TRANSACTION_TIMEOUT_LINE:
            continue
        elif _ATTVER in line:
            line = _without_attver(line)
        sink.write(line)


def _without_attver(line: bytes) -> bytes:
    """`ALTER TABLE ONLY t ALTER COLUMN c SET (options);` without the pg_attver option (or nothing)."""
    match = _SET_COLUMN_OPTIONS.fullmatch(line)
    if match is None:
        return line
    options = [option for option in match["options"].split(b", ") if not option.startswith(_ATTVER)]
    return match["head"] + b", ".join(options) + b");\n" if options else b""


def _run_tool(command: list[str], target: _Target, what: str) -> None:
    with tempfile.TemporaryFile() as errors:
        result = subprocess.run([*command, target.argument], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=errors, env=target.environment)
        if result.returncode != 0:
            raise BackupError(f"could not {what}: {target.tail(errors)}")


def _fsync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
