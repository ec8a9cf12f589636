"""`gateway ledger checkpoint|export`, `verify --bundle`: signed checkpoints, witnesses and offline bundles (docs/protocol.md §13.4-§13.7).

- `checkpoint --config FILE`: sign a checkpoint of the ledger now (if it grew) and bring
  every configured witness up to it; print the checkpoint with its cosignatures.
- `export --from I --to J --as CODE|auditor --out FILE --config FILE`: the entries [I, J)
  that party may see, with inclusion proofs against the latest checkpoint, in one file.
- `new-origin --origin NEW --config FILE [--checkpoint-key NEW-KEY]`: after a rollback (§13.8),
  or to rotate the checkpoint key, the signed hand-over from the configured origin to a new one.
- `verify --bundle FILE (--config FILE | --log-key VKEY... [--witness VKEY]... [--quorum N])`:
  check a bundle offline with keys from the verifier's own configuration.

Exit status: 0 done (verify --bundle: the bundle verifies); 1 refused or a finding; 2 usage;
3 the database could not be read.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import asyncpg

from gateway.config import ConfigError, GatewayConfig, load_config
from gateway.hub.witnessing import Checkpointer, WitnessEndpoint, published_note
from gateway.keyfiles import read_private_key
from gateway.ledger import checkpoints, notes, scope
from gateway.ledger.bundle import BundleError, build_bundle, read_bundle, verify_bundle
from gateway.protocol.timestamps import utc_now

DONE, FOUND, USAGE = 0, 1, 2


def register_verbs(verbs: argparse._SubParsersAction, with_database: Any, dsn_of: Any) -> None:
    checkpoint = verbs.add_parser(
        "checkpoint", help="sign a checkpoint now and send it to the witnesses",
        description="Signs a C2SP checkpoint of the latest tree head with the hub's checkpoint key (if the ledger "
        "grew since the last one; never one that does not extend it), sends it to every configured witness with a "
        "consistency proof, and prints the checkpoint with the cosignatures gathered.",
    )
    checkpoint.set_defaults(run=lambda arguments: _checkpoint(arguments, with_database, dsn_of))
    export = verbs.add_parser(
        "export", help="write an offline bundle of the entries a party may see",
        description="Writes the entries [--from, --to) that --as may see (a jurisdiction's code, or auditor for all), "
        "each with its inclusion proof against the latest signed checkpoint, and that checkpoint with its "
        "cosignatures. Sign a checkpoint first (`gateway ledger checkpoint`) if the latest does not cover --to.",
    )
    export.add_argument("--from", dest="first", type=int, default=0, metavar="I", help="first entry index (default 0)")
    export.add_argument("--to", dest="end", type=int, metavar="J", help="end index, exclusive (default: the checkpoint's size)")
    export.add_argument("--as", dest="viewer", required=True, metavar="CODE|auditor", help="whose view: a jurisdiction code or auditor")
    export.add_argument("--out", required=True, type=Path, metavar="FILE", help="where to write the bundle (JSON)")
    export.set_defaults(run=lambda arguments: _export(arguments, with_database))
    new_origin = verbs.add_parser(
        "new-origin", help="after a rollback: hand the ledger over to a new log origin",
        description="Signs, with the hub's checkpoint key under the configured (old) origin, a hand-over note naming "
        "--origin as its successor and the tree the database holds now (docs/protocol.md §13.8), stores it and "
        "prints it. Then set ledger.origin to the new origin, configure the witnesses to witness it (its vkey is "
        "printed on stderr), and restart the gateway.",
    )
    new_origin.add_argument("--origin", required=True, help="the new origin, unique to the new log")
    new_origin.add_argument(
        "--checkpoint-key", type=Path, metavar="FILE",
        help="the new log's checkpoint key (private JWK), when the hand-over rotates the key; default: the configured one",
    )
    new_origin.set_defaults(run=lambda arguments: _new_origin(arguments, with_database))
    for verb in (checkpoint, export, new_origin):
        verb.add_argument("--config", required=True, type=Path, help="the gateway's TOML configuration (origin, keys, witnesses)")
        verb.add_argument("--data-dir", type=Path, help="override the configuration's data directory")
        verb.add_argument("--database-url", help="an external PostgreSQL; overrides the configuration")


def add_bundle_options(verify: argparse.ArgumentParser) -> None:
    """`gateway ledger verify --bundle FILE ...`: check an offline bundle; needs no database."""
    group = verify.add_argument_group(
        "signed checkpoints and offline bundles",
        "The keys below verify a signed checkpoint given to --trusted-checkpoint, and a bundle. With --bundle, the bundle's checkpoint (the log's signature and a quorum of witness cosignatures, with keys "
        "from --config or the options below, never from the bundle) and every entry's canonical bytes and inclusion "
        "proof are checked; no database is read.",
    )
    group.add_argument("--bundle", type=Path, metavar="FILE", help="a bundle written by `gateway ledger export`")
    group.add_argument(
        "--handover", type=Path, metavar="FILE",
        help="a hand-over note (`gateway ledger new-origin`): check it with the log key of the origin it ends and print "
        "the new log's key (vkey) on stdout, for a witness or verifier to add; no database is read",
    )
    group.add_argument("--config", type=Path, help="take the log key, witnesses and quorum from this gateway configuration")
    group.add_argument("--log-key", action="append", metavar="VKEY",
                       help="the log's checkpoint key as a C2SP vkey (its name is the origin); repeat it for the keys "
                       "of earlier origins")
    group.add_argument("--witness", action="append", default=[], metavar="VKEY",
                       help="a witness's cosignature key (repeatable; a witness's earlier keys under the same name too)")
    group.add_argument("--quorum", type=int, help="cosignatures required (default: the configuration's, or every witness given)")


def log_note_key(config: GatewayConfig) -> notes.NoteKey:
    """The log's checkpoint key as verifiers configure it: named by the origin."""
    if config.hub.checkpoint_key is None:
        raise ConfigError(config.source or "<config>", "hub.checkpoint_key", "required for checkpoints")
    return notes.note_key(config.origin, read_private_key(config.hub.checkpoint_key).public())


