"""`gateway retention run`: delete now the payloads whose route's retention ended (docs/data-protection.md).

The gateway does the same every `[storage] purge_interval_seconds`; this is for operators
who want it done at once (before a backup, say). Each deletion is ledgered as
`payload-purged`; ids, digests and receipts stay. Which database: as every storage command.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from gateway.cli.keys import on_migrated_connection, storage_command
from gateway.console.persons import forget_purged
from gateway.hub.retention import purge_due
from gateway.ledger.append import LedgerAppender
from gateway.protocol.timestamps import utc_now
from gateway.store.database import DATABASE_URL_VARIABLE, DEFAULT_DATA_DIR


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("retention", help="delete the payloads whose retention ended", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    run = verbs.add_parser("run", help="delete, now, every payload whose route's retention ended")
    run.add_argument("--config", type=Path, metavar="FILE", help="the gateway's TOML configuration (data_dir, database_url)")
    run.add_argument("--data-dir", type=Path, metavar="DIR", help=f"the gateway's data directory (default: ./{DEFAULT_DATA_DIR})")
    run.add_argument("--database-url", metavar="URL", help=f"an external PostgreSQL; overrides ${DATABASE_URL_VARIABLE}")
    run.set_defaults(run=storage_command(_run))


def _run(arguments: argparse.Namespace) -> int:
    async def purge(connection: Any) -> int:
        total = 0
        while True:
            async with connection.transaction():
                appender = LedgerAppender(connection)
                await appender.reserve()
                purged = await purge_due(connection, appender, utc_now())
                await appender.finish()
            total += purged
            if not purged:
                break
        await forget_purged(connection)  # the person index's rows of cases left without payloads (migration 0013)
        return total

    total = on_migrated_connection(arguments, purge)
    print(f"deleted {total} payloads whose retention ended; each is ledgered as payload-purged" if total
          else "no payload's retention has ended")
    return 0
