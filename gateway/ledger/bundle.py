"""Offline ledger bundles (docs/protocol.md §13.7): what one party may see, provable years later without the hub.

A bundle is one JSON document:

    {"format": "gba-ledger-bundle/v1", "origin": ..., "viewer": "HK" | "auditor",
     "checkpoint": "<signed note with the witnesses' cosignatures>",
     "handovers": [{"note": "<signed hand-over note>", "proof": ["<base64>", ...]}, ...],
     "entries": [{"index": i, "entry": "<base64 of the canonical bytes>", "proof": ["<base64>", ...]}, ...]}

Every entry proof is an RFC 9162 inclusion proof against the checkpoint's root. `verify_bundle`
checks the checkpoint with keys and a quorum from the verifier's own configuration
(never from the bundle), then each entry: canonical bytes, index within the tree, and
its proof.

`handovers` (oldest first) are the hand-overs that led from earlier origins of the ledger
to the checkpoint's (§13.8: a rollback, or a rotated checkpoint key), each with the
consistency proof from the tree it handed over to the checkpoint's. A verifier that knows
only an earlier origin's key follows them: each must be signed by the key the one before
named (the first by a key of the verifier's own), and the checkpoint must then be signed
by the key the last one names and extend every tree handed over.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.ledger import merkle, notes, scope
from gateway.ledger.checkpoints import (
    Handover,
    StoredCheckpoint,
    handovers_to,
    read_handover,
)
from gateway.ledger.tree import consistency_proof, inclusion_proof
from gateway.ledger.verify import is_canonical

FORMAT = "gba-ledger-bundle/v1"


class BundleError(ValueError):
    """The bundle is not a bundle, or does not verify: the message says what and where."""


@dataclass
class BundleReport:
    origin: str
    size: int
    viewer: str
    entries: int
    cosigned_by: tuple[tuple[str, int], ...]
    handed_over_from: tuple[str, ...] = ()
    """The earlier origins whose keys, through their hand-overs, vouched for the checkpoint's key."""
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


async def build_bundle(
    executor: Any, checkpoint: StoredCheckpoint, published: str, viewer: str, first: int, end: int
) -> dict[str, Any]:
    """The bundle of the entries [first, end) that `viewer` may see, proved against `checkpoint` (end <= its size)."""
    if not 0 <= first <= end <= checkpoint.size:
        raise BundleError(f"entries {first} to {end} are not within checkpoint {checkpoint.size} (need 0 <= from <= to <= size)")
    rows = await executor.fetch("SELECT idx, entry FROM ledger_entries WHERE idx >= $1 AND idx < $2 ORDER BY idx", first, end)
    parties = await scope.parties_of(executor, [row["entry"] for row in rows])
    entries = []
    for row, who in zip(rows, parties):
        if not scope.may_see(viewer, who):
            continue
        proof = await inclusion_proof(executor, row["idx"], checkpoint.size)
        entries.append({"index": row["idx"], "entry": _b64(row["entry"]), "proof": [_b64(node) for node in proof.hashes]})
    handovers = []
    for size, note in await handovers_to(executor, checkpoint.origin):
        proof = [] if size in (0, checkpoint.size) else (await consistency_proof(executor, size, checkpoint.size)).hashes
        handovers.append({"note": note, "proof": [_b64(node) for node in proof]})
    return {"format": FORMAT, "origin": checkpoint.origin, "viewer": viewer, "checkpoint": published,
            "handovers": handovers, "entries": entries}