def _database_arguments(arguments: argparse.Namespace, config: GatewayConfig) -> argparse.Namespace:
    """The --data-dir / --database-url the ledger CLI resolves, defaulting to the configuration's."""
    return argparse.Namespace(
        data_dir=arguments.data_dir or config.data_dir, database_url=arguments.database_url or config.database_url
    )


def _checkpointer(pool: Any, config: GatewayConfig) -> Checkpointer:
    assert config.hub.checkpoint_key is not None
    return Checkpointer(
        pool=pool, origin=config.origin, key=read_private_key(config.hub.checkpoint_key),
        witnesses=[WitnessEndpoint(w.name, w.jurisdiction, notes.parse_vkey(w.vkey), w.url) for w in config.witnesses],
        interval_seconds=config.ledger.checkpoint_interval_seconds, clock=utc_now,
    )


def _load(arguments: argparse.Namespace) -> GatewayConfig | None:
    try:
        config = load_config(arguments.config)
    except ConfigError as error:
        print(f"gateway: config: {error}", file=sys.stderr)
        return None
    if config.hub.checkpoint_key is None:
        print("gateway: config: hub.checkpoint_key is required for checkpoints", file=sys.stderr)
        return None
    return config


def _checkpoint(arguments: argparse.Namespace, with_database: Any, dsn_of: Any) -> int:
    config = _load(arguments)
    if config is None:
        return USAGE

    where = _database_arguments(arguments, config)

    async def work(connection: asyncpg.Connection) -> int:
        # The witnesses are contacted at once, each with its own queries: a pool beside the one connection.
        pool = await asyncpg.create_pool(dsn_of(where), min_size=0, max_size=len(config.witnesses) + 2)
        try:
            checkpointer = _checkpointer(pool, config)
            latest = await checkpointer.checkpoint_now()
        finally:
            await pool.close()
        if checkpointer.rolled_back is not None:
            print(f"gateway: refused to sign: {checkpointer.rolled_back}", file=sys.stderr)
            return FOUND
        if latest is None:
            print("gateway: the ledger is empty: nothing to sign", file=sys.stderr)
            return FOUND
        lines = [line for _, line in await checkpoints.cosignatures(connection, config.origin, latest.size)]
        sys.stdout.write(published_note(latest, lines))
        print(f"gateway: checkpoint {latest.size} of {config.origin}: {len(lines)} of {len(config.witnesses)} witnesses "
              f"cosigned (quorum {config.quorum})", file=sys.stderr)
        return DONE

    return with_database(where, work)


