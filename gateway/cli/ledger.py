"""`gateway ledger verify|proof`: check the audit ledger, print inclusion proofs (docs/security.md, docs/protocol.md §13).

Both verbs take `--data-dir DIR` and `--database-url URL` (which database: the
precedence of gateway/store/database.py) and only read: one read-only REPEATABLE READ
transaction, so a hub appending meanwhile is neither disturbed nor half-seen.

Exit status of `verify`: 0 the ledger is intact (and extends the trusted checkpoint,
when one is given); 1 tampering or an inconsistency was found, named on stdout;
2 usage error (a checkpoint file that cannot be read included); 3 the database could
not be read (unreachable, or no ledger in it). `proof`: 0 proofs printed; 1 no such
entry, or a size that is not a stored tree head, or a proof that does not verify;
2 usage error; 3 the database could not be read.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TextIO, get_args

import asyncpg

from gateway.cli import ledger_checkpoints
from gateway.config import ConfigError
from gateway.ledger import checkpoints, merkle, notes
from gateway.protocol.timestamps import utc_now
from gateway.ledger.entries import EntryKind
from gateway.ledger.tree import NotAHead, TreeError, head_at, heads_around, inclusion_proof, latest_head
from gateway.ledger.verify import Checkpoint, CheckpointError, Report, verify_ledger
from gateway.store import StoreError
from gateway.store.database import DATABASE_URL_VARIABLE, DEFAULT_DATA_DIR, Database, resolve_database
from gateway.store.embedded import PGDATA_NAME, ensure_embedded_server

INTACT, FOUND, USAGE, UNREADABLE = 0, 1, 2, 3
PROGRESS_EVERY = 100_000
"""Entries between two progress lines when stderr is not a terminal."""

_EXIT_CODES = """exit status:
  0  the ledger is intact (and extends the trusted checkpoint, when one is given)
  1  tampering or an inconsistency was found: the finding is printed on stdout
  2  usage error, or a trusted checkpoint file that cannot be read
  3  the database could not be read (unreachable, or holding no ledger)"""


class _ExitCodesAsWritten(argparse.HelpFormatter):
    """Wraps the description as usual; keeps the exit-status table's lines."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith("exit status:"):
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def register(commands: argparse._SubParsersAction) -> None:
    ledger = commands.add_parser(
        "ledger",
        help="verify the audit ledger; print inclusion proofs of a message's entries",
        description="The audit ledger is an RFC 9162 Merkle tree in the database (docs/protocol.md §13). "
        f"Which database: --database-url, else ${DATABASE_URL_VARIABLE}, else the embedded server in --data-dir.",
    )
    verbs = ledger.add_subparsers(dest="verb", required=True, metavar="VERB")
    verify = verbs.add_parser(
        "verify",
        help="recompute every leaf and node from the stored entries; compare every tree head",
        description="Recomputes every leaf hash from the stored entry bytes, checks that every entry is canonical "
        "JSON (RFC 8785) and that indexes run 0..size-1 without a gap, rebuilds the tree and compares it with every "
        "stored node, tree head and edge node. Names the first altered, removed, inserted or reordered entry where "
        "the tables allow it, else the range between the last good and the first bad tree head. A rewrite of "
        "entries, nodes and heads that is consistent with itself cannot be seen from the database alone: give a "
        "checkpoint obtained earlier with --trusted-checkpoint (docs/security.md).",
        epilog=_EXIT_CODES,
        formatter_class=_ExitCodesAsWritten,
    )
    verify.add_argument(
        "--trusted-checkpoint", type=Path, metavar="FILE",
        help="a tree head obtained earlier, out of band, that the ledger must still extend: a signed checkpoint "
        "(as GET /v1/ledger/checkpoint gives it; verified with --config or --log-key/--witness/--quorum below), "
        'or a JSON file {"size": N, "root": "<base64 of the 32-byte root>"}',
    )
    verify.add_argument("--json", action="store_true", help="print the report as one JSON object")
    proof = verbs.add_parser(
        "proof",
        help="print the inclusion proofs of a message's ledger entries (JSON)",
        description="Prints, as JSON, each ledger entry of the message (kind, index, the entry's canonical bytes, "
        "leaf hash) with its RFC 9162 inclusion proof against the latest tree head, or the head of --size; hashes "
        "in base64. Every proof is verified before it is printed.",
        epilog="exit status: 0 printed; 1 no such entry, --size not a stored tree head, or a proof that does not "
        "verify; 2 usage error; 3 the database could not be read",
    )
    proof.add_argument("message_id", type=_message_id, metavar="MESSAGE_ID", help="the message's id (a UUID)")
    proof.add_argument("--kind", choices=get_args(EntryKind), metavar="KIND",
                       help=f"only entries of this kind ({', '.join(get_args(EntryKind))})")
    proof.add_argument("--size", type=_positive, metavar="N", help="prove against the tree head of N entries "
                       "(default: the latest)")
    verify.add_argument("--record", action="store_true",
                        help="store the result for the console and /metrics, as the gateway's scheduled verification does")
    ledger_checkpoints.register_verbs(verbs, _with_database, database_dsn)
    ledger_checkpoints.add_bundle_options(verify)
    for verb, run in ((verify, _verify), (proof, _proof)):
        verb.add_argument("--data-dir", type=Path, help=f"the gateway's data directory (default ./{DEFAULT_DATA_DIR})")
        verb.add_argument("--database-url", help=f"an external PostgreSQL (postgresql://...); overrides ${DATABASE_URL_VARIABLE}")
        verb.set_defaults(run=run)


