"""The ledger's Merkle tree: RFC 9162 §2.1 hashing, proofs and their verification.

Pure functions over bytes and integers, no I/O: the store reads and writes the nodes
this module names.

Hashes (RFC 9162 §2.1.1): a leaf is SHA-256(0x00 || entry), an inner node
SHA-256(0x01 || left || right), the empty tree SHA-256(""). A tree of n > 1 leaves
splits at k, the largest power of two strictly less than n, so the right edge is
unbalanced rather than padded.

Nodes are addressed so that storage can fetch a proof in one query:

- `Perfect(level, index)` is the complete subtree of 2**level leaves starting at leaf
  index * 2**level. Once written it never changes. Level 0 is a leaf hash.
- `Edge(start, size)` is MTH(D[start:size]) for a tree of `size` leaves, where
  size - start is not a power of two. It lies on that tree's right edge and changes
  as the tree grows, so it belongs to one tree size.

A proof for a tree of n leaves needs only Perfect nodes and Edge(start, n) nodes,
because RFC 9162 PATH and SUBPROOF recurse into an unbalanced part only at the right
edge. `Frontier` keeps the right edge while appending and produces both kinds.

The `reference_*` functions are the RFC's recursive definitions written out plainly.
They are the yardstick for tests, not for production use.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

_HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
"""MTH({}) = SHA-256(""), the root of the tree with no leaves (RFC 9162 §2.1.1)."""


class ProofError(ValueError):
    """A proof, hash or tree size that does not verify. The message names the numbers."""


@dataclass(frozen=True, slots=True)
class Perfect:
    """The complete subtree of 2**level leaves [index * 2**level, (index + 1) * 2**level)."""

    level: int
    index: int


@dataclass(frozen=True, slots=True)
class Edge:
    """MTH(D[start:size]) in a tree of `size` leaves, where size - start is not a power of two."""

    start: int
    size: int


NodeRef = Perfect | Edge


def leaf_hash(entry: bytes) -> bytes:
    """SHA-256(0x00 || entry), RFC 9162 §2.1.1."""
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right), RFC 9162 §2.1.1."""
    return hashlib.sha256(b"\x01" + left + right).digest()


# Verification


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> None:
    """Check that `leaf` (a leaf hash) is entry `index` of the tree of `size` leaves with `root`.

    Requires 0 <= index < size. Raises ProofError otherwise, or when the proof fails
    (RFC 9162 §2.1.3.2).
    """
    _check_hash("root", root)
    calculated = root_from_inclusion(leaf, index, size, proof)
    if calculated != root:
        raise ProofError(
            f"inclusion proof for leaf {index} in tree size {size} gives root {calculated.hex()}, want {root.hex()}"
        )


def root_from_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes:
    """The root that an inclusion proof for `leaf` at `index` implies for a tree of `size` leaves.

    Requires 0 <= index < size. Raises ProofError otherwise, or when the proof has the
    wrong length or a hash of the wrong size.
    """
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside tree size {size}")
    _check_hash("leaf hash", leaf)
    inner, border = _path_shape(index, size)
    _check_proof(proof, inner + border)

    node = leaf
    for level in range(inner):
        if index >> level & 1:
            node = node_hash(proof[level], node)
        else:
            node = node_hash(node, proof[level])
    for sibling in proof[inner:]:
        node = node_hash(sibling, node)
    return node


def verify_consistency(size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes) -> None:
    """Check that the tree of `size2` leaves with `root2` extends the tree of `size1` leaves with `root1`.

    Requires 0 < size1 <= size2. Raises ProofError otherwise, or when the proof fails
    (RFC 9162 §2.1.4.2). Equal sizes need an empty proof and equal roots, nothing more.
    """
    if size1 <= 0:
        raise ProofError(f"size1 {size1} is not positive; a consistency proof from an empty tree proves nothing")
    if size2 < size1:
        raise ProofError(f"size2 {size2} is smaller than size1 {size1}")
    if size1 == size2:
        _check_proof(proof, 0)
        if root1 != root2:
            raise ProofError(f"tree size {size1} has two roots, {root1.hex()} and {root2.hex()}")
        return
    _check_hash("root1", root1)
    _check_hash("root2", root2)

    # The proof is the inclusion path of leaf size1 - 1 in the larger tree, minus its
    # lowest `shift` levels: those lie inside the largest perfect subtree ending at
    # size1, whose hash comes first in the proof, or is root1 itself when that subtree
    # is the whole old tree (size1 a power of two).
    inner, border = _path_shape(size1 - 1, size2)
    shift = (size1 & -size1).bit_length() - 1
    inner -= shift
    seed_in_proof = size1 != 1 << shift
    _check_proof(proof, int(seed_in_proof) + inner + border)
    if seed_in_proof:
        seed, path = proof[0], proof[1:]
    else:
        seed, path = root1, proof

    # Climb both trees at once: hashes to the left of the path are in both, hashes to
    # its right only in the new one.
    index = (size1 - 1) >> shift
    old = new = seed
    for level in range(inner):
        if index >> level & 1:
            old = node_hash(path[level], old)
            new = node_hash(path[level], new)
        else:
            new = node_hash(new, path[level])
    for sibling in path[inner:]:
        old = node_hash(sibling, old)
        new = node_hash(sibling, new)

    if old != root1:
        raise ProofError(
            f"consistency proof {size1} -> {size2} gives root {old.hex()} for size {size1}, want {root1.hex()}"
        )
    if new != root2:
        raise ProofError(
            f"consistency proof {size1} -> {size2} gives root {new.hex()} for size {size2}, want {root2.hex()}"
        )


