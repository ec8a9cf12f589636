"""docs/security.md's table of attacks and faults names tests that exist and, in a full run, passed.

The table is the promise; these tests keep it honest. A named test must be a test
function of the named file (read with `ast`, so a renamed or deleted test breaks the
build). At the end of a session that ran them, every named test must have passed;
a session that collected only some of them (a run of one folder) checks those.
"""

from __future__ import annotations

import ast
import re

import pytest

from tests.conftest import REPO, passed_tests

SECURITY = REPO / "docs" / "security.md"
NAMED = re.compile(r"`(tests/[\w/]+\.py)::(test_\w+)`")


def _named_tests() -> list[tuple[str, str]]:
    table = SECURITY.read_text("utf-8").split("## Threat model", 1)[1].split("\n## ", 1)[0]
    named = NAMED.findall(table)
    assert len(named) >= 30, "the threat model's table names the tests that cover it"
    return named


def test_every_test_the_threat_model_names_exists():
    missing = []
    for path, name in _named_tests():
        file = REPO / path
        functions = {node.name for node in ast.walk(ast.parse(file.read_text("utf-8"))) if isinstance(node, ast.FunctionDef)} if file.is_file() else set()
        if name not in functions:
            missing.append(f"{path}::{name}")
    assert not missing, "docs/security.md names tests that do not exist: " + ", ".join(missing)


@pytest.mark.after_everything
def test_every_test_the_threat_model_names_passed_in_this_run(request):
    collected = {item.nodeid.split("[")[0] for item in request.session.items}
    named = {f"{path}::{name}" for path, name in _named_tests()}
    ran_here = named & collected
    if not ran_here:
        pytest.skip("this session collected none of the tests docs/security.md names (a partial run)")
    passed = {nodeid.split("[")[0] for nodeid in passed_tests}
    not_passed = sorted(ran_here - passed)
    assert not not_passed, "named in docs/security.md but not passed in this run: " + ", ".join(not_passed)
