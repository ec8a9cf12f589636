"""Shared fixtures: the published test keys, the shipped schemas, and a fixed clock."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, NoReturn

import pytest

from gateway.contract import contract_dir
from gateway.keyfiles import read_private_key
from gateway.protocol.keys import PrivateKey
from gateway.protocol.schema import load_message_schemas
from gateway.protocol.trust import TrustList, load_trust_list

pytest_plugins = ("tests.database", "tests.privacy", "tests.browser")

REPO = Path(__file__).resolve().parents[1]
TEST_KEYS = contract_dir("keys") / "test"
TRUST_LIST = TEST_KEYS / "trust-list.json"
SHARED_VECTORS = REPO.parent / "shared" / "vectors"
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc)
"""The tests' clock: inside every published test key's validity, after the revoked key's revocation."""


def unavailable_here(reason: str, needed: str = "it") -> NoReturn:
    """Skip a test whose prerequisite this machine lacks, saying why; under CI=true, fail instead: CI has them all."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI=true requires {needed}")
    pytest.skip(reason)


def shared_vectors(*parts: str) -> Path:
    """A path under ../shared/vectors; skip when absent, but fail under CI=true."""
    path = SHARED_VECTORS.joinpath(*parts)
    if not path.exists():
        unavailable_here(f"external test vectors not found at {path} (the ../shared/vectors folder beside the checkout)", "them")
    return path


@pytest.fixture(scope="session")
def trust() -> TrustList:
    return load_trust_list(TRUST_LIST.read_bytes())


@pytest.fixture(scope="session")
def schemas():
    return load_message_schemas()


@pytest.fixture(scope="session")
def test_key() -> Callable[[str], PrivateKey]:
    """Load a published test key by kid."""
    return lambda kid: read_private_key(TEST_KEYS / f"{kid}.key.jwk")


@pytest.fixture(scope="session")
def example() -> Callable[[str], dict[str, Any]]:
    """A fresh copy of the first `examples` entry of the shipped schema for a message type."""

    def load(message_type: str) -> dict[str, Any]:
        document = json.loads((contract_dir("schemas") / f"{message_type}.json").read_text("utf-8"))
        return json.loads(json.dumps(document["examples"][0]))

    return load


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked `after_everything` run last, so that they see what the whole session left behind."""
    items.sort(key=lambda item: item.get_closest_marker("after_everything") is not None)


passed_tests: set[str] = set()
"""Node ids of the tests that passed so far in this session (tests/test_security_doc.py reads it)."""


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" and report.passed:
        passed_tests.add(report.nodeid)
