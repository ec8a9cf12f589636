"""`gateway outbox list|show|retry`: the delivery queue for operators (docs/operations.md, docs/protocol.md §12.4).

`list` and `show` only read. `retry` queues dead letters again with a new retry window
(PROTO-12.4-4), one ledgered `retried` entry each, and wakes the gateway processes.
Which database: --database-url, else $GATEWAY_DATABASE_URL, else the configuration's,
else the embedded server in --data-dir.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from pathlib import Path
from typing import Any

from gateway.cli.keys import on_migrated_connection, storage_command
from gateway.hub import outbox
from gateway.hub.delivery import retried_entry
from gateway.ledger.append import LedgerAppender
from gateway.protocol.timestamps import format_timestamp, utc_now
from gateway.store.database import DATABASE_URL_VARIABLE, DEFAULT_DATA_DIR


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "outbox", help="list, show and retry deliveries (dead letters included)",
        description="The hub's delivery queue (docs/protocol.md §12.4). "
        f"Which database: --database-url, else ${DATABASE_URL_VARIABLE}, else the config's, else the embedded server.",
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    listing = verbs.add_parser("list", help="deliveries not yet acknowledged, in ledger order")
    listing.add_argument("--state", choices=("queued", "dead", "all"), default="all", help="queued, dead (letters) or all (default)")
    listing.add_argument("--receiver", metavar="CODE", help="only deliveries to this jurisdiction")
    listing.add_argument("--limit", type=int, default=100, help="at most this many rows (default 100)")
    listing.add_argument("--json", action="store_true", help="print JSON for programs")
    listing.set_defaults(run=storage_command(_list))
    show = verbs.add_parser("show", help="one delivery in full")
    show.add_argument("message_id", type=_message_id, help="the message's id")
    show.set_defaults(run=storage_command(_show))
    retry = verbs.add_parser(
        "retry", help="queue dead letters again",
        description="Queues the given dead letters (or, with --all-dead, every one, optionally of one receiver) "
        "again with a new retry window; each is ledgered as `retried`. Rows that are not dead letters are left alone.",
    )
    retry.add_argument("message_ids", nargs="*", type=_message_id, metavar="MESSAGE_ID", help="dead letters to retry")
    retry.add_argument("--all-dead", action="store_true", help="retry every dead letter")
    retry.add_argument("--receiver", metavar="CODE", help="with --all-dead: only those to this jurisdiction")
    retry.set_defaults(run=storage_command(_retry))
    for verb in (listing, show, retry):
        verb.add_argument("--config", type=Path, metavar="FILE", help="the gateway's TOML configuration (data_dir, database_url)")
        verb.add_argument("--data-dir", type=Path, metavar="DIR", help=f"the gateway's data directory (default: ./{DEFAULT_DATA_DIR})")
        verb.add_argument("--database-url", metavar="URL", help=f"an external PostgreSQL; overrides ${DATABASE_URL_VARIABLE}")


def _message_id(text: str) -> str:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise argparse.ArgumentTypeError("a message id is a UUID") from None


_run = on_migrated_connection


def _document(row: outbox.OutboxRow) -> dict[str, Any]:
    return {
        "message_id": row.message_id,
        "type": row.type,
        "from": row.sender,
        "to": row.receiver,
        "case": row.case,
        "ledger_index": row.ledger_index,
        "state": row.state,
        "attempts": row.attempts,
        "queued_at": format_timestamp(row.queued_at),
        "due_at": format_timestamp(row.due_at),
        "claimed_by": row.claimed_by,
        "lease_process": row.lease_process,
        "lease_until": format_timestamp(row.lease_until) if row.lease_until else None,
        "last_error": row.last_error,
    }


def _list(arguments: argparse.Namespace) -> int:
    state = None if arguments.state == "all" else arguments.state
    rows = _run(arguments, lambda connection: outbox.list_rows(connection, state, arguments.receiver, arguments.limit))
    if arguments.json:
        print(json.dumps([_document(row) for row in rows], indent=2))
        return 0
    if not rows:
        print("no deliveries" + (f" in state {state}" if state else "") + " waiting")
        return 0
    print(f"{'MESSAGE ID':36}  {'TYPE':21}  {'ROUTE':11}  {'STATE':6}  {'TRIES':>5}  LAST ERROR")
    for row in rows:
        route = f"{row.sender}>{row.receiver}"
        print(f"{row.message_id:36}  {row.type:21}  {route:11}  {row.state:6}  {row.attempts:>5}  {row.last_error or '-'}")
    return 0


def _show(arguments: argparse.Namespace) -> int:
    row = _run(arguments, lambda connection: outbox.row_by_id(connection, arguments.message_id))
    if row is None:
        print(f"gateway: no delivery of {arguments.message_id} is waiting (acknowledged, superseded, or never accepted)", file=sys.stderr)
        return 1
    print(json.dumps(_document(row), indent=2))
    return 0


def _retry(arguments: argparse.Namespace) -> int:
    if bool(arguments.message_ids) == arguments.all_dead:
        raise ValueError("name the dead letters to retry, or give --all-dead (not both)")
    if arguments.receiver and not arguments.all_dead:
        raise ValueError("--receiver goes with --all-dead")
    now = utc_now()

    async def work(connection: Any) -> list[tuple[str, str]]:
        async with connection.transaction():
            appender = LedgerAppender(connection)
            await appender.reserve()
            retried = await outbox.retry_dead(connection, arguments.message_ids or None, arguments.receiver, now)
            for message_id, receiver in retried:
                await appender.add(retried_entry(message_id, receiver, now))
            await appender.finish()
        return retried

    retried = _run(arguments, work)
    for message_id, receiver in retried:
        print(f"retrying {message_id} to {receiver}")
    missing = sorted(set(arguments.message_ids) - {message_id for message_id, _ in retried})
    for message_id in missing:
        print(f"gateway: {message_id} is not a dead letter; left alone", file=sys.stderr)
    if not retried and not missing:
        print("no dead letters to retry")
    return 1 if missing else 0
