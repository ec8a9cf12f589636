"""The decision of a C2SP tlog-witness on an `add-checkpoint` request (c2sp.org/tlog-witness).

A witness keeps, per log origin, the latest checkpoint it cosigned. It cosigns a new
checkpoint only when the log signed it and a consistency proof shows that it extends
that latest one (RFC 6962 §2.1.2, checked as RFC 9162 §2.1.4.2 by merkle.py), so no
two checkpoints it cosigns for one origin can be a fork.

Pure functions: the caller reads the state, calls `add_checkpoint`, and, on 200,
persists `new_state` before it answers. Reading and persisting must be one atomic
step per origin (a row lock), or two racing requests can roll the state back
(tlog-witness, "add-checkpoint").
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from gateway.ledger import merkle
from gateway.ledger.notes import (
    MAX_TREE_SIZE,
    Checkpoint,
    CheckpointRefused,
    NoteError,
    NoteKey,
    cosign,
    parse_note,
    verify_note,
)
from gateway.protocol.keys import PrivateKey

MAX_PROOF_LINES = 63
"""tlog-witness: a client MUST NOT send more than 63 consistency proof lines."""

TEXT = "text/plain; charset=utf-8"
TLOG_SIZE = "text/x.tlog.size"
"""Content type of a 409 answer, whose body is the witness's latest size and a newline."""

_OLD_LINE = re.compile(r"old (0|[1-9][0-9]*)")
_HASH_SIZE = 32


@dataclass(frozen=True, slots=True)
class AddCheckpoint:
    """An add-checkpoint request body: the size the log believes the witness holds, the proof, the note."""

    old_size: int
    proof: tuple[bytes, ...]
    note: str


@dataclass(frozen=True, slots=True)
class WitnessState:
    """The latest checkpoint this witness cosigned for one origin."""

    size: int
    root: bytes


@dataclass(frozen=True, slots=True)
class WitnessAnswer:
    """The HTTP answer. `new_state` is set only on 200, and must be persisted before answering."""

    status: int
    body: bytes
    content_type: str
    new_state: WitnessState | None = None


class MalformedRequest(ValueError):
    """An add-checkpoint body that is not well formed; `answer` is its 400."""

    @property
    def answer(self) -> WitnessAnswer:
        return _refuse(400, str(self))


def parse_add_checkpoint(body: bytes) -> AddCheckpoint:
    """Read an add-checkpoint body: "old N\\n", 0 to 63 base64 hash lines, an empty line, a note.

    N is decimal without leading zeros; each proof line is canonical base64 of a
    32-byte hash. The note is returned as text and checked by `add_checkpoint`.
    Raises MalformedRequest (400) otherwise.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise MalformedRequest(f"request body is not UTF-8: byte {error.start} is invalid") from None
    old_line, newline, rest = text.partition("\n")
    match = _OLD_LINE.fullmatch(old_line)
    if not newline or match is None:
        raise MalformedRequest("first line must be 'old <size>' in decimal without leading zeros")
    old_size = int(match.group(1))
    if old_size > MAX_TREE_SIZE:
        raise MalformedRequest(f"old size {old_size} exceeds 2^64-1")

    proof: list[bytes] = []
    while True:
        line, newline, rest = rest.partition("\n")
        if not newline:
            raise MalformedRequest("request body has no empty line before the checkpoint")
        if not line:
            break
        if len(proof) == MAX_PROOF_LINES:
            raise MalformedRequest(f"more than {MAX_PROOF_LINES} consistency proof lines")
        proof.append(_decode_hash(line, len(proof)))
    if not rest:
        raise MalformedRequest("request body has no checkpoint after the empty line")
    return AddCheckpoint(old_size, tuple(proof), rest)


def add_checkpoint(
    request: AddCheckpoint,
    *,
    logs: Mapping[str, NoteKey],
    state: Callable[[str], WitnessState | None],
    witness_name: str,
    witness_key: PrivateKey,
    now: int,
) -> WitnessAnswer:
    """Decide an add-checkpoint request as c2sp.org/tlog-witness requires.

    `logs` maps each known origin to the log's type 0x01 key; `state(origin)` is the
    latest checkpoint cosigned for it (None when none); `now` is the POSIX time of
    the cosignature. In the spec's order: 400 for a malformed note; 404 for an unknown
    origin; 403 without a valid log signature; 400 when old size > checkpoint size or
    the root is not 32 bytes; 409 (body: the latest size) when old size is not the
    latest size, or the sizes are equal and the roots differ; 422 when the proof does
    not verify, or is not empty when it must be (old size 0, or equal sizes), or a size
    0 checkpoint has another root than the empty tree's; else 200 with the cosignature
    line and the new state. The same checkpoint again is cosigned again.
    """
    try:
        text, _ = parse_note(request.note)
        checkpoint = Checkpoint.parse(text)
    except NoteError as error:
        return _refuse(400, f"not a checkpoint note: {error}")
    log_key = logs.get(checkpoint.origin)
    if log_key is None:
        return _refuse(404, f"unknown log origin {checkpoint.origin!r}")
    try:
        verify_note(request.note, log_key)
    except CheckpointRefused as refusal:
        return _refuse(403, str(refusal))
    if request.old_size > checkpoint.size:
        return _refuse(400, f"old size {request.old_size} is larger than checkpoint size {checkpoint.size}")
    if len(checkpoint.root) != _HASH_SIZE:
        return _refuse(400, f"checkpoint root hash has {len(checkpoint.root)} bytes, want {_HASH_SIZE}")

    latest = state(checkpoint.origin)
    latest_size = latest.size if latest is not None else 0
    if request.old_size != latest_size:
        return _conflict(latest_size)
    if checkpoint.size == request.old_size and latest is not None and checkpoint.root != latest.root:
        return _conflict(latest_size)

    failure = _consistency_failure(request, checkpoint, latest.root if latest is not None else merkle.EMPTY_ROOT)
    if failure is not None:
        return _refuse(422, failure)
    line = cosign(text, witness_name, witness_key, now)
    return WitnessAnswer(200, line.encode("utf-8"), TEXT, WitnessState(checkpoint.size, checkpoint.root))


def _consistency_failure(request: AddCheckpoint, checkpoint: Checkpoint, latest_root: bytes) -> str | None:
    """Why the proof does not show `checkpoint` extends the latest cosigned tree, or None.

    Requires old size == the latest size, whose root is `latest_root`.
    """
    old, new, proof = request.old_size, checkpoint.size, request.proof
    if new == 0 and checkpoint.root != merkle.EMPTY_ROOT:
        return f"a checkpoint of size 0 must have the empty tree's root {merkle.EMPTY_ROOT.hex()}"
    if old == 0 or old == new:
        if proof:
            return f"proof from size {old} to size {new} has {len(proof)} hashes, want 0"
        return None
    try:
        merkle.verify_consistency(old, new, proof, latest_root, checkpoint.root)
    except merkle.ProofError as error:
        return str(error)
    return None


def _decode_hash(line: str, position: int) -> bytes:
    try:
        raw = base64.b64decode(line.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        raw = b""
    if len(raw) != _HASH_SIZE or base64.b64encode(raw).decode("ascii") != line:
        raise MalformedRequest(f"proof line {position} is not canonical base64 of a {_HASH_SIZE}-byte hash")
    return raw


def _conflict(latest_size: int) -> WitnessAnswer:
    return WitnessAnswer(409, f"{latest_size}\n".encode("ascii"), TLOG_SIZE)


def _refuse(status: int, why: str) -> WitnessAnswer:
    return WitnessAnswer(status, f"{why}\n".encode("utf-8"), TEXT)
