"""The suite as a log in front of a jurisdiction's witness (docs/protocol.md §13.5; C2SP tlog-witness, tlog-checkpoint,
signed-note, tlog-cosignature), written from those specifications, never from the hub's ledger code.

With `--witness URL` (endpoint role) the suite keeps a log of its own: deterministic entries
(`LOG_ENTRIES`), so that every run's tree of size n is the same tree and a witness that
cosigned an earlier run's checkpoint still accepts this run's. It signs checkpoints for
`--log-origin` with the published test checkpoint key; the witness must list that log
(`log_vkey`). Each case first learns the size the witness holds for the origin (`sync`),
then sends one `add-checkpoint` request broken as the case says.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from gateway.conformance import merkle
from gateway.conformance.crafting import SigningKey

DEFAULT_ORIGIN = "conformance.gba-case-gateway.example/gba-ledger"
NOTE_ED25519, COSIGNATURE_V1 = 0x01, 0x04
TLOG_SIZE = "text/x.tlog.size"


def log_entry(index: int) -> bytes:
    """Entry `index` of the suite's log: the same in every run."""
    return f"gba conformance log entry {index}".encode("ascii")


def key_id(name: str, kind: int, public: bytes) -> bytes:
    """A note key's id (C2SP signed-note): SHA-256(name || 0x0A || type || public key)[:4]."""
    return hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([kind]) + public).digest()[:4]


def log_vkey(origin: str, key: SigningKey) -> str:
    """The verifier key a witness is configured with for the suite's log: name+hex(key id)+base64(type || key)."""
    return f"{origin}+{key_id(origin, NOTE_ED25519, key.public_x).hex()}+{base64.b64encode(bytes([NOTE_ED25519]) + key.public_x).decode()}"


def tree_root(size: int) -> bytes:
    return _root([merkle.leaf_hash(log_entry(index)) for index in range(size)])


def _root(leaves: list[bytes]) -> bytes:
    """RFC 9162 §2.1.1, over leaf hashes."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    split = 1 << ((len(leaves) - 1).bit_length() - 1)
    return hashlib.sha256(b"\x01" + _root(leaves[:split]) + _root(leaves[split:])).digest()


def consistency_proof(first: int, second: int) -> list[bytes]:
    """RFC 9162 §2.1.4.1 PROOF(first, D[second]) over the suite's log. Requires 0 < first <= second."""
    leaves = [merkle.leaf_hash(log_entry(index)) for index in range(second)]

    def subproof(m: int, nodes: list[bytes], complete: bool) -> list[bytes]:
        if m == len(nodes):
            return [] if complete else [_root(nodes)]
        split = 1 << ((len(nodes) - 1).bit_length() - 1)
        if m <= split:
            return subproof(m, nodes[:split], complete) + [_root(nodes[split:])]
        return subproof(m - split, nodes[split:], False) + [_root(nodes[:split])]

    return subproof(first, leaves, True)


def checkpoint_body(origin: str, size: int, root: bytes) -> str:
    """A C2SP tlog-checkpoint body: origin, size and base64 root, each ending in a newline."""
    return f"{origin}\n{size}\n{base64.b64encode(root).decode()}\n"


def signed_note(body: str, name: str, key: SigningKey | Ed25519PrivateKey) -> str:
    """`body` as a C2SP signed note with one Ed25519 signature line of key `name`."""
    private = key.key if isinstance(key, SigningKey) else key
    public = private.public_key().public_bytes_raw()
    signature = private.sign(body.encode("utf-8"))
    return f"{body}\n\u2014 {name} {base64.b64encode(key_id(name, NOTE_ED25519, public) + signature).decode()}\n"


def add_checkpoint_body(old: int, proof: list[bytes], note: str) -> bytes:
    """A tlog-witness add-checkpoint request: "old N", the proof one base64 hash a line, a blank line, the note."""
    lines = [f"old {old}", *(base64.b64encode(node).decode() for node in proof)]
    return ("\n".join(lines) + "\n\n" + note).encode("utf-8")


@dataclass(frozen=True)
class Request:
    """One add-checkpoint request a case sends, and the checkpoint body it names."""

    body: bytes
    checkpoint: str
    size: int


def craft(fault: str, origin: str, log_key: SigningKey, held: int) -> Request:
    """The add-checkpoint request of a case, for a witness that holds size `held` of the suite's log (C2SP tlog-witness):

    `none` extends it by 3 with the right proof; `unknown-origin` names an origin the witness does not know; `other-key`
    is signed by another key under the log's name; `old-too-large` gives an old size over the checkpoint's; `wrong-old`
    an old size that is not the one held; `same-size-other-root` the held size with another root; `bad-proof` a
    consistency proof with one bit flipped."""
    new = held + 3
    old = held
    root = tree_root(new)
    proof = consistency_proof(old, new) if old else []
    name, signer = origin, log_key
    if fault == "unknown-origin":
        name = origin = f"unknown-{os.urandom(4).hex()}.conformance.invalid/log"
    elif fault == "other-key":
        signer = Ed25519PrivateKey.generate()
    elif fault == "old-too-large":
        old, proof = new + 1, []
    elif fault == "wrong-old":
        old = held + 1
        proof = consistency_proof(old, new)
    elif fault == "same-size-other-root":
        new, root, proof = held, hashlib.sha256(os.urandom(16)).digest(), []
    elif fault == "bad-proof":
        if not proof:
            raise ValueError("a bad proof needs a witness that holds a size > 0 (sync first)")
        proof = [bytes([proof[0][0] ^ 0x01]) + proof[0][1:], *proof[1:]]
    elif fault != "none":
        raise ValueError(f"unknown witness fault {fault!r}")
    body = checkpoint_body(origin, new, root)
    return Request(add_checkpoint_body(old, proof, signed_note(body, name, signer)), body, new)


def sync_request(origin: str, log_key: SigningKey) -> bytes:
    """The request that learns the witness's size: a checkpoint of size 1 from old 0. A witness that holds nothing for
    the origin cosigns it (it then holds 1); any other answers 409 with the size it holds."""
    return add_checkpoint_body(0, [], signed_note(checkpoint_body(origin, 1, tree_root(1)), origin, log_key))


class CosignatureInvalid(Exception):
    """A 200 answer whose cosignature does not verify; the message says why."""


def verify_cosignature(answer: bytes, checkpoint: str, witness_public: bytes) -> None:
    """`answer` holds a cosignature/v1 line (C2SP tlog-cosignature) by the witness key `witness_public` over `checkpoint`:
    "— name base64(key id || uint64 time || Ed25519 signature)", signed over "cosignature/v1\\ntime T\\n" + the body."""
    for line in answer.decode("utf-8", "replace").splitlines():
        if not line.startswith("\u2014 "):
            continue
        name, _, encoded = line[2:].rpartition(" ")
        try:
            raw = base64.b64decode(encoded, validate=True)
        except ValueError:
            continue
        if len(raw) != 4 + 8 + 64 or raw[:4] != key_id(name, COSIGNATURE_V1, witness_public):
            continue
        timestamp = int.from_bytes(raw[4:12], "big")
        message = f"cosignature/v1\ntime {timestamp}\n{checkpoint}".encode()
        try:
            Ed25519PublicKey.from_public_bytes(witness_public).verify(raw[12:], message)
        except InvalidSignature:
            raise CosignatureInvalid(f"the cosignature of {name} does not verify over the checkpoint") from None
        return
    raise CosignatureInvalid("no cosignature/v1 line of the witness's key (from --trust) in the answer")
