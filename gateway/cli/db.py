"""`gateway db start|stop|status|backup|restore`: the gateway's PostgreSQL (docs/database.md).

Every verb takes `--data-dir DIR`, `--database-url URL` and `--config FILE`; which
database it acts on follows the precedence of gateway/store/database.py (the
configuration's `database_url` and `data_dir` after the options and the environment).
`backup` never makes a new embedded cluster: an empty data directory is a wrong path.
Messages go to stderr; `start`
prints the database URL on stdout, `status` its report. Exit status: 0 done (or
reachable, for `status`); 1 failed, refused or unreachable, with the reason on stderr;
2 usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from gateway.cli.keys import configured_database
from gateway.cli.output import reporting
from gateway.config import ConfigError
from gateway.store import StoreError
from gateway.store.backup import backup_database, restore_database
from gateway.store.database import DATABASE_URL_VARIABLE, DEFAULT_DATA_DIR, Database, server_status
from gateway.store.embedded import ensure_embedded_server, running_embedded_server, stop_embedded_server


def register(commands: argparse._SubParsersAction) -> None:
    db = commands.add_parser(
        "db",
        help="start, stop, check, back up and restore the database",
        description="Without a database URL the gateway uses its embedded PostgreSQL in the data directory. "
        f"Which database: --database-url, else ${DATABASE_URL_VARIABLE}, else the configuration's database_url, "
        "else the embedded server in --data-dir or the configuration's data_dir (docs/database.md).",
    )
    verbs = db.add_subparsers(dest="verb", required=True, metavar="VERB")
    start = verbs.add_parser("start", help="start the embedded server (initialising it the first time); print its URL")
    stop = verbs.add_parser("stop", help="stop the embedded server, for every gateway process using it")
    status = verbs.add_parser("status", help="say whether the database answers, and its server version")
    backup = verbs.add_parser("backup", help="write the database to a new file (pg_dump custom format)")
    backup.add_argument("file", type=Path, help="the backup file to create (never overwritten)")
    restore = verbs.add_parser("restore", help="load a backup into an empty database, all or nothing")
    restore.add_argument("file", type=Path, help="a file made by `gateway db backup`")
    for verb, run in ((start, _start), (stop, _stop), (status, _status), (backup, _backup), (restore, _restore)):
        verb.add_argument("--config", type=Path, metavar="FILE", help="the gateway's TOML configuration (data_dir, database_url)")
        verb.add_argument("--data-dir", type=Path, help=f"the gateway's data directory (default ./{DEFAULT_DATA_DIR})")
        verb.add_argument("--database-url", help=f"an external PostgreSQL (postgresql://...); overrides ${DATABASE_URL_VARIABLE}")
        verb.set_defaults(run=_reporting_errors(run))


_reporting_errors = reporting("error", StoreError, ConfigError)
"""`run`, with a storage or configuration failure reported as `gateway: error: ...` and exit status 1."""


def _database(arguments: argparse.Namespace) -> Database:
    return configured_database(arguments)[0]


def _say(message: str) -> None:
    print(f"gateway: {message}", file=sys.stderr)


def _only_embedded(database: Database, verb: str) -> int:
    _say(
        f"error: `gateway db {verb}` manages only the embedded server, and this command uses "
        f"{database.describe()}; start and stop that server with its own tools"
    )
    return 1


def _start(arguments: argparse.Namespace) -> int:
    database = _database(arguments)
    if not database.embedded:
        return _only_embedded(database, "start")
    server = ensure_embedded_server(database.data_dir, notify=_say)
    if not server.started:
        _say(f"embedded PostgreSQL {server.version} already running (pid {server.pid}, data directory {server.data_dir})")
    print(server.dsn)
    return 0


def _stop(arguments: argparse.Namespace) -> int:
    database = _database(arguments)
    if not database.embedded:
        return _only_embedded(database, "stop")
    if stop_embedded_server(database.data_dir, notify=_say):
        _say(f"embedded PostgreSQL stopped (data directory {database.data_dir})")
    else:
        _say(f"no embedded PostgreSQL was running in {database.data_dir}")
    return 0


def _status(arguments: argparse.Namespace) -> int:
    database = _database(arguments)
    dsn = database.dsn
    print(f"database: {database.describe()}")
    if database.embedded:
        server = running_embedded_server(database.data_dir)
        if server is None:
            print("reachable: no")
            _say(f"no embedded PostgreSQL runs in {database.data_dir} (start it with `gateway db start`)")
            return 1
        print(f"pid: {server.pid}")
        print(f"socket: {server.socket_dir}")
        dsn = server.dsn
    status = asyncio.run(server_status(dsn))
    print(f"reachable: {'yes' if status.reachable else 'no'}")
    if not status.reachable:
        _say(f"error: cannot connect to {database.describe()}: {status.error}")
        return 1
    print(f"server: PostgreSQL {status.version}")
    return 0


def _ready(database: Database, initialise: bool = True) -> str:
    """The URL to use: an external one as is; the embedded server started if needed (and made, if `initialise`)."""
    if not database.embedded:
        return database.dsn
    return ensure_embedded_server(database.data_dir, notify=_say, initialise=initialise).dsn


def _backup(arguments: argparse.Namespace) -> int:
    database = _database(arguments)
    dsn = _ready(database, initialise=False)
    _say(f"backing up {database.describe()} to {arguments.file}")
    backup = backup_database(dsn, arguments.file)
    _say(f"wrote {backup.path} ({backup.size} bytes)")
    return 0


def _restore(arguments: argparse.Namespace) -> int:
    database = _database(arguments)
    dsn = _ready(database)
    _say(f"restoring {arguments.file} into {database.describe()}")
    restore_database(dsn, arguments.file)
    _say("restored")
    return 0
