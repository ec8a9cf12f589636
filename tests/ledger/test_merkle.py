"""The ledger's Merkle tree: proofs from stored nodes are the RFC 9162 proofs, and nothing else verifies.

Proofs here are built the way the store builds them: `inclusion_nodes` and
`consistency_nodes` name the nodes, which are looked up among the Perfect nodes that
`Frontier.append` produced and the Edge nodes that `Frontier.edges` gave at that size.
The yardstick is the RFC's own recursion (`reference_*`).

Entries are distinct, so no two leaves share a hash: with equal neighbours an index
off by one could honestly verify.
"""

from __future__ import annotations

import functools
import hashlib
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.ledger.merkle import (
    EMPTY_ROOT,
    Edge,
    Frontier,
    NodeRef,
    Perfect,
    ProofError,
    consistency_nodes,
    inclusion_nodes,
    leaf_hash,
    perfect_decomposition,
    reference_consistency,
    reference_inclusion,
    reference_root,
    verify_consistency,
    verify_inclusion,
)

SMALL = 200
LARGE = 10**6


def _entry(index: int) -> bytes:
    return b'{"n":%d}' % index


class _GrownTree:
    """A tree grown leaf by leaf, keeping what the store keeps.

    That is every Perfect node, and for each size its Edge nodes and its root.
    """

    def __init__(self, size: int) -> None:
        self.entries = [_entry(index) for index in range(size)]
        self.leaves = [leaf_hash(entry) for entry in self.entries]
        self.perfect: dict[Perfect, bytes] = {}
        self.completed: list[set[Perfect]] = []  # the nodes that appending leaf i returned
        frontier = Frontier()
        self.edges: dict[int, dict[Edge, bytes]] = {0: {}}
        self.roots = [frontier.root()]
        for leaf in self.leaves:
            completed = frontier.append(leaf)
            self.completed.append({node for node, _ in completed})
            self.perfect.update(completed)
            self.edges[frontier.size] = dict(frontier.edges())
            self.roots.append(frontier.root())

    def resolve(self, nodes: list[NodeRef], size: int) -> list[bytes]:
        return [self.perfect[node] if isinstance(node, Perfect) else self.edges[size][node] for node in nodes]

    def inclusion(self, index: int, size: int) -> list[bytes]:
        return self.resolve(inclusion_nodes(index, size), size)

    def consistency(self, size1: int, size2: int) -> list[bytes]:
        return self.resolve(consistency_nodes(size1, size2), size2)


@functools.cache
def _small() -> _GrownTree:
    return _GrownTree(SMALL)


def _rows(size: int) -> int:
    """ceil(log2 size), the most hashes an inclusion proof in a tree of `size` leaves holds."""
    return (size - 1).bit_length()


# Every size up to 200: the RFC recursion and the stored nodes agree


def test_the_empty_tree_has_the_hash_of_nothing():
    assert Frontier().root() == reference_root([]) == EMPTY_ROOT == hashlib.sha256(b"").digest()
    assert Frontier().edges() == []


def test_roots_equal_the_recursion_for_every_size():
    tree = _small()
    for size in range(SMALL + 1):
        assert tree.roots[size] == reference_root(tree.entries[:size]), size


def test_inclusion_proofs_equal_the_recursion_for_every_size_and_index():
    tree = _small()
    for size in range(1, SMALL + 1):
        entries, root = tree.entries[:size], tree.roots[size]
        for index in range(size):
            proof = tree.inclusion(index, size)
            assert proof == reference_inclusion(index, entries), (index, size)
            assert len(proof) <= _rows(size)
            verify_inclusion(tree.leaves[index], index, size, proof, root)
            for wrong in (index - 1, index + 1):
                with pytest.raises(ProofError):
                    verify_inclusion(tree.leaves[index], wrong, size, proof, root)


def test_consistency_proofs_equal_the_recursion_for_every_pair_of_sizes():
    tree = _small()
    for size2 in range(1, SMALL + 1):
        entries, root2 = tree.entries[:size2], tree.roots[size2]
        for size1 in range(1, size2 + 1):
            proof = tree.consistency(size1, size2)
            assert proof == reference_consistency(size1, entries), (size1, size2)
            assert len(proof) <= _rows(size2) + 1
            verify_consistency(size1, size2, proof, tree.roots[size1], root2)
            for wrong in (size1 - 1, size1 + 1):
                with pytest.raises(ProofError):
                    verify_consistency(wrong, size2, proof, tree.roots[size1], root2)


def test_a_consistency_proof_can_hold_one_hash_more_than_an_inclusion_proof():
    assert _rows(4) == 2
    assert consistency_nodes(3, 4) == [Perfect(0, 2), Perfect(0, 3), Perfect(1, 0)]


