"""The Merkle tree against published vectors (../shared/vectors/merkle, see its README).

The verifier must accept every good probe of transparency-dev/merkle's test data and
refuse every bad one with ProofError. The prover must rebuild the RFC 6962 reference
tree of eight leaves: every root, node and proof. The subtree probes (Merkle Tree
Certificates) concern no part of the ledger and are left out.
"""

from __future__ import annotations

import base64
import hashlib
import json

from gateway.ledger.merkle import (
    EMPTY_ROOT,
    Edge,
    Frontier,
    Perfect,
    ProofError,
    consistency_nodes,
    inclusion_nodes,
    leaf_hash,
    node_hash,
    perfect_decomposition,
    reference_consistency,
    reference_inclusion,
    reference_root,
    verify_consistency,
    verify_inclusion,
)
from tests.conftest import shared_vectors

# Counted from consolidated/{inclusion,consistency}.json (transparency-dev/merkle@417fb0c):
# 98 probes each, 6 good and 92 bad. Fixed here so that a truncated file fails.
INCLUSION_PROBES = {"good": 6, "bad": 92}
CONSISTENCY_PROBES = {"good": 6, "bad": 92}


def _probes(name: str) -> list[dict]:
    return json.loads(shared_vectors("merkle", "consolidated", f"{name}.json").read_text("utf-8"))["probes"]


def _bytes(value: str | None) -> bytes:
    return base64.b64decode(value, validate=True) if value else b""


def _proof(value: list[str] | None) -> list[bytes]:
    return [_bytes(item) for item in value or []]


def _outcome(verify, *arguments) -> str:
    """'good' when `verify` passes, 'bad' when it raises ProofError; any other exception propagates."""
    try:
        verify(*arguments)
    except ProofError:
        return "bad"
    return "good"


def test_inclusion_probes_are_accepted_or_refused_as_published():
    counts = {"good": 0, "bad": 0}
    for probe in _probes("inclusion"):
        outcome = _outcome(
            verify_inclusion,
            _bytes(probe["leafHash"]),
            probe["leafIdx"],
            probe["treeSize"],
            _proof(probe["proof"]),
            _bytes(probe["root"]),
        )
        assert outcome == ("bad" if probe["wantErr"] else "good"), probe["file"]
        counts[outcome] += 1
    assert counts == INCLUSION_PROBES


def test_consistency_probes_are_accepted_or_refused_as_published():
    counts = {"good": 0, "bad": 0}
    for probe in _probes("consistency"):
        outcome = _outcome(
            verify_consistency,
            probe["size1"],
            probe["size2"],
            _proof(probe["proof"]),
            _bytes(probe["root1"]),
            _bytes(probe["root2"]),
        )
        assert outcome == ("bad" if probe["wantErr"] else "good"), probe["file"]
        counts[outcome] += 1
    assert counts == CONSISTENCY_PROBES


def test_probes_reach_the_edges_the_verifier_must_survive():
    """The counts above only mean something if the files hold the hard cases."""
    inclusion, consistency = _probes("inclusion"), _probes("consistency")
    assert any(probe["leafIdx"] == 2**64 - 1 for probe in inclusion)
    assert any(len(_bytes(probe["leafHash"])) not in (0, 32) for probe in inclusion)
    assert any(len(item) == 0 for probe in inclusion for item in _proof(probe["proof"]))
    assert any(len(_bytes(probe["root1"])) not in (0, 32) for probe in consistency)
    assert any(probe["size1"] == 0 for probe in consistency)
    assert any(probe["size1"] > probe["size2"] for probe in consistency)


# The RFC 6962 reference tree of eight leaves


def _reference_tree() -> dict:
    document = json.loads(shared_vectors("merkle", "rfc6962-reference", "reference-tree-8.json").read_text("utf-8"))
    return {
        "document": document,
        "entries": [bytes.fromhex(leaf) for leaf in document["leaves"]],
        "roots": [bytes.fromhex(root) for root in document["roots_by_size"]],
    }


