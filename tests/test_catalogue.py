"""The error catalogue is complete, documented, and every code is proven at a public interface.

A code counts as covered only where a test passes the literal code to
`assert_refused` (tests/cli_runner.py), which checks what the `gateway` command
printed; problems built from the catalogue itself do not count. Codes added to the
catalogue later are covered by the same check automatically.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from gateway.protocol.errors import CATALOGUE, PROBLEM_TYPE_PREFIX, ProtocolError

TESTS = Path(__file__).resolve().parent
PROTOCOL_MD = TESTS.parent / "docs" / "protocol.md"


def _codes_asserted_at_public_interfaces() -> dict[str, list[str]]:
    """Code literals passed to `assert_refused`, directly or through a parametrize column."""
    found: dict[str, list[str]] = {}
    for path in TESTS.rglob("test_*.py"):
        tree = ast.parse(path.read_text("utf-8"))
        for function in ast.walk(tree):
            if not isinstance(function, ast.FunctionDef):
                continue
            for node in ast.walk(function):
                if not (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Name)
                    and node.func.id == "assert_refused"
                    and len(node.args) == 2
                ):
                    continue
                argument = node.args[1]
                if isinstance(argument, ast.Constant):
                    codes = [argument.value]
                elif isinstance(argument, ast.Name):
                    codes = _parametrized_values(function, argument.id)
                else:
                    codes = []
                for code in codes:
                    found.setdefault(code, []).append(f"{path.name}:{node.lineno}")
    return found


def _parametrized_values(function: ast.FunctionDef, name: str) -> list[str]:
    """The literal values that `@pytest.mark.parametrize` gives argument `name` of `function`."""
    values: list[str] = []
    for decorator in function.decorator_list:
        if not (isinstance(decorator, ast.Call) and ast.unparse(decorator.func) == "pytest.mark.parametrize"):
            continue
        names_node, rows_node = decorator.args[:2]
        if isinstance(names_node, ast.Constant):
            names = [part.strip() for part in names_node.value.split(",")]
        else:
            names = [element.value for element in names_node.elts]
        if name not in names or not isinstance(rows_node, (ast.List, ast.Tuple)):
            continue
        column = names.index(name)
        for row in rows_node.elts:
            cell = row.elts[column] if len(names) > 1 and isinstance(row, (ast.Tuple, ast.List)) else row
            if isinstance(cell, ast.Constant) and isinstance(cell.value, str):
                values.append(cell.value)
    return values


def test_every_catalogue_code_is_asserted_through_a_public_interface():
    asserted = _codes_asserted_at_public_interfaces()
    missing = sorted(set(CATALOGUE) - set(asserted))
    assert not missing, f"codes no test asserts at a public interface: {missing}"


def test_tests_assert_only_catalogue_codes():
    unknown = sorted(set(_codes_asserted_at_public_interfaces()) - set(CATALOGUE))
    assert not unknown, f"tests assert codes missing from the catalogue: {unknown}"


def test_codes_are_stable_kebab_case_with_a_real_status_and_requirement():
    for entry in CATALOGUE.values():
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", entry.code), entry.code
        assert 400 <= entry.status <= 599, entry.code
        assert re.fullmatch(r"PROTO-[0-9]+\.[0-9]+-[0-9]+", entry.requirement), entry.code


def test_every_code_is_in_the_spec_table_with_the_same_status_title_and_requirement():
    rows = {}
    for line in PROTOCOL_MD.read_text("utf-8").splitlines():
        cells = [cell.strip().strip("`") for cell in line.strip().strip("|").split("|")]
        if len(cells) >= 4 and cells[0] in CATALOGUE:
            rows[cells[0]] = cells[1:4]
    for entry in CATALOGUE.values():
        assert entry.code in rows, f"{entry.code} is missing from the catalogue table in docs/protocol.md"
        assert rows[entry.code] == [str(entry.status), entry.title, entry.requirement], entry.code


def test_every_requirement_the_catalogue_cites_is_defined_in_the_spec():
    text = PROTOCOL_MD.read_text("utf-8")
    for entry in CATALOGUE.values():
        assert f"[{entry.requirement}]" in text, f"{entry.requirement} ({entry.code}) is not defined in docs/protocol.md"


def test_a_problem_never_carries_input_values():
    problem = ProtocolError("schema-violation", where="/body/person").problem(instance="/v1/messages")
    assert problem == {
        "type": PROBLEM_TYPE_PREFIX + "schema-violation",
        "title": "The message does not match its schema",
        "status": 422,
        "detail": "The message does not match its schema",
        "code": "schema-violation",
        "requirement": "PROTO-5.1-1",
        "where": "/body/person",
        "instance": "/v1/messages",
    }
