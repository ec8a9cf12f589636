"""The suite's own check of the ledger's proofs: RFC 9162 §2.1 Merkle trees (docs/protocol.md §13.2).

Written here from the RFC, never imported from the hub's ledger: a proof the hub computes
wrongly must not pass because the checker shares its code. Leaf hash SHA-256(0x00 || entry),
node hash SHA-256(0x01 || left || right). Each check raises `ProofInvalid` naming what was
wrong, and also requires the proof's exact length (PROTO-13.2-2).
"""

from __future__ import annotations

import hashlib


class ProofInvalid(Exception):
    """An inclusion or consistency proof does not verify; the message says which check failed."""


def leaf_hash(entry: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + entry).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _hashes_are_sha256(**hashes: bytes | list[bytes]) -> None:
    for name, value in hashes.items():
        for item in value if isinstance(value, list) else [value]:
            if len(item) != 32:
                raise ProofInvalid(f"a {name} hash of {len(item)} bytes, want 32")


def _inclusion_length(index: int, size: int) -> int:
    """The length of an inclusion proof for `index` in a tree of `size`. Requires 0 <= index < size."""
    inner = (index ^ (size - 1)).bit_length()
    return inner + bin(index >> inner).count("1")


def verify_inclusion(leaf: bytes, index: int, size: int, proof: list[bytes], root: bytes) -> None:
    """RFC 9162 §2.1.3.2: `leaf` is at `index` of the tree of `size` whose root is `root`. Requires 0 <= index < size."""
    if not 0 <= index < size:
        raise ProofInvalid(f"index {index} is not smaller than size {size}")
    _hashes_are_sha256(leaf=leaf, root=root, proof=proof)
    if len(proof) != _inclusion_length(index, size):
        raise ProofInvalid(f"wrong inclusion proof size {len(proof)}, want {_inclusion_length(index, size)}")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise ProofInvalid("the inclusion proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            r = _node(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = _node(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofInvalid("the inclusion proof is shorter than the path to the root")
    if r != root:
        raise ProofInvalid("the inclusion proof leads to another root")


def _consistency_length(first: int, second: int) -> int:
    """The length of a consistency proof from `first` to `second`. Requires 0 < first < second."""
    inner = ((first - 1) ^ (second - 1)).bit_length()
    border = bin((first - 1) >> inner).count("1")
    shift = (first & -first).bit_length() - 1  # the trailing zeros of first: that subtree's root is the proof's seed
    return (0 if first == 1 << shift else 1) + inner - shift + border


def verify_consistency(first: int, second: int, proof: list[bytes], first_root: bytes, second_root: bytes) -> None:
    """RFC 9162 §2.1.4.2: the tree of `second` with `second_root` extends the tree of `first` with `first_root`.

    Requires 0 <= first <= second (a proof from 0, or from a larger to a smaller size, always fails)."""
    if first == 0:
        raise ProofInvalid("a consistency proof from size 0 always fails")
    if first > second:
        raise ProofInvalid(f"a consistency proof from size {first} to the smaller size {second} always fails")
    if first == second:
        if proof:
            raise ProofInvalid(f"wrong consistency proof size {len(proof)} between equal sizes, want 0")
        if first_root != second_root:
            raise ProofInvalid("equal sizes with two roots")
        return
    _hashes_are_sha256(root=[first_root, second_root], proof=proof)
    if len(proof) != _consistency_length(first, second):
        raise ProofInvalid(f"wrong consistency proof size {len(proof)}, want {_consistency_length(first, second)}")
    path = list(proof)
    if first & (first - 1) == 0:
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofInvalid("the consistency proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            fr, sr = _node(c, fr), _node(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = _node(sr, c)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofInvalid("the consistency proof is shorter than the path to the root")
    if fr != first_root:
        raise ProofInvalid(f"the consistency proof does not lead to the root of size {first}")
    if sr != second_root:
        raise ProofInvalid(f"the consistency proof does not lead to the root of size {second}")
