"""The shipped signed vectors stay valid and in step with the schemas and the spec's Appendix A; the offline vectors
(`gateway conformance vectors`) carry the verdicts our verifier and an independent JOSE implementation reach."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from gateway.contract import contract_dir
from gateway.protocol import jws
from gateway.protocol.errors import ProtocolError
from gateway.protocol.message import verify_message
from tests.conformance.suite import cli
from tests.conftest import NOW, REPO
from tests.protocol.test_node_interop import INTEROP_NODE, NODE_TIMEOUT_SECONDS, jose_command

VALID = contract_dir("conformance") / "vectors" / "valid"
TYPES = ["referral.submit", "referral.accept", "referral.decline", "referral.update", "referral.withdraw",
         "referral.close", "verification.request", "verification.response", "verification.cancel", "receipt"]
CLASSES = {"signature", "profile", "JSON", "schema", "protocol"}


@pytest.mark.parametrize("message_type", TYPES)
def test_each_type_has_a_valid_signed_vector_of_its_schema_example(message_type, trust, schemas, example):
    compact = (VALID / f"{message_type}.jws").read_bytes().strip()
    message = verify_message(compact, trust, schemas, NOW)
    assert message.type == message_type
    assert dict(message.payload) == example(message_type)


def test_vectors_cover_both_algorithms(trust):
    algorithms = {jws.parse_compact((VALID / f"{t}.jws").read_bytes().strip(), "gba-case+jws").alg for t in TYPES}
    assert algorithms == {"Ed25519", "ES256"}


def test_appendix_a_shows_the_receipt_vector_byte_for_byte():
    appendix = (REPO / "docs" / "protocol.md").read_text("utf-8").split("## Appendix A", 1)[1]
    blocks = re.findall(r"```[a-z]*\n(.*?)\n```", appendix, re.DOTALL)
    compact = (VALID / "receipt.jws").read_bytes().strip()
    shown_compact = blocks[6].replace("\n", "").encode()
    assert shown_compact == compact
    assert blocks[7] == jws.digest(compact)
    header, payload, signature = compact.split(b".")
    assert blocks[2] == header.decode() and blocks[4].replace("\n", "") == payload.decode() and blocks[5] == signature.decode()


@pytest.fixture(scope="module")
def offline(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vectors")
    result = cli("conformance", "vectors", "--out", str(folder))
    assert result.status == 0, result.stderr
    index = json.loads((folder / "index.json").read_text("utf-8"))
    assert f"{len(index['vectors'])} vectors" in result.stdout
    return folder, index


def test_offline_vectors_have_a_class_a_verdict_and_the_test_keys(offline):
    folder, index = offline
    assert index["format"] == "gba-conformance-vectors/v1"
    assert {vector["class"] for vector in index["vectors"]} == CLASSES
    assert all(vector["expected"] in ("valid", "invalid") and (vector["code"] is None) == (vector["expected"] == "valid")
               for vector in index["vectors"])
    assert {f"valid-{t}" for t in TYPES} <= {vector["id"] for vector in index["vectors"]}
    assert (folder / "keys" / "trust-list.json").is_file() and (folder / "keys" / "test-cn-gd-message-1.key.jwk").is_file()


def test_our_verifier_reaches_every_offline_vectors_verdict_and_code(offline, trust, schemas):
    folder, index = offline
    for vector in index["vectors"]:
        compact = (folder / vector["file"]).read_bytes()
        try:
            verify_message(compact, trust, schemas, NOW)
            outcome = None
        except ProtocolError as refusal:
            outcome = refusal.code
        assert outcome == vector["code"], f"{vector['id']}: expected {vector['code']}, our verifier says {outcome}"


def test_node_jose_verifies_every_positive_vector_and_refuses_every_signature_negative(offline):
    folder, index = offline
    node = jose_command()[0]
    completed = subprocess.run([node, str(INTEROP_NODE / "verify_vectors.mjs"), str(folder)], capture_output=True,
                               timeout=NODE_TIMEOUT_SECONDS, cwd=INTEROP_NODE, check=False)
    assert completed.returncode == 0, completed.stderr.decode(errors="replace")
    results = {item["id"]: item for item in json.loads(completed.stdout)}
    assert set(results) == {vector["id"] for vector in index["vectors"]}
    for vector in index["vectors"]:
        if vector["expected"] == "valid":
            assert results[vector["id"]]["verified"], f"{vector['id']}: jose refused it: {results[vector['id']].get('error')}"
        elif vector["class"] == "signature":
            assert not results[vector["id"]]["verified"], f"{vector['id']}: jose verified a signature-class negative"
