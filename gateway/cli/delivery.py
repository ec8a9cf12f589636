"""`gateway delivery verify`: a receiver's check of one pushed or pulled delivery (docs/protocol.md §9.2, §9.3).

For integrators building a receiver: it runs the checks a receiver must run — the
hub's attestation, that it names these message bytes and this local view, and the
message itself end to end — and prints the message payload, or the refusal.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from gateway.cli.output import read_input, report_refusal
from gateway.protocol.errors import ProtocolError
from gateway.protocol.schema import load_message_schemas
from gateway.protocol.statements import parse_delivery, verify_delivery
from gateway.protocol.trust import load_trust_list


def register(commands: argparse._SubParsersAction) -> None:
    delivery = commands.add_parser("delivery", help="check deliveries as a receiver does")
    verbs = delivery.add_subparsers(dest="verb", required=True, metavar="VERB")
    verify = verbs.add_parser("verify", help="verify a delivery {message, attestation, local_view}", description=__doc__)
    verify.add_argument("--trust", required=True, type=Path, help="trust list JSON (docs/protocol.md §10.3)")
    verify.add_argument("--problem-json", action="store_true", help="print refusals as RFC 9457 JSON")
    verify.add_argument("file", help="the delivery JSON, or - for stdin")
    verify.set_defaults(run=_verify)


def _verify(arguments: argparse.Namespace) -> int:
    try:
        trust = load_trust_list(arguments.trust.read_bytes())
        verified = verify_delivery(parse_delivery(read_input(arguments.file)), trust, load_message_schemas())
    except ProtocolError as error:
        return report_refusal(error, arguments.problem_json)
    print(json.dumps(dict(verified.message.payload), ensure_ascii=False, indent=2))
    return 0