def _path_shape(index: int, size: int) -> tuple[int, int]:
    """(inner, border) for the inclusion path of `index` in a tree of `size` leaves. Requires 0 <= index < size.

    `inner` counts the levels below the point where the paths to `index` and to the
    last leaf, size - 1, meet; there a sibling may lie left or right. Above it the path
    runs along the right edge, where every sibling present lies to the left: one for
    each set bit of index >> inner. The proof length is inner + border.
    """
    inner = (index ^ (size - 1)).bit_length()
    border = (index >> inner).bit_count()
    return inner, border


def _check_proof(proof: Sequence[bytes], want: int) -> None:
    if len(proof) != want:
        raise ProofError(f"wrong proof size {len(proof)}, want {want}")
    for position, sibling in enumerate(proof):
        _check_hash(f"proof hash {position}", sibling)


def _check_hash(name: str, value: bytes) -> None:
    if len(value) != _HASH_SIZE:
        raise ProofError(f"{name} has {len(value)} bytes, want {_HASH_SIZE}")


# Proof construction: which nodes a proof needs


def inclusion_nodes(index: int, size: int) -> list[NodeRef]:
    """The nodes of the inclusion proof for leaf `index` in a tree of `size` leaves, in proof order.

    Requires 0 <= index < size. Follows PATH(m, D[n]) of RFC 9162 §2.1.3.1, so the
    list, resolved to hashes, is the RFC proof: the sibling nearest the leaf first.
    len(result) <= ceil(log2 size), and it equals the RFC proof length. At most one
    node is an Edge, and it is an Edge(start, size).
    """
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is outside tree size {size}")
    siblings: list[NodeRef] = []
    start, end = 0, size  # the subtree D[start:end] that holds the leaf
    while end - start > 1:
        split = start + _largest_power_of_two_below(end - start)
        if index < split:
            siblings.append(_node(split, end))
            end = split
        else:
            siblings.append(_node(start, split))
            start = split
    siblings.reverse()
    return siblings


def consistency_nodes(size1: int, size2: int) -> list[NodeRef]:
    """The nodes of the consistency proof from `size1` to `size2` leaves, in proof order.

    Requires 0 < size1 <= size2. Follows PROOF(m, D[n]) = SUBPROOF(m, D[n], true) of
    RFC 9162 §2.1.4.1, so the list, resolved to hashes, is the RFC proof; it is empty
    when size1 == size2. len(result) <= ceil(log2 size2) + 1 and equals the RFC proof
    length. The + 1 is real: 3 -> 4 needs three hashes, D[2], D[3] and MTH(D[0:2]).
    At most one node is an Edge, and it is an Edge(start, size2).
    """
    if not 0 < size1 <= size2:
        raise ValueError(f"consistency proof from size {size1} to size {size2}: need 0 < size1 <= size2")
    siblings: list[NodeRef] = []
    start, end = 0, size2  # the subtree D[start:end] in which the old tree ends
    while size1 < end:
        split = start + _largest_power_of_two_below(end - start)
        if size1 <= split:
            siblings.append(_node(split, end))
            end = split
        else:
            siblings.append(_node(start, split))
            start = split
    siblings.reverse()
    if start == 0:
        return siblings  # D[0:size1] is the old root, which the verifier holds
    return [_node(start, end), *siblings]


def _node(start: int, end: int) -> NodeRef:
    """The address of MTH(D[start:end]), a subtree that the RFC recursion reaches.

    Such a subtree is either perfect, and then aligned to its width, or ends at the
    tree's right edge, so `end` is the tree size.
    """
    width = end - start
    if width & (width - 1) == 0:
        level = width.bit_length() - 1
        return Perfect(level, start >> level)
    return Edge(start, end)


def _largest_power_of_two_below(n: int) -> int:
    """k with k < n <= 2k, the RFC 9162 §2.1.1 split. Requires n > 1."""
    return 1 << ((n - 1).bit_length() - 1)


# The right edge while appending


def perfect_decomposition(size: int) -> list[Perfect]:
    """The perfect subtrees that make up a tree of `size` leaves, left to right. Requires size >= 0.

    One per set bit of `size`, largest first: 13 = 8 + 4 + 1 gives Perfect(3, 0),
    Perfect(2, 2), Perfect(0, 12).
    """
    if size < 0:
        raise ValueError(f"tree size {size} is negative")
    nodes = []
    start = 0
    for level in reversed(range(size.bit_length())):
        if size >> level & 1:
            nodes.append(Perfect(level, start >> level))
            start += 1 << level
    return nodes


