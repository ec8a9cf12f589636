"""`gateway subject export|purge`: lawful access and erasure requests about one person (docs/data-protection.md).

The person's identity number is read from the first line of stdin, never from the
command line (which other users of the machine can see, and shells keep in history).
Both find the person through the console's keyed blind index of identity numbers
(`[console] blind_index_key`) and take every case that names them. `export` writes
everything held — each message's metadata and, unless purged, its payload — to a file
(mode 0600) for the requester; `purge` deletes those payloads and the person's index rows.
Both are ledgered (`subject-exported`, `payload-purged` with reason `subject-request`),
with the digest of --reason (the request's reference and legal basis), never the number.
Which database and keys: --config, else --data-dir's defaults; --database-url overrides.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import asyncpg

from gateway.cli.keys import storage_command, storage_target
from gateway.cli.output import reporting
from gateway.config import default_config, load_config
from gateway.console import persons, subjects
from gateway.console.settings import console_settings
from gateway.protocol.timestamps import utc_now
from gateway.store.database import DATABASE_URL_VARIABLE, DEFAULT_DATA_DIR
from gateway.store.migrate import migrate
from gateway.store.payloads import PayloadKeyError, load_keys

_reporting = reporting("subject", subjects.SubjectRequestError, PayloadKeyError)


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("subject", help="data-subject requests: export or purge what is held about a person",
                                 description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    export = verbs.add_parser("export", help="write everything held about a person to a file")
    export.add_argument("--out", required=True, type=Path, help="the export file (JSON, written with mode 0600; must not exist)")
    purge = verbs.add_parser("purge", help="delete the payloads of every case that names a person")
    purge.add_argument("--yes", action="store_true", help="do it (without it, say what would be purged)")
    for verb in (export, purge):
        verb.add_argument("--reason", required=True, help="the request's reference and legal basis (10-500 characters; ledgered as a digest)")
        verb.add_argument("--config", type=Path, metavar="FILE", help="the gateway's TOML configuration")
        verb.add_argument("--data-dir", type=Path, metavar="DIR", help=f"the gateway's data directory (default: ./{DEFAULT_DATA_DIR})")
        verb.add_argument("--database-url", metavar="URL", help=f"an external PostgreSQL; overrides ${DATABASE_URL_VARIABLE}")
        verb.set_defaults(run=storage_command(_reporting(_export if verb is export else _purge)))


def _keys(arguments: argparse.Namespace) -> tuple[bytes, Any]:
    """The blind index key and the payload key ring of the configuration (or of the data directory's defaults)."""
    config = load_config(arguments.config) if arguments.config else default_config(arguments.data_dir or Path(DEFAULT_DATA_DIR))
    runtime = console_settings(config)
    key = persons.load_key(runtime) if runtime is not None else None
    if key is None:
        raise subjects.SubjectRequestError("no person index key: set [console] blind_index_key (the console's find-by-person)")
    return key, load_keys(config.payload_keys_dir)


def _with_found(arguments: argparse.Namespace, work: Any) -> Any:
    number = sys.stdin.readline().strip()
    key, payload_keys = _keys(arguments)
    target = storage_target(arguments)

    async def main() -> Any:
        pool = await asyncpg.create_pool(target.dsn, min_size=1, max_size=2)
        try:
            async with pool.acquire() as connection:
                await migrate(connection)
            found = await subjects.find(pool, number, key, payload_keys)
            return await work(pool, found, number, key, payload_keys)
        finally:
            await pool.close()

    return asyncio.run(main())


def _export(arguments: argparse.Namespace) -> int:
    if arguments.out.exists():
        raise subjects.SubjectRequestError(f"{arguments.out} exists: the export is never written over a file")

    async def work(pool: Any, found: subjects.Found, number: str, key: bytes, payload_keys: Any) -> dict[str, Any]:
        return await subjects.export(pool, found, arguments.reason, payload_keys, utc_now())

    document = _with_found(arguments, work)
    descriptor = os.open(arguments.out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        json.dump(document, file, ensure_ascii=False, indent=1)
        file.write("\n")
    print(f"exported {len(document['messages'])} messages of {len(document['cases'])} cases to {arguments.out}; "
          f"ledgered as subject-exported (entry {document['ledger_index']})")
    return 0


def _purge(arguments: argparse.Namespace) -> int:
    async def work(pool: Any, found: subjects.Found, number: str, key: bytes, payload_keys: Any) -> tuple[subjects.Found, int]:
        if not arguments.yes:
            return found, 0
        return found, await subjects.purge(pool, found, arguments.reason, key, number, utc_now())

    found, purged = _with_found(arguments, work)
    if not arguments.yes:
        print(f"would purge the payloads of {len(found.message_ids)} messages in {len(found.cases)} cases; run again with --yes")
        return 0
    print(f"purged {purged} payloads of {len(found.cases)} cases (each ledgered as payload-purged, reason subject-request); "
          "ids, digests and receipts stay")
    return 0