def _message_id(text: str) -> str:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a message id (a UUID)") from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a tree size (an integer of at least 1)")
    return value


def _say(message: str) -> None:
    print(f"gateway: {message}", file=sys.stderr)


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


# --- the database ------------------------------------------------------------------------


class _Unreadable(Exception):
    pass


def _dsn(database: Database) -> str:
    if not database.embedded:
        return database.dsn
    if not (database.data_dir / PGDATA_NAME / "PG_VERSION").exists():
        raise _Unreadable(f"there is no gateway database in {database.data_dir} (no {PGDATA_NAME}/ in it)")
    return ensure_embedded_server(database.data_dir, notify=_say).dsn


def database_dsn(arguments: argparse.Namespace) -> str:
    """The DSN `_with_database` connects to, for work that needs a pool of its own."""
    return _dsn(resolve_database(arguments.database_url, None, arguments.data_dir))


def _with_database(arguments: argparse.Namespace, work: Callable[[asyncpg.Connection], Awaitable[int]]) -> int:
    """Run `work` on a connection to the chosen database; exit status 3 when it cannot be read."""
    database = resolve_database(arguments.database_url, None, arguments.data_dir)

    async def main() -> int:
        connection = await asyncpg.connect(_dsn(database), timeout=30)
        try:
            return await work(connection)
        finally:
            await connection.close()

    try:
        return asyncio.run(main())
    except asyncpg.UndefinedTableError:
        _say(f"error: cannot read the ledger of {database.describe()}: it has no ledger tree tables (it predates "
             "migration 0002, or is not a gateway database); start the gateway once to migrate it")
    except _Unreadable as error:
        _say(f"error: cannot read the database: {error}")
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, StoreError) as error:
        _say(f"error: cannot read the database {database.describe()}: {error}")
    return UNREADABLE


# --- verify ------------------------------------------------------------------------------


class _ProgressLine:
    """A progress bar on a terminal (at most five redraws a second); else a line every PROGRESS_EVERY entries."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.shown = 0.0
        self.next_line = PROGRESS_EVERY
        self.drawn = False

    def __call__(self, done: int, total: int) -> None:
        if self.tty:
            now = time.monotonic()
            if now - self.shown < 0.2 and done < total:
                return
            self.shown = now
            width = 30
            filled = width * done // max(total, 1)
            self.stream.write(f"\rgateway: verifying [{'#' * filled}{'.' * (width - filled)}] "
                              f"{100 * done // max(total, 1):3d}% {done:,}/{total:,} entries")
            self.stream.flush()
            self.drawn = True
        elif done >= self.next_line:
            self.stream.write(f"gateway: verified {done:,} of {total:,} entries\n")
            self.stream.flush()
            while self.next_line <= done:
                self.next_line += PROGRESS_EVERY

    def end(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()


def _verify(arguments: argparse.Namespace) -> int:
    if arguments.bundle is not None:
        return ledger_checkpoints.verify_bundle_command(arguments)
    if arguments.handover is not None:
        return ledger_checkpoints.verify_handover_command(arguments)
    checkpoint = None
    if arguments.trusted_checkpoint is not None:
        try:
            checkpoint = _trusted_checkpoint(arguments)
        except (CheckpointError, ConfigError, notes.NoteError, notes.CheckpointRefused, ledger_checkpoints.NoVerifierKeys) as error:
            _say(f"error: the trusted checkpoint: {error}")
            return USAGE
    progress = _ProgressLine(sys.stderr)

    async def work(connection: asyncpg.Connection) -> int:
        started = utc_now()
        try:
            report = await verify_ledger(connection, checkpoint, progress)
        finally:
            progress.end()
        _print_report(report, arguments.json)
        if arguments.record:
            finding = report.findings[0] if report.findings else None
            await checkpoints.record_verification(
                connection, started, report.seconds, report.size, finding.index if finding else None,
                f"{finding.code}: {finding.message}" if finding else None, "gateway ledger verify --record",
            )
        return INTACT if report.intact else FOUND

    return _with_database(arguments, work)


def _trusted_checkpoint(arguments: argparse.Namespace) -> Checkpoint:
    """A JSON tree head `{"size", "root"}`, or a signed checkpoint (C2SP note) verified with the verifier's own keys."""
    data = arguments.trusted_checkpoint.read_bytes() if arguments.trusted_checkpoint.exists() else b""
    if data.lstrip().startswith(b"{") or not data:
        return Checkpoint.load(arguments.trusted_checkpoint)
    log_keys, witnesses, quorum = ledger_checkpoints.verifier_keys(arguments)
    verified = ledger_checkpoints.verify_signed_checkpoint(data, log_keys, witnesses, quorum)
    return Checkpoint(verified.checkpoint.size, verified.checkpoint.root)


