"""Run the `gateway` command in-process and read its verdict, as a user of the CLI would.

`assert_refused(result, code)` is how a test asserts a catalogue code at a public
interface; tests/test_catalogue.py checks that every code has such a test.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import sys
from dataclasses import dataclass
from typing import Any

from gateway.cli import main
from gateway.protocol.errors import CATALOGUE

_REFUSAL = re.compile(r"^gateway: refused: ([a-z0-9-]+) \((PROTO-[0-9.]+-[0-9]+)\)", re.MULTILINE)


@dataclass(frozen=True)
class CliResult:
    status: int
    stdout: str
    stderr: str

    @property
    def code(self) -> str | None:
        """The catalogue code of a refusal reported on stderr, if any."""
        match = _REFUSAL.search(self.stderr)
        return match.group(1) if match else None


def run_cli(*arguments: str, stdin: bytes = b"") -> CliResult:
    """`gateway ARGUMENTS...` with `stdin`, capturing its exit status and output."""
    out, err = io.StringIO(), io.StringIO()
    real_stdin = sys.stdin
    sys.stdin = io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8")
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                status = main(list(arguments))
            except SystemExit as exit_:
                status = int(exit_.code or 0)
    finally:
        sys.stdin = real_stdin
    return CliResult(status, out.getvalue(), err.getvalue())


def assert_refused(result: Any, code: str) -> None:
    """The public interface refused with exactly catalogue code `code`.

    For the CLI (a `CliResult`): exit status 1 and the code on stderr. For HTTP (an
    answer with `headers`): the catalogue's status and an RFC 9457 problem naming the code.
    """
    if hasattr(result, "headers"):
        assert result.status == CATALOGUE[code].status, f"expected {code} ({CATALOGUE[code].status}), got {result.status}: {result.body[:300]!r}"
        assert result.headers.get("content-type", "").startswith("application/problem+json"), result.headers
        problem = json.loads(result.body)
        assert problem["code"] == code and problem["type"].endswith(":" + code), problem
        return
    assert result.status == 1, f"expected a refusal with {code}, got exit {result.status}: {result.stderr}"
    assert result.code == code, f"expected {code}, got {result.code}: {result.stderr}"
