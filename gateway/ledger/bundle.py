"""Offline ledger bundles (docs/protocol.md §13.7): what one party may see, provable years later without the hub.

A bundle is one JSON document:

    {"format": "gba-ledger-bundle/v1", "origin": ..., "viewer": "HK" | "auditor",
     "checkpoint": "<signed note with the witnesses' cosignatures>",
     "entries": [{"index": i, "entry": "<base64 of the canonical bytes>", "proof": ["<base64>", ...]}, ...]}

Every proof is an RFC 9162 inclusion proof against the checkpoint's root. `verify_bundle`
checks the checkpoint with keys and a quorum from the verifier's own configuration
(never from the bundle), then each entry: canonical bytes, index within the tree, and
its proof.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.ledger import merkle, notes, scope
from gateway.ledger.checkpoints import StoredCheckpoint
from gateway.ledger.tree import inclusion_proof
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
    return {"format": FORMAT, "origin": checkpoint.origin, "viewer": viewer, "checkpoint": published, "entries": entries}


def verify_bundle(document: Any, log_key: notes.NoteKey, witness_keys: Sequence[notes.NoteKey], quorum: int) -> BundleReport:
    """Check a bundle offline; raise BundleError if the bundle or its checkpoint fails, else report per entry."""
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise BundleError(f"not a ledger bundle (format {FORMAT})")
    try:
        verified = notes.verify_checkpoint(document["checkpoint"], log_key, witness_keys, quorum)
    except (KeyError, TypeError) as error:
        raise BundleError(f"the bundle has no checkpoint ({type(error).__name__})") from None
    except (notes.NoteError, notes.CheckpointRefused) as error:
        raise BundleError(f"the checkpoint does not verify: {error}") from None
    checkpoint = verified.checkpoint
    entries = document.get("entries")
    if not isinstance(entries, list):
        raise BundleError("entries is not a list")
    report = BundleReport(checkpoint.origin, checkpoint.size, str(document.get("viewer")), len(entries), verified.cosigned_by)
    for position, item in enumerate(entries):
        problem = _entry_problem(item, checkpoint)
        if problem is not None:
            report.problems.append(f"entries[{position}]: {problem}")
    return report


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
