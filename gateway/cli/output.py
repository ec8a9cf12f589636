"""How the CLI reports a refusal: one human line on stderr, or the RFC 9457 problem as JSON."""

from __future__ import annotations

import json
import sys

from gateway.protocol.errors import ProtocolError


def report_refusal(error: ProtocolError, as_json: bool) -> int:
    """Print `error` to stderr and return the exit status for a refusal (1)."""
    if as_json:
        print(json.dumps(error.problem(), ensure_ascii=False), file=sys.stderr)
    else:
        where = f" at {error.where}" if error.where else ""
        print(f"gateway: refused: {error.code} ({error.entry.requirement}){where}: {error.detail}", file=sys.stderr)
    return 1


def read_input(path: str) -> bytes:
    """The bytes of `path`, or of standard input for `-`."""
    if path == "-":
        return sys.stdin.buffer.read()
    with open(path, "rb") as handle:
        return handle.read()