def test_proofs_need_only_nodes_complete_at_their_size_and_exactly_its_edges():
    tree = _small()
    for size in range(1, SMALL + 1):
        needed = {node for index in range(size) for node in inclusion_nodes(index, size)}
        needed |= {node for size1 in range(1, size + 1) for node in consistency_nodes(size1, size)}
        edges = {node for node in needed if isinstance(node, Edge)}
        assert edges == set(tree.edges[size]), size
        assert all(node.size == size for node in edges)
        assert all((node.index + 1) << node.level <= size for node in needed - edges), size
        for edge, value in tree.edges[size].items():
            assert value == reference_root(tree.entries[edge.start : size]), edge


def test_append_returns_exactly_the_perfect_nodes_its_leaf_completes():
    tree = _small()
    for index, completed in enumerate(tree.completed):
        size = index + 1
        want = {Perfect(level, (size >> level) - 1) for level in range(size.bit_length()) if size % (1 << level) == 0}
        assert completed == want, index
    assert set(tree.perfect) == set().union(*tree.completed)


def test_perfect_decomposition_follows_the_bits_of_the_size():
    assert perfect_decomposition(0) == []
    assert perfect_decomposition(13) == [Perfect(3, 0), Perfect(2, 2), Perfect(0, 12)]
    tree = _small()
    for size in range(SMALL + 1):
        decomposition = perfect_decomposition(size)
        assert sum(1 << node.level for node in decomposition) == size
        assert Frontier.from_perfect(size, [tree.perfect[node] for node in decomposition]).root() == tree.roots[size]


def test_a_resumed_frontier_grows_the_same_tree():
    tree = _small()
    for size in range(65):
        frontier = Frontier.from_perfect(size, [tree.perfect[node] for node in perfect_decomposition(size)])
        for leaf in tree.leaves[size:100]:
            assert {node for node, _ in frontier.append(leaf)} <= set(tree.perfect)
            assert dict(frontier.edges()) == tree.edges[frontier.size]
        assert frontier.size == 100
        assert frontier.root() == tree.roots[100]


def test_from_perfect_refuses_hashes_that_do_not_fit_the_size():
    with pytest.raises(ValueError, match="tree size 3 has 2 perfect subtrees, got 1 hashes"):
        Frontier.from_perfect(3, [bytes(32)])
    with pytest.raises(ValueError, match="frontier hash 1 has 31 bytes, want 32"):
        Frontier.from_perfect(3, [bytes(32), bytes(31)])


def test_append_takes_the_leaf_hash_not_the_entry():
    with pytest.raises(ValueError, match="leaf hash has 7 bytes, want 32"):
        Frontier().append(_entry(0))


def test_provers_refuse_sizes_outside_their_preconditions():
    for index, size in [(0, 0), (3, 3), (-1, 3)]:
        with pytest.raises(ValueError):
            inclusion_nodes(index, size)
    for size1, size2 in [(0, 0), (0, 3), (4, 3)]:
        with pytest.raises(ValueError):
            consistency_nodes(size1, size2)


def test_verifiers_name_the_numbers_that_are_wrong():
    tree = _small()
    proof = tree.inclusion(5, 8)
    with pytest.raises(ProofError, match="wrong proof size 2, want 3"):
        verify_inclusion(tree.leaves[5], 5, 8, proof[:2], tree.roots[8])
    with pytest.raises(ProofError, match="leaf index 8 is outside tree size 8"):
        verify_inclusion(tree.leaves[5], 8, 8, proof, tree.roots[8])
    with pytest.raises(ProofError, match="proof hash 1 has 31 bytes, want 32"):
        verify_inclusion(tree.leaves[5], 5, 8, [proof[0], proof[1][1:], proof[2]], tree.roots[8])
    with pytest.raises(ProofError, match="size2 3 is smaller than size1 4"):
        verify_consistency(4, 3, [], tree.roots[4], tree.roots[3])


def test_a_consistency_proof_from_the_empty_tree_is_refused_even_between_empty_trees():
    with pytest.raises(ProofError, match="size1 0 is not positive"):
        verify_consistency(0, 0, [], EMPTY_ROOT, EMPTY_ROOT)
    with pytest.raises(ProofError, match="size1 0 is not positive"):
        verify_consistency(0, 1, [], EMPTY_ROOT, _small().roots[1])


# A million leaves: random sizes against the recursion, random proofs against the roots