def verify_bundle(
    document: Any, log_keys: notes.NoteKey | Sequence[notes.NoteKey], witness_keys: Sequence[notes.NoteKey], quorum: int
) -> BundleReport:
    """Check a bundle offline; raise BundleError if the bundle or its checkpoint fails, else report per entry.

    `log_keys`: the checkpoint keys the verifier configured itself (the current origin's, earlier origins').
    """
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise BundleError(f"not a ledger bundle (format {FORMAT})")
    trusted = [log_keys] if isinstance(log_keys, notes.NoteKey) else list(log_keys)
    try:
        log_key, followed = _log_key(document["checkpoint"], trusted, document.get("handovers", []))
        verified = notes.verify_checkpoint(document["checkpoint"], log_key, witness_keys, quorum)
    except (KeyError, TypeError) as error:
        raise BundleError(f"the bundle has no checkpoint ({type(error).__name__})") from None
    except (notes.NoteError, notes.CheckpointRefused) as error:
        raise BundleError(f"the checkpoint does not verify: {error}") from None
    checkpoint = verified.checkpoint
    for handover, proof in followed:
        try:
            if handover.size > 0:
                merkle.verify_consistency(handover.size, checkpoint.size, proof, handover.root, checkpoint.root)
        except merkle.ProofError as error:
            raise BundleError(f"the checkpoint does not extend the tree {handover.old_origin} handed over: {error}") from None
    entries = document.get("entries")
    if not isinstance(entries, list):
        raise BundleError("entries is not a list")
    report = BundleReport(
        checkpoint.origin, checkpoint.size, str(document.get("viewer")), len(entries), verified.cosigned_by,
        tuple(handover.old_origin for handover, _ in followed),
    )
    for position, item in enumerate(entries):
        problem = _entry_problem(item, checkpoint)
        if problem is not None:
            report.problems.append(f"entries[{position}]: {problem}")
    return report


def _log_key(
    note: str, trusted: Sequence[notes.NoteKey], handovers: Any
) -> tuple[notes.NoteKey, list[tuple[Handover, list[bytes]]]]:
    """The key the checkpoint `note` must be signed with: a trusted key named by its origin, else the key that a
    chain of hand-overs starting at a trusted key leads to; and the hand-overs followed, with their proofs."""
    if not isinstance(note, str):
        raise TypeError("the checkpoint is not text")
    origin = note.split("\n", 1)[0]
    direct = next((key for key in trusted if key.name == origin), None)
    if direct is not None:
        return direct, []
    if not isinstance(handovers, list):
        raise BundleError("handovers is not a list")
    key: notes.NoteKey | None = None
    followed: list[tuple[Handover, list[bytes]]] = []
    for position, item in enumerate(handovers):
        try:
            text, proof = item["note"], [base64.b64decode(node, validate=True) for node in item["proof"]]
            if not isinstance(text, str) or text.count("\n") < 2:
                raise TypeError("not a note")
        except (KeyError, TypeError, binascii.Error):
            raise BundleError(f"handovers[{position}] is not a note with a proof in base64") from None
        signer = key or next((known for known in trusted if known.name == text.split("\n", 2)[1].removeprefix("old ")), None)
        if signer is None:
            continue  # a hand-over from an origin the verifier does not know: the chain starts later, if at all
        try:
            handover = read_handover(text, signer)
        except notes.CheckpointRefused as error:
            raise BundleError(f"handovers[{position}] does not verify: {error}") from None
        followed.append((handover, proof))
        key = handover.new_key
    if key is None or key.name != origin:
        names = ", ".join(known.name for known in trusted) or "none"
        raise BundleError(f"no configured log key for origin {origin!r} (configured: {names}), nor a hand-over to it from one")
    return key, followed


def _entry_problem(item: Any, checkpoint: notes.Checkpoint) -> str | None:
    try:
        index, entry = item["index"], base64.b64decode(item["entry"], validate=True)
        proof = [base64.b64decode(node, validate=True) for node in item["proof"]]
    except (KeyError, TypeError, binascii.Error):
        return "not an entry with index, entry and proof in base64"
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < checkpoint.size:
        return f"index {index!r} is not within the checkpoint's {checkpoint.size} entries"
    if not is_canonical(entry):
        return f"entry {index} is not canonical JSON (altered)"
    try:
        merkle.verify_inclusion(merkle.leaf_hash(entry), index, checkpoint.size, proof, checkpoint.root)
    except merkle.ProofError as error:
        return f"entry {index} is not in the checkpoint's tree: {error}"
    return None


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def read_bundle(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError as error:
        raise BundleError(f"not JSON: {error}") from None
