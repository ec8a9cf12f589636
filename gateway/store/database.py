"""Which database a command uses, and whether it answers (docs/database.md, "Which database").

Precedence, first found wins: `--database-url URL`, the environment variable
`GATEWAY_DATABASE_URL`, the config file's `database_url`, and else the embedded server
of the data directory (`--data-dir`, default `./var/gateway`). Resolving starts
nothing; `gateway.store.embedded.ensure_embedded_server` does.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import SplitResult, unquote, unquote_plus, urlsplit

import asyncpg

from gateway.store import StoreError
from gateway.store.embedded import PGDATA_NAME, embedded_dsn, socket_directory

DEFAULT_DATA_DIR = Path("var/gateway")
"""Relative to the working directory of the command."""
DATABASE_URL_VARIABLE = "GATEWAY_DATABASE_URL"
_SCHEMES = ("postgresql", "postgres")


@dataclass(frozen=True, slots=True)
class Database:
    """The database a command will use."""

    dsn: str
    """asyncpg- and libpq-compatible URL (for the embedded server: its socket URL)."""
    embedded: bool
    data_dir: Path
    """Absolute; holds the embedded server (unused by an external database)."""
    source: str
    """Where the choice came from: "--database-url", "GATEWAY_DATABASE_URL", "config database_url" or "embedded"."""

    def describe(self) -> str:
        """One line for people: what and where, never a password."""
        if self.embedded:
            return f"the embedded PostgreSQL in {self.data_dir / PGDATA_NAME}"
        return f"{redact_url(self.dsn)} (from {self.source})"


def resolve_database(
    cli_url: str | None,
    config_url: str | None,
    data_dir: Path | None,
    environ: Mapping[str, str] = os.environ,
) -> Database:
    """The database to use, by the precedence in this module's docstring. Empty values count as unset."""
    directory = Path(os.path.abspath(data_dir or DEFAULT_DATA_DIR)).resolve()
    for url, source in (
        (cli_url, "--database-url"),
        (environ.get(DATABASE_URL_VARIABLE), DATABASE_URL_VARIABLE),
        (config_url, "config database_url"),
    ):
        if url:
            _check_url(url, source)
            return Database(url, embedded=False, data_dir=directory, source=source)
    return Database(embedded_dsn(socket_directory(directory / PGDATA_NAME)), True, directory, "embedded")


def _check_url(url: str, source: str) -> None:
    if urlsplit(url).scheme not in _SCHEMES:
        raise StoreError(f"the database URL from {source} must start with postgresql://, not {redact_url(url)!r}")


def redact_url(url: str) -> str:
    """`url` with any password (in the user part or a `password=` parameter) replaced by ***."""
    parts = urlsplit(url)
    if parts.password is not None:
        user = parts.username or ""
        host = parts.netloc.rpartition("@")[2]
        parts = parts._replace(netloc=f"{user}:***@{host}")
    if parts.query:
        fields = [f"{field.partition('=')[0]}=***" if unquote_plus(field.partition("=")[0]) == "password" else field
                  for field in parts.query.split("&")]
        parts = parts._replace(query="&".join(fields))
    return _unsplit(parts)


def split_password(url: str) -> tuple[str, str | None]:
    """`url` without its password (user part and `password=` parameter), and that password, percent-decoded.

    For handing a URL to libpq's tools (pg_dump, psql): a password on a command line is visible to every
    local user in /proc/PID/cmdline, and libpq repeats a malformed one in its error message; the tools take
    it from the PGPASSWORD environment variable instead. Decoding follows asyncpg's (a malformed escape is
    kept as it is), so the tools get the password the gateway itself connects with.
    """
    parts = urlsplit(url)
    password = query_password = None
    user, at, host = parts.netloc.partition("@")
    if at and ":" in user:
        user, _, secret = user.partition(":")
        password = unquote(secret) or None
        parts = parts._replace(netloc=f"{user}@{host}")
    if parts.query:
        fields = []
        for field in parts.query.split("&"):
            name, _, value = field.partition("=")
            if unquote_plus(name) != "password":
                fields.append(field)
            elif value:  # as asyncpg reads a query (parse_qs): blank values dropped, the last one wins
                query_password = unquote_plus(value)
        parts = parts._replace(query="&".join(fields))
    # asyncpg ignores a #fragment; libpq would read it into the database name: the tools get the gateway's database.
    return _unsplit(parts._replace(fragment="")), password or query_password  # the user part's password wins


def _unsplit(parts: SplitResult) -> str:
    """`urlunsplit`, but keeping `//` before an empty host (`postgresql:///db?host=/run/postgresql`): urllib
    drops it for schemes it does not know, and libpq then refuses the URL."""
    text = f"{parts.scheme}://{parts.netloc}{parts.path}"
    return text + (f"?{parts.query}" if parts.query else "") + (f"#{parts.fragment}" if parts.fragment else "")


def with_database_name(url: str, name: str) -> str:
    """`url` pointing at database `name` on the same server, with the same options."""
    return _unsplit(urlsplit(url)._replace(path=f"/{name}"))


def dead_peer_settings(seconds: float) -> dict[str, str]:
    """Server settings that make PostgreSQL drop a TCP connection whose client has gone silent for about `seconds`.

    A host that vanishes without closing its connections (power lost, network cut) otherwise keeps them, and its
    locks, pull leases and registry place, until the server's operating system gives up on them: two hours and more
    by default. With these, the server starts probing a connection that has been idle for half of `seconds`, and drops
    it once `seconds` pass with no answer: to the probes (`tcp_keepalives_*`), or to data it sent (`tcp_user_timeout`).
    The client's kernel answers the probes, so a live process is never dropped however long its statements run.
    PostgreSQL ignores these on a Unix socket, where client and server share the host (the embedded server).
    """
    idle = max(1, math.ceil(seconds / 2))
    probes = 3
    interval = max(1, math.ceil((seconds - idle) / probes))
    return {
        "tcp_keepalives_idle": str(idle),
        "tcp_keepalives_interval": str(interval),
        "tcp_keepalives_count": str(probes),
        "tcp_user_timeout": str(math.ceil(seconds * 1000)),
    }


@dataclass(frozen=True, slots=True)
class ServerStatus:
    reachable: bool
    version: str | None = None
    """`server_version` as the server reports it, e.g. "18.6" or "15.20 (Debian 15.20-0+deb12u1)"."""
    version_num: int | None = None
    """`server_version_num`, e.g. 180006."""
    error: str | None = None


async def server_status(dsn: str, timeout: float = 5.0) -> ServerStatus:
    """Connect to `dsn` and read the server version; never raises for an unreachable server."""
    try:
        connection = await asyncpg.connect(dsn, timeout=timeout)
    except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError, ValueError) as error:
        return ServerStatus(False, error=str(error) or type(error).__name__)
    try:
        version = await connection.fetchval("SHOW server_version")
        version_num = int(await connection.fetchval("SHOW server_version_num"))
    finally:
        await connection.close()
    return ServerStatus(True, version, version_num)