def _print_report(report: Report, as_json: bool) -> None:
    if as_json:
        print(json.dumps(report.as_json(), sort_keys=True))
        return
    if report.intact:
        extends = (f"; it extends the trusted checkpoint of size {report.checkpoint.size}"
                   if report.checkpoint else "")
        root = f", root {_b64(report.root)}" if report.root else ""
        print(f"ledger intact: {report.size} entries, {report.heads_checked} tree heads, {report.nodes_checked} nodes "
              f"checked{root}{extends} ({report.seconds:.1f} s)")
        return
    print(f"ledger NOT intact: {len(report.findings)} finding{'s' if len(report.findings) != 1 else ''} "
          f"(ledger size {report.size})")
    for finding in report.findings:
        print(f"  {finding.code}: {finding.message}")


# --- proof -------------------------------------------------------------------------------


def _proof(arguments: argparse.Namespace) -> int:
    async def work(connection: asyncpg.Connection) -> int:
        async with connection.transaction(isolation="repeatable_read", readonly=True):
            return await _prove(connection, arguments.message_id, arguments.kind, arguments.size)

    return _with_database(arguments, work)


async def _prove(connection: asyncpg.Connection, message_id: str, kind: str | None, size: int | None) -> int:
    if size is None:
        head = await latest_head(connection)
        if head is None:
            _say("error: the ledger is empty: there is no tree head to prove against")
            return FOUND
        size = head.size
    elif await head_at(connection, size) is None:
        _say(f"error: {NotAHead(size, *await heads_around(connection, size))}")
        return FOUND
    rows = await connection.fetch(
        "SELECT idx, entry FROM ledger_entries WHERE message_id = $1 AND idx < $2 ORDER BY idx", message_id, size)
    found: list[dict[str, Any]] = []
    for row in rows:
        try:
            value = json.loads(row["entry"])
        except ValueError:
            continue
        if not isinstance(value, dict) or value.get("message_id") != message_id:
            continue  # the lookup column matched a nested member: the bytes decide
        if kind is not None and value.get("kind") != kind:
            continue
        index, entry = row["idx"], bytes(row["entry"])
        try:
            proof = await inclusion_proof(connection, index, size)
        except TreeError as error:  # NotAHead included
            _say(f"error: {error}")
            return FOUND
        leaf = merkle.leaf_hash(entry)
        try:
            merkle.verify_inclusion(leaf, index, size, proof.hashes, proof.root)
        except merkle.ProofError as error:
            _say(f"error: the stored tree does not prove entry {index} in tree head {size}: {error}; "
                 "run `gateway ledger verify`")
            return FOUND
        found.append({
            "index": index,
            "kind": value.get("kind"),
            "entry": entry.decode("utf-8"),
            "leaf_hash": _b64(leaf),
            "size": size,
            "root": _b64(proof.root),
            "proof": [_b64(value) for value in proof.hashes],
        })
    if not found:
        of_kind = f" of kind {kind}" if kind else ""
        _say(f"error: the ledger has no entry{of_kind} for message {message_id} in the tree of {size} entries")
        return FOUND
    print(json.dumps({"message_id": message_id, "size": size, "root": found[0]["root"], "entries": found}, indent=2))
    return INTACT
