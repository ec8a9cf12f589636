"""`gateway message sign|verify`: the protocol's signing and verification from the shell (§3-§6)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gateway.cli.output import read_input, report_refusal, timestamp_argument
from gateway.keyfiles import read_private_key
from gateway.protocol import strict_json
from gateway.protocol.errors import ProtocolError
from gateway.protocol.message import sign_message, verify_message
from gateway.protocol.schema import load_message_schemas
from gateway.protocol.timestamps import utc_now
from gateway.protocol.trust import load_trust_list


def register(commands: argparse._SubParsersAction) -> None:
    message = commands.add_parser("message", help="sign and verify protocol messages")
    verbs = message.add_subparsers(dest="verb", required=True, metavar="VERB")

    sign = verbs.add_parser("sign", help="print the compact JWS of a JSON payload")
    sign.add_argument("--key", required=True, type=Path, help="private JWK file")
    sign.add_argument("--kid", required=True, help="key id (must equal the key file's kid)")
    sign.add_argument("file", help="payload JSON file, or - for stdin")
    sign.set_defaults(run=_sign)

    verify = verbs.add_parser(
        "verify",
        help="verify a compact JWS; print its payload or the refusal",
        description="Exit 0 and print the payload if the message is valid; exit 1 with the problem "
        "(code, requirement, reason) on stderr if it is refused. Surrounding whitespace is ignored.",
    )
    verify.add_argument("--trust", required=True, type=Path, help="trust list JSON (docs/protocol.md §10.3)")
    verify.add_argument("--at", type=timestamp_argument,
                        help="check key validity at this RFC 3339 UTC time (default: now)")
    verify.add_argument("--problem-json", action="store_true", help="print refusals as RFC 9457 JSON")
    verify.add_argument("file", help="compact JWS file, or - for stdin")
    verify.set_defaults(run=_verify)


def _sign(arguments: argparse.Namespace) -> int:
    key = read_private_key(arguments.key)
    if key.kid != arguments.kid:
        raise ValueError(f"--kid {arguments.kid!r} is not the kid of {arguments.key}")
    try:
        payload = strict_json.loads(read_input(arguments.file))
    except ProtocolError as error:
        return report_refusal(error, as_json=False)
    if not isinstance(payload, dict):
        raise ValueError("the payload must be a JSON object")
    sys.stdout.write(sign_message(payload, key).decode("ascii") + "\n")
    return 0


def _verify(arguments: argparse.Namespace) -> int:
    at = arguments.at or utc_now()
    try:
        trust = load_trust_list(arguments.trust.read_bytes())
    except ProtocolError as error:
        print(f"gateway: error: the trust list {arguments.trust} is not usable:", file=sys.stderr)
        return report_refusal(error, arguments.problem_json)
    compact = read_input(arguments.file).strip(b" \t\r\n")
    try:
        message = verify_message(compact, trust, load_message_schemas(), at)
    except ProtocolError as error:
        return report_refusal(error, arguments.problem_json)
    print(json.dumps(dict(message.payload), ensure_ascii=False, indent=2))
    return 0