def _new_origin(arguments: argparse.Namespace, with_database: Any) -> int:
    config = _load(arguments)
    if config is None:
        return USAGE
    assert config.hub.checkpoint_key is not None
    key = read_private_key(config.hub.checkpoint_key)
    try:
        new_key = read_private_key(arguments.checkpoint_key) if arguments.checkpoint_key is not None else key
    except (OSError, ValueError) as error:
        print(f"gateway: --checkpoint-key: {error}", file=sys.stderr)
        return USAGE
    if new_key.alg != "Ed25519":
        print("gateway: --checkpoint-key: checkpoint keys are Ed25519 keys (docs/protocol.md PROTO-10.2-4)", file=sys.stderr)
        return USAGE

    async def work(connection: asyncpg.Connection) -> int:
        try:
            note = await checkpoints.hand_over(connection, config.origin, arguments.origin, key, utc_now(), new_key)
        except (ValueError, asyncpg.UniqueViolationError) as error:
            reason = "a hand-over from or to one of these origins exists already" if isinstance(error, asyncpg.UniqueViolationError) else str(error)
            print(f"gateway: refused: {reason}", file=sys.stderr)
            return FOUND
        sys.stdout.write(note)
        print(f"gateway: handed over from {config.origin} to {arguments.origin}; the new log's key for the witnesses: "
              f"{notes.note_key(arguments.origin, new_key.public()).vkey()}", file=sys.stderr)
        return DONE

    return with_database(_database_arguments(arguments, config), work)


def _export(arguments: argparse.Namespace, with_database: Any) -> int:
    config = _load(arguments)
    if config is None:
        return USAGE
    if arguments.viewer != scope.AUDITOR and arguments.viewer not in config.jurisdictions:
        print(f"gateway: --as must be a configured jurisdiction or {scope.AUDITOR}", file=sys.stderr)
        return USAGE

    async def work(connection: asyncpg.Connection) -> int:
        latest = await checkpoints.latest_checkpoint(connection, config.origin)
        if latest is None:
            print("gateway: no checkpoint signed yet: run `gateway ledger checkpoint` first", file=sys.stderr)
            return FOUND
        end = latest.size if arguments.end is None else arguments.end
        lines = [line for _, line in await checkpoints.cosignatures(connection, config.origin, latest.size)]
        try:
            document = await build_bundle(connection, latest, published_note(latest, lines), arguments.viewer, arguments.first, end)
        except BundleError as error:
            print(f"gateway: {error}; the latest checkpoint covers {latest.size} entries", file=sys.stderr)
            return FOUND
        arguments.out.write_text(json.dumps(document, indent=1) + "\n", "utf-8")
        print(f"gateway: wrote {len(document['entries'])} entries visible to {arguments.viewer} "
              f"(checkpoint {latest.size}, {len(lines)} cosignatures) to {arguments.out}", file=sys.stderr)
        return DONE

    return with_database(_database_arguments(arguments, config), work)


class NoVerifierKeys(ValueError):
    """Neither --config nor --log-key was given: there is nothing to verify a checkpoint with."""


