"""PostgreSQL for the tests: one server per session, one fresh database per test (docs/database.md, "Tests").

The server is the embedded one, in a temporary data directory, unless
`GATEWAY_TEST_DATABASE_URL` names an external server (any database on it that the
role can connect to; the role must be allowed to CREATE DATABASE). Each test that
asks for `database_url` gets its own empty database `gba_test_<random>`, dropped
(WITH (FORCE)) after the test, so tests never share state. At the end of the session
the embedded test server is stopped.

Loaded as a plugin from tests/conftest.py: `pytest_plugins = ("tests.database",)`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from gateway.store.database import with_database_name
from gateway.store.embedded import ensure_embedded_server, stop_embedded_server

TEST_DATABASE_URL_VARIABLE = "GATEWAY_TEST_DATABASE_URL"
TEST_DATABASE_PREFIX = "gba_test_"


def external_test_database_url() -> str | None:
    """The external server's URL when the run targets one, else None (the embedded server)."""
    return os.environ.get(TEST_DATABASE_URL_VARIABLE) or None


@dataclass(frozen=True, slots=True)
class DatabaseServer:
    """The session's PostgreSQL server, and how to make throwaway databases on it."""

    admin_url: str
    """A URL to a database on the server that stays; CREATE and DROP DATABASE run from it."""
    embedded: bool
    data_dir: Path | None
    """The embedded server's data directory; None for an external server."""

    @contextlib.contextmanager
    def fresh_database(self) -> Iterator[str]:
        """A new empty database for the duration of the block; yields its URL."""
        name = TEST_DATABASE_PREFIX + secrets.token_hex(6)
        self._execute(f'CREATE DATABASE "{name}"')
        try:
            yield with_database_name(self.admin_url, name)
        finally:
            self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def _execute(self, statement: str) -> None:
        """Run one statement on the admin database, in a worker thread: a module's Playwright browser
        (tests/browser.py) may hold the main thread's event loop, where `asyncio.run` cannot start."""

        async def run() -> None:
            connection = await asyncpg.connect(self.admin_url, timeout=10)
            try:
                await connection.execute(statement)
            finally:
                await connection.close()

        with concurrent.futures.ThreadPoolExecutor(1) as worker:
            worker.submit(asyncio.run, run()).result()


@contextlib.contextmanager
def temporary_data_dir() -> Iterator[Path]:
    """A new gateway data directory; its embedded server is stopped and the folder removed afterwards.

    It lies outside pytest's tmp_path on purpose: as root the server runs as another
    user, who must be able to reach it, and every pytest session (any other run on
    the machine included) resets /tmp/pytest-of-USER to mode 0700.
    """
    folder = Path(tempfile.mkdtemp(prefix="gba-test-"))
    data_dir = folder / "data"
    try:
        yield data_dir
    finally:
        try:
            stop_embedded_server(data_dir)
        finally:
            shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def database_server() -> Iterator[DatabaseServer]:
    """The session's server: external if GATEWAY_TEST_DATABASE_URL is set, else embedded (stopped at the end)."""
    external = external_test_database_url()
    if external is not None:
        yield DatabaseServer(external, embedded=False, data_dir=None)
        return
    with temporary_data_dir() as data_dir:
        server = ensure_embedded_server(data_dir)
        yield DatabaseServer(server.dsn, embedded=True, data_dir=data_dir)


@pytest.fixture
def database_url(database_server: DatabaseServer) -> Iterator[str]:
    """The URL of a new, empty database of this test's own, dropped afterwards."""
    with database_server.fresh_database() as url:
        yield url
