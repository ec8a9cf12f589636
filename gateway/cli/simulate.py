"""`gateway simulate`: run one jurisdiction simulator against a hub (docs/simulator.md).

Prints `simulator: HK serving http://127.0.0.1:PORT/v1/deliveries (push)` once
listening, runs until SIGTERM or SIGINT, then stops cleanly and exits 0. A key file,
rules file or trust list that cannot be used is reported on stderr (exit 1).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import ssl
import sys
from pathlib import Path

from gateway.hub.transport import client_context, server_context
from gateway.keyfiles import read_private_key
from gateway.ledger import notes
from gateway.logs import configure_logging
from gateway.protocol.errors import ProtocolError
from gateway.protocol.trust import load_trust_list
from gateway.simulator import Rules, RulesError, Simulator, load_rules
from gateway.simulator.application import PROFILES
from gateway.simulator.simulator import MODES
from gateway.simulator.rules import check_for_jurisdiction


def register(commands: argparse._SubParsersAction) -> None:
    simulate = commands.add_parser("simulate", help="run a jurisdiction simulator", description=__doc__)
    simulate.add_argument("--jurisdiction", required=True, choices=sorted(PROFILES), help="the jurisdiction to simulate")
    simulate.add_argument("--hub", required=True, help="the hub's public base URL, e.g. http://127.0.0.1:8443")
    simulate.add_argument("--key", required=True, type=Path, help="the jurisdiction's private message key (JWK)")
    simulate.add_argument("--mode", required=True, choices=MODES, help="receive by push (serve /v1/deliveries) or pull (the hub's inbox)")
    simulate.add_argument("--port", type=int, default=0, help="listen port (0 picks a free one)")
    simulate.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    simulate.add_argument("--rules", type=Path, help="the rules TOML (default: accept and grant, answer verifications deterministically)")
    simulate.add_argument("--state-dir", type=Path, help="where the state lives (default: var/simulator/<JURISDICTION>)")
    simulate.add_argument("--trust-list", type=Path, help="the anchor trust list JSON (default: the shipped test list)")
    simulate.add_argument("--tls-certificate", type=Path, help="serve HTTPS with this PEM certificate chain")
    simulate.add_argument("--tls-private-key", type=Path, help="the PEM private key of --tls-certificate")
    simulate.add_argument("--tls-client-ca", type=Path,
                          help="require client certificates issued by this PEM CA on the push endpoint (mutual TLS; the hub presents urn:gba:hub)")
    simulate.add_argument("--hub-ca", type=Path, help="PEM CA bundle to verify an https hub")
    simulate.add_argument("--hub-client-certificate", type=Path,
                          help="present this PEM client certificate to the hub (mutual TLS; it names urn:gba:jurisdiction:<CODE>)")
    simulate.add_argument("--hub-client-key", type=Path, help="the PEM private key of --hub-client-certificate")
    simulate.add_argument("--witness-key", type=Path, help="also be a witness of the hub's ledger, cosigning with this Ed25519 witness key (JWK)")
    simulate.add_argument("--witness-name", help="the witness's name in its cosignatures (default: witness.<code>.gba.example)")
    simulate.add_argument(
        "--log", action="append", default=[], metavar="VKEY",
        help="a log this witness cosigns: the hub's checkpoint key as a C2SP vkey (its name is the log's origin); repeatable",
    )
    simulate.set_defaults(run=_simulate)


def _simulate(arguments: argparse.Namespace) -> int:
    if (arguments.tls_certificate is None) != (arguments.tls_private_key is None):
        print("gateway: simulate: --tls-certificate and --tls-private-key go together", file=sys.stderr)
        return 1
    if (arguments.hub_client_certificate is None) != (arguments.hub_client_key is None):
        print("gateway: simulate: --hub-client-certificate and --hub-client-key go together", file=sys.stderr)
        return 1
    if arguments.tls_client_ca is not None and arguments.tls_certificate is None:
        print("gateway: simulate: --tls-client-ca needs --tls-certificate (client certificates only exist on TLS)", file=sys.stderr)
        return 1
    try:
        key = read_private_key(arguments.key)
        rules = load_rules(arguments.rules) if arguments.rules else Rules()
        check_for_jurisdiction(rules, arguments.jurisdiction, arguments.rules)
        anchor = load_trust_list(arguments.trust_list.read_bytes()) if arguments.trust_list else None
        server_context = _server_context(arguments.tls_certificate, arguments.tls_private_key, arguments.tls_client_ca)
        hub_context = None
        if arguments.hub_ca or arguments.hub_client_certificate:
            hub_context = client_context(arguments.hub_ca, arguments.hub_client_certificate, arguments.hub_client_key)
        witness_key = read_private_key(arguments.witness_key) if arguments.witness_key else None
        logs = {log.name: log for log in map(notes.parse_vkey, arguments.log)}
        if witness_key is not None and not logs:
            raise ValueError("a witness needs at least one --log VKEY: the logs it cosigns and their keys")
        simulator = Simulator(
            jurisdiction=arguments.jurisdiction,
            key=key,
            hub_url=arguments.hub,
            mode=arguments.mode,
            state_dir=arguments.state_dir or Path("var/simulator") / arguments.jurisdiction,
            rules=rules,
            host=arguments.host,
            port=arguments.port,
            anchor=anchor,
            ssl_context=server_context,
            hub_ssl_context=hub_context,
            witness_key=witness_key,
            witness_name=arguments.witness_name,
            logs=logs,
        )
    except (RulesError, ValueError, OSError, ssl.SSLError) as error:
        print(f"gateway: simulate: {error}", file=sys.stderr)
        return 1
    except ProtocolError as refusal:
        print(f"gateway: simulate: {arguments.trust_list}: {refusal}", file=sys.stderr)
        return 1
    configure_logging()
    return asyncio.run(_run(simulator))


def _server_context(certificate: Path | None, private_key: Path | None, client_ca: Path | None) -> ssl.SSLContext | None:
    """The push endpoint's TLS; with `client_ca`, only holders of its certificates get through the handshake."""
    if certificate is None or private_key is None:
        return None
    context = server_context(certificate, private_key, client_ca)
    if client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
    return context


async def _run(simulator: Simulator) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signal_number, stop.set)
    await simulator.start()
    try:
        print(f"simulator: {simulator.jurisdiction} serving {simulator.endpoint_url} ({simulator.mode})", flush=True)
        if simulator.is_witness:
            print(f"simulator: witness {simulator.witness_name} at {simulator.witness_url}, key {simulator.witness_vkey()}", flush=True)
        await stop.wait()
    finally:
        await simulator.stop()
    return 0
