"""The suite's own Merkle proof checks (gateway/conformance/merkle.py) against the published probes and the RFC's
own definition of proofs: the suite's verdicts on the ledger never rest on the hub's ledger code."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

from gateway.conformance.merkle import (
    ProofInvalid,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)
from tests.conftest import shared_vectors


def _bytes(value: str | None) -> bytes:
    return base64.b64decode(value, validate=True) if value else b""


def _outcome(verify, *arguments) -> str:
    try:
        verify(*arguments)
    except ProofInvalid:
        return "bad"
    return "good"


@pytest.mark.parametrize("name", ["inclusion", "consistency"])
def test_the_published_probes_are_accepted_or_refused_as_published(name):
    probes = json.loads(shared_vectors("merkle", "consolidated", f"{name}.json").read_text("utf-8"))["probes"]
    counts = {"good": 0, "bad": 0}
    for probe in probes:
        proof = [_bytes(item) for item in probe["proof"] or []]
        if name == "inclusion":
            outcome = _outcome(verify_inclusion, _bytes(probe["leafHash"]), probe["leafIdx"], probe["treeSize"], proof, _bytes(probe["root"]))
        else:
            outcome = _outcome(verify_consistency, probe["size1"], probe["size2"], proof, _bytes(probe["root1"]), _bytes(probe["root2"]))
        assert outcome == ("bad" if probe["wantErr"] else "good"), probe["file"]
        counts[outcome] += 1
    assert counts == {"good": 6, "bad": 92}


# RFC 9162 §2.1.1, §2.1.3.1 and §2.1.4.1, written as the RFC defines them (recursively), to generate proofs.

def _root(leaves: list[bytes]) -> bytes:
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaf_hash(leaves[0])
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return hashlib.sha256(b"\x01" + _root(leaves[:k]) + _root(leaves[k:])).digest()


def _path(m: int, leaves: list[bytes]) -> list[bytes]:
    if len(leaves) == 1:
        return []
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return _path(m, leaves[:k]) + [_root(leaves[k:])] if m < k else _path(m - k, leaves[k:]) + [_root(leaves[:k])]


def _subproof(m: int, leaves: list[bytes], complete: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if complete else [_root(leaves)]
    k = 1 << ((n - 1).bit_length() - 1)
    if m <= k:
        return _subproof(m, leaves[:k], complete) + [_root(leaves[k:])]
    return _subproof(m - k, leaves[k:], False) + [_root(leaves[:k])]


LEAVES = [f"entry {number}".encode() for number in range(17)]


def test_every_rfc_proof_of_trees_up_to_17_leaves_verifies_and_any_changed_one_does_not():
    for size in range(1, len(LEAVES) + 1):
        tree, root = LEAVES[:size], _root(LEAVES[:size])
        for index in range(size):
            proof = _path(index, tree)
            verify_inclusion(leaf_hash(tree[index]), index, size, proof, root)
            if proof:
                with pytest.raises(ProofInvalid):
                    verify_inclusion(leaf_hash(tree[index]), index, size, proof[:-1], root)
            with pytest.raises(ProofInvalid):
                verify_inclusion(leaf_hash(b"another"), index, size, proof, root)
        for first in range(1, size + 1):
            proof = _subproof(first, tree, True)
            verify_consistency(first, size, proof, _root(LEAVES[:first]), root)
            with pytest.raises(ProofInvalid):
                verify_consistency(first, size, proof + [root], _root(LEAVES[:first]), root)
            if first < size:
                with pytest.raises(ProofInvalid):
                    verify_consistency(first, size, proof, _root(LEAVES[:first]), _root(LEAVES[:size - 1]))