class _LargeTree:
    """A tree of LARGE leaves; Perfect nodes kept per level, Edge nodes and roots at a few sizes."""

    def __init__(self) -> None:
        rng = random.Random(9162)
        # Log-uniform, so every scale from a thousand leaves up gets a size, and one near the top.
        spread = {int(10 ** rng.uniform(3, 6)) for _ in range(3)}
        self.reference_sizes = sorted({*spread, rng.randrange(LARGE // 2, LARGE)})
        self.proof_sizes = sorted({*self.reference_sizes, 2**19 - 1, 2**19, 2**19 + 1, LARGE})
        root_sizes = {*self.proof_sizes, *rng.sample(range(1, LARGE + 1), 200)}

        self.entries = [_entry(index) for index in range(LARGE)]
        self.leaves = [leaf_hash(entry) for entry in self.entries]
        self.levels: list[list[bytes]] = [[] for _ in range(LARGE.bit_length())]
        self.edges: dict[int, dict[Edge, bytes]] = {}
        self.roots: dict[int, bytes] = {}
        frontier = Frontier()
        for leaf in self.leaves:
            for node, value in frontier.append(leaf):
                self.levels[node.level].append(value)  # appends complete each level left to right
            if frontier.size in root_sizes:
                self.roots[frontier.size] = frontier.root()
                if frontier.size in self.proof_sizes:
                    self.edges[frontier.size] = dict(frontier.edges())

    def resolve(self, nodes: list[NodeRef], size: int) -> list[bytes]:
        return [
            self.levels[node.level][node.index] if isinstance(node, Perfect) else self.edges[size][node] for node in nodes
        ]


@pytest.fixture(scope="module")
def large_tree() -> _LargeTree:
    """Module-scoped rather than cached: its 2 * 10**6 hashes are freed when the module ends."""
    return _LargeTree()


def test_a_million_leaf_tree_keeps_every_perfect_node(large_tree):
    tree = large_tree
    assert [len(hashes) for hashes in tree.levels] == [LARGE >> level for level in range(LARGE.bit_length())]
    assert tree.roots[LARGE] == reference_root(tree.entries)


def test_proofs_at_random_sizes_up_to_a_million_equal_the_recursion(large_tree):
    tree = large_tree
    rng = random.Random(6962)
    assert len(tree.reference_sizes) == 4 and tree.reference_sizes[-1] >= LARGE // 2
    for size in tree.reference_sizes:
        entries = tree.entries[:size]
        assert tree.roots[size] == reference_root(entries), size
        index, size1 = rng.randrange(size), rng.randrange(1, size)
        assert tree.resolve(inclusion_nodes(index, size), size) == reference_inclusion(index, entries), (index, size)
        want = reference_consistency(size1, entries)
        assert tree.resolve(consistency_nodes(size1, size), size) == want, (size1, size)


def test_proofs_in_a_million_leaf_tree_verify_against_its_roots(large_tree):
    tree = large_tree
    rng = random.Random(19)
    for size in tree.proof_sizes:
        for index in {0, size - 1, *(rng.randrange(size) for _ in range(50))}:
            proof = tree.resolve(inclusion_nodes(index, size), size)
            assert len(proof) <= _rows(size)
            verify_inclusion(tree.leaves[index], index, size, proof, tree.roots[size])
        for size1 in (size1 for size1 in tree.roots if size1 <= size):
            proof = tree.resolve(consistency_nodes(size1, size), size)
            assert len(proof) <= _rows(size) + 1
            verify_consistency(size1, size, proof, tree.roots[size1], tree.roots[size])


# Properties: one changed bit or index and the proof fails


def _flip(value: bytes, bit: int) -> bytes:
    changed = bytearray(value)
    changed[bit // 8] ^= 1 << bit % 8
    return bytes(changed)


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_an_inclusion_proof_with_one_bit_flipped_is_refused(data):
    tree = _small()
    size = data.draw(st.integers(1, SMALL), "size")
    index = data.draw(st.integers(0, size - 1), "index")
    parts = [tree.leaves[index], tree.roots[size], *tree.inclusion(index, size)]
    target = data.draw(st.integers(0, len(parts) - 1), "target (0 leaf, 1 root, 2.. proof)")
    parts[target] = _flip(parts[target], data.draw(st.integers(0, 255), "bit"))
    with pytest.raises(ProofError):
        verify_inclusion(parts[0], index, size, parts[2:], parts[1])


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_an_inclusion_proof_for_a_neighbouring_index_is_refused(data):
    tree = _small()
    size = data.draw(st.integers(1, SMALL), "size")
    index = data.draw(st.integers(0, size - 1), "index")
    wrong = index + data.draw(st.sampled_from([-1, 1]), "off by")
    with pytest.raises(ProofError):
        verify_inclusion(tree.leaves[index], wrong, size, tree.inclusion(index, size), tree.roots[size])


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_a_consistency_proof_with_one_bit_flipped_is_refused(data):
    tree = _small()
    size2 = data.draw(st.integers(1, SMALL), "size2")
    size1 = data.draw(st.integers(1, size2), "size1")
    parts = [tree.roots[size1], tree.roots[size2], *tree.consistency(size1, size2)]
    target = data.draw(st.integers(0, len(parts) - 1), "target (0 root1, 1 root2, 2.. proof)")
    parts[target] = _flip(parts[target], data.draw(st.integers(0, 255), "bit"))
    with pytest.raises(ProofError):
        verify_consistency(size1, size2, parts[2:], parts[0], parts[1])


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_a_consistency_proof_for_a_neighbouring_old_size_is_refused(data):
    tree = _small()
    size2 = data.draw(st.integers(1, SMALL), "size2")
    size1 = data.draw(st.integers(1, size2), "size1")
    wrong = size1 + data.draw(st.sampled_from([-1, 1]), "off by")
    with pytest.raises(ProofError):
        verify_consistency(wrong, size2, tree.consistency(size1, size2), tree.roots[size1], tree.roots[size2])
