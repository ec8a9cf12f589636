"""The `gateway` command: one sub-command per subsystem (docs/operations.md).

Exit status: 0 done; 1 refused or failed, with the reason on stderr; 2 usage error.
"""

from __future__ import annotations

import argparse
import sys

from gateway import __version__
from gateway.cli import config, conformance, db, delivery, demo, keys, ledger, message, officers, outbox, payload_keys, retention, serve, simulate, subject, trust_list


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description="GBA Case Gateway")
    parser.add_argument("--version", action="version", version=f"gateway {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (keys, payload_keys, retention, subject, message, trust_list, delivery, config, db, ledger, outbox, serve, simulate, demo, conformance, officers):
        module.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    arguments = parser.parse_args(argv)
    try:
        return arguments.run(arguments)
    except BrokenPipeError:
        return 1
    except (OSError, ValueError) as error:
        print(f"gateway: error: {error}", file=sys.stderr)
        return 1