def verifier_keys(arguments: argparse.Namespace) -> tuple[list[notes.NoteKey], list[notes.NoteKey], int]:
    """(log keys, witness keys, quorum) from the verifier's own configuration or options (PROTO-13.5-3).

    The log keys are the current origin's and those of earlier origins (`ledger.previous_log_keys`); the witness
    keys include each witness's earlier keys (`previous_vkeys`), under the same name.
    """
    if arguments.config is not None:
        config = load_config(arguments.config)
        quorum = config.quorum if arguments.quorum is None else arguments.quorum
        log_keys = [log_note_key(config), *(notes.parse_vkey(vkey) for vkey in config.ledger.previous_log_keys)]
        witnesses = [notes.parse_vkey(vkey) for w in config.witnesses for vkey in (w.vkey, *w.previous_vkeys)]
        return log_keys, witnesses, quorum
    if arguments.log_key:
        witnesses = [notes.parse_vkey(vkey) for vkey in arguments.witness]
        quorum = len({key.name for key in witnesses}) if arguments.quorum is None else arguments.quorum
        return [notes.parse_vkey(vkey) for vkey in arguments.log_key], witnesses, quorum
    raise NoVerifierKeys("give --config FILE, or --log-key VKEY with the witnesses' keys (--witness VKEY ...)")


def verify_signed_checkpoint(note: bytes | str, log_keys: list[notes.NoteKey], witnesses: list[notes.NoteKey], quorum: int) -> notes.VerifiedCheckpoint:
    """Verify a checkpoint with the configured log key named by its origin (the current or an earlier one)."""
    text = note.decode("utf-8", "replace") if isinstance(note, bytes) else note
    origin = text.split("\n", 1)[0]
    key = next((key for key in log_keys if key.name == origin), log_keys[0])
    return notes.verify_checkpoint(note, key, witnesses, quorum)


def verify_handover_command(arguments: argparse.Namespace) -> int:
    """`ledger verify --handover FILE`: the new log's key, if a configured key of the old origin signed the hand-over."""
    try:
        log_keys, _, _ = verifier_keys(arguments)
        note = arguments.handover.read_text("utf-8")
    except (ConfigError, notes.NoteError, OSError, ValueError, NoVerifierKeys) as error:
        print(f"gateway: {error}", file=sys.stderr)
        return USAGE
    ended = note.split("\n", 2)[1].removeprefix("old ") if note.count("\n") >= 2 else ""
    key = next((key for key in log_keys if key.name == ended), None)
    if key is None:
        print(f"gateway: the hand-over does not verify: no configured log key for origin {ended!r}", file=sys.stderr)
        return FOUND
    try:
        handover = checkpoints.read_handover(note, key)
    except notes.CheckpointRefused as error:
        print(f"gateway: the hand-over does not verify: {error}", file=sys.stderr)
        return FOUND
    print(handover.new_key.vkey())
    print(f"gateway: {handover.old_origin} handed over at size {handover.size} to {handover.new_origin}", file=sys.stderr)
    return DONE


def verify_bundle_command(arguments: argparse.Namespace) -> int:
    try:
        log_keys, witnesses, quorum = verifier_keys(arguments)
        report = verify_bundle(read_bundle(arguments.bundle.read_bytes()), log_keys, witnesses, quorum)
    except (ConfigError, notes.NoteError, OSError, NoVerifierKeys) as error:
        print(f"gateway: {error}", file=sys.stderr)
        return USAGE
    except BundleError as error:
        print(f"gateway: the bundle does not verify: {error}", file=sys.stderr)
        return FOUND
    if arguments.json:
        print(json.dumps({"ok": report.ok, "origin": report.origin, "size": report.size, "viewer": report.viewer,
                          "entries": report.entries, "cosigned_by": [list(pair) for pair in report.cosigned_by],
                          "handed_over_from": list(report.handed_over_from), "problems": report.problems}))
    else:
        witnesses_said = ", ".join(name for name, _ in report.cosigned_by) or "none"
        print(f"checkpoint {report.size} of {report.origin}: log signature and quorum {quorum} verified (cosigned by {witnesses_said})")
        if report.handed_over_from:
            print(f"its key was handed over from {' -> '.join(report.handed_over_from)}, and it extends each tree handed over")
        print(f"{report.entries} entries for {report.viewer}: " + ("every one included and intact" if report.ok else f"{len(report.problems)} problems"))
        for problem in report.problems:
            print(f"  {problem}")
    return DONE if report.ok else FOUND
