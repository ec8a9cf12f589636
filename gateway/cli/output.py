"""How the CLI reports a refusal: one human line on stderr, or the RFC 9457 problem as JSON."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import datetime
from functools import wraps
from typing import Any

from gateway.protocol.errors import ProtocolError
from gateway.protocol.timestamps import parse_timestamp


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


def timestamp_argument(text: str) -> datetime:
    """An argparse type: a timestamp in the protocol's one form, else a usage error (exit 2)."""
    try:
        return parse_timestamp(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a UTC timestamp like 2026-11-28T12:00:00Z") from None


def reporting(prefix: str, *errors: type[BaseException]) -> Callable[[Callable[[Any], int]], Callable[[Any], int]]:
    """A decorator for a command's `run`: each of `errors` is reported as `gateway: PREFIX: ...` on stderr, exit status 1."""

    def decorate(run: Callable[[Any], int]) -> Callable[[Any], int]:
        @wraps(run)
        def wrapper(arguments: Any) -> int:
            try:
                return run(arguments)
            except errors as error:
                print(f"gateway: {prefix}: {error}", file=sys.stderr)
                return 1

        return wrapper

    return decorate
