"""`gateway trust-list sign|verify`: the hub-signed trust list of docs/protocol.md §10.3."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gateway.cli.output import read_input, report_refusal, timestamp_argument
from gateway.keyfiles import read_private_key
from gateway.protocol.errors import ProtocolError
from gateway.protocol.timestamps import utc_now
from gateway.protocol.trust import load_trust_list, sign_trust_list, verify_signed_trust_list


def register(commands: argparse._SubParsersAction) -> None:
    trust = commands.add_parser("trust-list", help="sign and verify trust lists")
    verbs = trust.add_subparsers(dest="verb", required=True, metavar="VERB")

    sign = verbs.add_parser("sign", help="print a trust list as a gba-trust-list+jws signed by a hub receipt key")
    sign.add_argument("--key", required=True, type=Path, help="the hub's private receipt key (JWK file)")
    sign.add_argument("file", help="trust list JSON, or - for stdin")
    sign.set_defaults(run=_sign)

    verify = verbs.add_parser("verify", help="check a signed trust list against the list you already trust")
    verify.add_argument("--anchor", required=True, type=Path, help="the trust list JSON you already trust")
    verify.add_argument("--at", type=timestamp_argument,
                        help="check key validity at this RFC 3339 UTC time (default: now)")
    verify.add_argument("--problem-json", action="store_true", help="print refusals as RFC 9457 JSON")
    verify.add_argument("file", help="signed trust list (compact JWS), or - for stdin")
    verify.set_defaults(run=_verify)


def _sign(arguments: argparse.Namespace) -> int:
    key = read_private_key(arguments.key)
    try:
        trust = load_trust_list(read_input(arguments.file))
    except ProtocolError as error:
        return report_refusal(error, as_json=False)
    sys.stdout.write(sign_trust_list(trust, key).decode("ascii") + "\n")
    return 0


def _verify(arguments: argparse.Namespace) -> int:
    at = arguments.at or utc_now()
    try:
        anchor = load_trust_list(arguments.anchor.read_bytes())
        trust = verify_signed_trust_list(read_input(arguments.file).strip(b" \t\r\n"), anchor, at)
    except ProtocolError as error:
        return report_refusal(error, arguments.problem_json)
    print(json.dumps(trust.to_document(), ensure_ascii=False, indent=2))
    return 0