def _grow(entries: list[bytes]) -> tuple[dict[Perfect, bytes], dict[int, dict[Edge, bytes]], list[bytes]]:
    """Append every entry; keep each Perfect node, and each size's Edge nodes and root."""
    frontier = Frontier()
    perfect: dict[Perfect, bytes] = {}
    edges = {0: {}}
    roots = [frontier.root()]
    for entry in entries:
        perfect.update(frontier.append(leaf_hash(entry)))
        edges[frontier.size] = dict(frontier.edges())
        roots.append(frontier.root())
    return perfect, edges, roots


def test_hasher_known_answers():
    for answer in _reference_tree()["document"]["hasher_known_answers"]:
        want = bytes.fromhex(answer["want"])
        if answer["op"] == "empty":
            assert EMPTY_ROOT == want, answer["desc"]
        elif answer["op"] == "leaf":
            assert leaf_hash(bytes.fromhex(answer["input"])) == want, answer["desc"]
        else:
            assert node_hash(bytes.fromhex(answer["left"]), bytes.fromhex(answer["right"])) == want, answer["desc"]


def test_frontier_and_recursion_reproduce_every_root():
    tree = _reference_tree()
    _, _, roots = _grow(tree["entries"])
    assert len(tree["roots"]) == 9
    assert roots == tree["roots"]
    assert [reference_root(tree["entries"][:size]) for size in range(9)] == tree["roots"]


def test_frontier_produces_every_node_and_no_other():
    tree = _reference_tree()
    perfect, _, _ = _grow(tree["entries"])
    want = {
        Perfect(level, index): bytes.fromhex(value)
        for level, hashes in enumerate(tree["document"]["node_hashes"])
        for index, value in enumerate(hashes)
    }
    assert len(want) == 15
    assert perfect == want


def test_frontier_holds_every_compact_range():
    tree = _reference_tree()
    perfect, _, _ = _grow(tree["entries"])
    for size, hashes in enumerate(tree["document"]["compact_ranges"]):
        want = [bytes.fromhex(value) for value in hashes]
        assert [perfect[node] for node in perfect_decomposition(size)] == want, size
        assert Frontier.from_perfect(size, want).root() == tree["roots"][size], size


def test_prover_reproduces_every_inclusion_proof():
    tree = _reference_tree()
    perfect, edges, _ = _grow(tree["entries"])
    cases = tree["document"]["inclusion_proofs"]
    assert len(cases) == 5
    for case in cases:
        index, size = case["leaf_index"], case["tree_size"]
        want = [bytes.fromhex(value) for value in case["proof"]]
        nodes = {**perfect, **edges[size]}
        assert [nodes[node] for node in inclusion_nodes(index, size)] == want, case
        assert reference_inclusion(index, tree["entries"][:size]) == want, case
        verify_inclusion(leaf_hash(tree["entries"][index]), index, size, want, tree["roots"][size])


def test_prover_reproduces_every_consistency_proof():
    tree = _reference_tree()
    perfect, edges, _ = _grow(tree["entries"])
    cases = tree["document"]["consistency_proofs"]
    assert len(cases) == 5
    for case in cases:
        size1, size2 = case["size1"], case["size2"]
        want = [bytes.fromhex(value) for value in case["proof"]]
        nodes = {**perfect, **edges[size2]}
        assert [nodes[node] for node in consistency_nodes(size1, size2)] == want, case
        assert reference_consistency(size1, tree["entries"][:size2]) == want, case
        verify_consistency(size1, size2, want, tree["roots"][size1], tree["roots"][size2])


def test_recursion_reproduces_the_subtree_hashes_of_the_130_leaf_tree():
    """draft-ietf-plants-merkle-tree-certs: MTH(D[start:end]) for every valid subtree of d[i] = byte i."""
    digests = _reference_tree()["document"]["large_tree_rolling_digests"]
    entries = [bytes([i]) for i in range(digests["max_size"])]
    lines = []
    for end in range(digests["max_size"] + 1):
        for start in range(end + 1):
            width = end - start
            if start == 0 or width == 0 or start % (1 << (width - 1).bit_length()) == 0:
                lines.append(f"[{start}, {end}) {reference_root(entries[start:end]).hex()}\n")
    assert hashlib.sha256("".join(lines).encode()).hexdigest() == digests["subtree_hashes_sha256"]

