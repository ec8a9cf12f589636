"""`gateway payload-keys generate|list|reencrypt`: the keys that seal personal data at rest (docs/operations.md).

Rotation: `generate` writes a new key, which is current at once for every process that
(re)loads the key ring (restart the gateway processes); `reencrypt` then reseals every
stored message under the current key and rewrites the table (`VACUUM FULL messages`) so
that the old sealed bytes are gone from it; `list` shows which keys still seal rows. A key
that seals no row may be deleted (keep it with the backups that still need it).
Which key directory: --dir, else the configuration's `[storage] payload_keys`, else
DATA_DIR/payload-keys. Which database: as every storage command.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

import asyncpg

from gateway.cli.keys import on_migrated_connection, storage_command, storage_target
from gateway.cli.output import reporting
from gateway.config import ConfigError, load_config
from gateway.hub import store
from gateway.store.database import DATABASE_URL_VARIABLE, DEFAULT_DATA_DIR
from gateway.store.migrate import migrate
from gateway.store.payloads import KEYS_VARIABLE, PayloadKeyError, generate_key, load_keys

_reporting = reporting("payload-keys", PayloadKeyError, ConfigError)


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("payload-keys", help="make, list and rotate the keys that seal stored messages",
                                 description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    generate = verbs.add_parser("generate", help="write a new key; it seals from the next (re)start on")
    generate.set_defaults(run=_reporting(_generate))
    listing = verbs.add_parser("list", help="the keys, and how many stored messages each seals")
    listing.set_defaults(run=storage_command(_reporting(_list)))
    reencrypt = verbs.add_parser("reencrypt", help="reseal every stored message under the current key, then rewrite the table")
    reencrypt.set_defaults(run=storage_command(_reporting(_reencrypt)))
    for verb in (generate, listing, reencrypt):
        verb.add_argument("--dir", type=Path, metavar="DIR", help="the payload key directory")
        verb.add_argument("--config", type=Path, metavar="FILE", help="the gateway's TOML configuration")
        verb.add_argument("--data-dir", type=Path, metavar="DIR", help=f"the gateway's data directory (default: ./{DEFAULT_DATA_DIR})")
    for verb in (listing, reencrypt):
        verb.add_argument("--database-url", metavar="URL", help=f"an external PostgreSQL; overrides ${DATABASE_URL_VARIABLE}")


def _folder(arguments: argparse.Namespace) -> Path:
    if arguments.dir is not None:
        return arguments.dir
    if arguments.config is not None:
        return load_config(arguments.config).payload_keys_dir
    return (arguments.data_dir or Path(DEFAULT_DATA_DIR)) / "payload-keys"


def _generate(arguments: argparse.Namespace) -> int:
    folder = _folder(arguments)
    if os.environ.get(KEYS_VARIABLE):
        raise PayloadKeyError(
            f"${KEYS_VARIABLE} is set, and the gateway takes its payload keys from it instead of {folder}: a key "
            f"written there would never seal, so nothing was written. Add the new key to the variable "
            "(id=base64 of 32 random bytes, the greatest id seals), or unset it to use the directory"
        )
    key_id = generate_key(folder)
    print(f"{key_id}: written to {folder / (key_id + '.key')} (mode 0600); it is now the current key")
    print("restart the gateway processes, then run `gateway payload-keys reencrypt` to reseal the stored messages")
    return 0


def _list(arguments: argparse.Namespace) -> int:
    keys = load_keys(_folder(arguments))
    use = on_migrated_connection(arguments, store.payload_key_use)
    print(f"{'KEY':24}  {'MESSAGES':>8}")
    for key_id in sorted(set(keys.keys) | {k for k in use if k is not None}):
        mark = " (current)" if key_id == keys.current else ("" if key_id in keys.keys else "  MISSING: these rows cannot be opened")
        print(f"{key_id:24}  {use.get(key_id, 0):>8}{mark}")
    if use.get(None):
        print(f"{'(in clear)':24}  {use[None]:>8}  sealed at the next gateway start, or by `reencrypt`")
    return 0


def _reencrypt(arguments: argparse.Namespace) -> int:
    keys = load_keys(_folder(arguments))
    target = storage_target(arguments)

    async def main() -> tuple[int, dict[str | None, int]]:
        pool = await asyncpg.create_pool(target.dsn, min_size=1, max_size=2)
        try:
            async with pool.acquire() as connection:
                await migrate(connection)
            resealed = await store.reseal_messages(pool, keys)
            # Even when nothing was left to reseal: a run that resealed every row and then failed to rewrite the
            # table left the old sealed bytes in its dead row versions, and this run is the one that removes them.
            await pool.execute("VACUUM FULL messages")
            return resealed, await store.payload_key_use(pool)
        finally:
            await pool.close()

    resealed, use = asyncio.run(main())
    print(f"resealed {resealed} stored messages under {keys.current}; the table was rewritten" if resealed
          else f"every stored message is already sealed under {keys.current}; the table was rewritten")
    idle = sorted(key_id for key_id in keys.keys if key_id != keys.current and not use.get(key_id))
    if idle:
        print("these keys seal no stored message and may be deleted (keep them while backups need them): " + ", ".join(idle))
    return 0