class Frontier:
    """The perfect subtrees of a tree of `size` leaves (binary decomposition), left to right.

    Appending a leaf hashes only what the leaf completes: amortised one SHA-256 call,
    never a rebuild. A new Frontier is the empty tree.
    """

    __slots__ = ("_hashes", "_size")

    def __init__(self) -> None:
        self._size = 0
        self._hashes: list[bytes] = []  # the hashes of perfect_decomposition(size)

    @classmethod
    def from_perfect(cls, size: int, hashes: Sequence[bytes]) -> Frontier:
        """Resume a tree from the hashes of perfect_decomposition(size), left to right."""
        want = len(perfect_decomposition(size))
        if len(hashes) != want:
            raise ValueError(f"tree size {size} has {want} perfect subtrees, got {len(hashes)} hashes")
        for position, value in enumerate(hashes):
            if len(value) != _HASH_SIZE:
                raise ValueError(f"frontier hash {position} has {len(value)} bytes, want {_HASH_SIZE}")
        frontier = cls()
        frontier._size = size
        frontier._hashes = [bytes(value) for value in hashes]
        return frontier

    @property
    def size(self) -> int:
        return self._size

    def append(self, leaf: bytes) -> list[tuple[Perfect, bytes]]:
        """Add a leaf hash as leaf `size`; return the perfect nodes it completes, level 0 first.

        `leaf` is the leaf hash, leaf_hash(entry), not the entry. The leaf completes
        Perfect(0, size) and one node more per trailing one bit of the old size.
        """
        if len(leaf) != _HASH_SIZE:
            raise ValueError(f"leaf hash has {len(leaf)} bytes, want {_HASH_SIZE}")
        index = self._size
        node = bytes(leaf)
        completed = [(Perfect(0, index), node)]
        level = 0
        while index >> level & 1:  # a perfect sibling of the same width waits on the left
            node = node_hash(self._hashes.pop(), node)
            level += 1
            completed.append((Perfect(level, index >> level), node))
        self._hashes.append(node)
        self._size = index + 1
        return completed

    def root(self) -> bytes:
        """MTH(D[0:size]): the perfect subtrees folded from the right."""
        if not self._hashes:
            return EMPTY_ROOT
        node = self._hashes[-1]
        for left in reversed(self._hashes[:-1]):
            node = node_hash(left, node)
        return node

    def edges(self) -> list[tuple[Edge, bytes]]:
        """Every Edge(start, size) with its hash, by start: the Edge nodes proofs at this size need.

        One for each perfect subtree but the first and the last: from its start to
        `size` the tree is imperfect. The tree itself, Edge(0, size), is the root and
        is left out.
        """
        decomposition = perfect_decomposition(self._size)
        edges = []
        if self._hashes:
            node = self._hashes[-1]
            for position in range(len(self._hashes) - 2, 0, -1):
                node = node_hash(self._hashes[position], node)
                perfect = decomposition[position]
                edges.append((Edge(perfect.index << perfect.level, self._size), node))
        edges.reverse()
        return edges


# The RFC's recursive definitions, for tests


def reference_root(entries: Sequence[bytes]) -> bytes:
    """MTH(D[n]) of the entries, by the recursion of RFC 9162 §2.1.1."""
    n = len(entries)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaf_hash(entries[0])
    k = _largest_power_of_two_below(n)
    return node_hash(reference_root(entries[:k]), reference_root(entries[k:]))


def reference_inclusion(index: int, entries: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n]) of RFC 9162 §2.1.3.1. Requires 0 <= index < len(entries)."""
    n = len(entries)
    if not 0 <= index < n:
        raise ValueError(f"leaf index {index} is outside tree size {n}")
    if n == 1:
        return []
    k = _largest_power_of_two_below(n)
    if index < k:
        return reference_inclusion(index, entries[:k]) + [reference_root(entries[k:])]
    return reference_inclusion(index - k, entries[k:]) + [reference_root(entries[:k])]


def reference_consistency(size1: int, entries: Sequence[bytes]) -> list[bytes]:
    """PROOF(m, D[n]) of RFC 9162 §2.1.4.1, between D[0:size1] and all entries. Requires 0 < size1 <= len(entries)."""
    if not 0 < size1 <= len(entries):
        raise ValueError(f"consistency proof from size {size1} to size {len(entries)}: need 0 < size1 <= size2")
    return _reference_subproof(size1, entries, True)


def _reference_subproof(m: int, entries: Sequence[bytes], whole_old_tree: bool) -> list[bytes]:
    """SUBPROOF(m, D[n], b) of RFC 9162 §2.1.4.1; `whole_old_tree` is b."""
    n = len(entries)
    if m == n:
        return [] if whole_old_tree else [reference_root(entries)]
    k = _largest_power_of_two_below(n)
    if m <= k:
        return _reference_subproof(m, entries[:k], whole_old_tree) + [reference_root(entries[k:])]
    return _reference_subproof(m - k, entries[k:], False) + [reference_root(entries[:k])]
