"""The shipped signed vectors stay valid and in step with the schemas and the spec's Appendix A."""

from __future__ import annotations

import json
import re

import pytest

from gateway.contract import contract_dir
from gateway.protocol import jws
from gateway.protocol.message import verify_message
from tests.conftest import NOW, REPO

VALID = contract_dir("conformance") / "vectors" / "valid"
TYPES = ["referral.submit", "referral.accept", "referral.decline", "referral.update", "referral.withdraw",
         "referral.close", "verification.request", "verification.response", "verification.cancel", "receipt"]


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
