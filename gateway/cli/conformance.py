"""`gateway conformance`: the conformance suite against a hub or an endpoint, and its offline vectors (docs/conformance.md).

`run` exit status: 0 every case executed passed (skips allowed); 1 a case failed or
erred; 2 usage or preflight error (a set-up problem, not a failure of the target); 3 no
case was executed (a filter that matched nothing, or every case skipped, is an error,
never a pass). `vectors` writes the offline vectors and the test keys (exit 0).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from gateway.conformance.crafting import SigningKey, read_trust_list
from gateway.conformance.reports import write_reports
from gateway.conformance.cases import Result, load_cases, select
from gateway.conformance.runner import run
from gateway.conformance.target import PreflightError, Target, load_trust_document, ssl_context
from gateway.conformance.witness import DEFAULT_ORIGIN

PASSED, FAILED, USAGE, NOTHING = 0, 1, 2, 3


def register(commands: argparse._SubParsersAction) -> None:
    conformance = commands.add_parser("conformance", help="run the conformance suite, or write its offline vectors",
                                      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = conformance.add_subparsers(dest="verb", required=True, metavar="VERB")
    runner = verbs.add_parser("run", help="run the cases against a hub or an endpoint", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    runner.add_argument("--target", required=True,
                        help="hub: its base URL (http://127.0.0.1:8443); endpoint: its push URL (http://127.0.0.1:9101/v1/deliveries)")
    runner.add_argument("--role", choices=("hub", "endpoint"), default="hub", help="the role under test (default hub)")
    runner.add_argument("--as", dest="jurisdiction", required=True,
                        help="the jurisdiction whose messages the suite sends (hub role: yours; endpoint role: the sender it plays)")
    runner.add_argument("--key", required=True, type=Path, help="that jurisdiction's private message key (JWK)")
    runner.add_argument("--to", dest="peer", help="the counterpart: hub role, the receiver of the suite's messages "
                        "(default HK, or CN-GD when --as HK); endpoint role, the endpoint's own jurisdiction (required)")
    runner.add_argument("--hub-key", type=Path, help="endpoint role: the hub receipt key the suite signs attestations with "
                        "(default the published test key keys/test/test-hub-receipt-1.key.jwk)")
    runner.add_argument("--trust", type=Path, help="the trust list (JSON) the suite verifies signatures with "
                        "(default the published test list keys/test/trust-list.json)")
    runner.add_argument("--tls-ca", type=Path, help="CA bundle to verify an https target")
    runner.add_argument("--tls-cert", type=Path, help="client certificate (PEM) for a target that asks for one")
    runner.add_argument("--tls-key", type=Path, help="the client certificate's private key (PEM)")
    runner.add_argument("--refused-route", metavar="TO:TYPE:PURPOSE",
                        help="hub role: a route the hub's policy refuses for --as (e.g. MO:referral.submit:referral); "
                             "without it the route-refused case is skipped")
    runner.add_argument("--rate-burst", type=int, metavar="N",
                        help="hub role: the burst of the hub's per-jurisdiction request budget, on a test hub whose refill is too "
                             "slow to matter; the rate-limit case sends N+1 messages. Without it that case is skipped")
    runner.add_argument("--body-deadline", type=float, metavar="SECONDS",
                        help="hub role: how long the hub waits for a request body; the slow-body case sends half a body and "
                             "waits that long plus 15 s. Without it that case is skipped")
    runner.add_argument("--receive-at", metavar="HOST:PORT",
                        help="hub role: listen here as --to's push endpoint (the hub must push --to's deliveries to "
                             "http://HOST:PORT/v1/deliveries); without it the push-answer cases are skipped")
    runner.add_argument("--push-wait", type=float, default=60.0, metavar="SECONDS",
                        help="hub role: how long to wait for the hub to push, or push again, a message (default 60)")
    runner.add_argument("--serve-hub", metavar="HOST:PORT",
                        help="endpoint role: serve GET /v1/trust-list here as the endpoint's hub (configure the endpoint's hub URL "
                             "as http://HOST:PORT); without it the trust-list cases are skipped")
    runner.add_argument("--endpoint-mode", choices=("test", "production"), default="test",
                        help="endpoint role: the mode the endpoint is configured for; production serves it production lists "
                             "and runs the test-mode-list case (default test)")
    runner.add_argument("--trust-fetch-wait", type=float, default=30.0, metavar="SECONDS",
                        help="endpoint role: how long to wait for the endpoint to fetch a trust list the suite serves (default 30)")
    runner.add_argument("--witness", metavar="URL",
                        help="endpoint role: the URL prefix of the witness of --to's jurisdiction (C2SP tlog-witness; the suite "
                             "POSTs URL/add-checkpoint); without it the witness cases are skipped")
    runner.add_argument("--log-origin", default=DEFAULT_ORIGIN, metavar="ORIGIN",
                        help=f"endpoint role: the origin of the suite's own log for the witness cases (default {DEFAULT_ORIGIN}); "
                             "the witness must list it with the published test checkpoint key (docs/conformance.md)")
    runner.add_argument("--case", action="append", default=[], metavar="ID", help="run only this case (repeatable)")
    runner.add_argument("-k", dest="pattern", metavar="PATTERN", help="run only cases whose id, title or tag matches")
    runner.add_argument("--report-dir", type=Path, default=Path("conformance-report"),
                        help="where conformance.json, junit.xml and report.html go (default ./conformance-report)")
    runner.add_argument("--allow-production", action="store_true", help="run against a hub whose /v1/about says production")
    runner.set_defaults(run=_run)
    vectors = verbs.add_parser("vectors", help="write the offline vectors and the test keys to a folder")
    vectors.add_argument("--out", required=True, type=Path, help="the folder to write (created)")
    vectors.set_defaults(run=_vectors)


def _fail(message: str, status: int) -> int:
    print(f"gateway: conformance: {message}", file=sys.stderr)
    return status


def _run(arguments: argparse.Namespace) -> int:
    cases = select(load_cases(arguments.role), arguments.case, arguments.pattern)
    if not cases:
        return _fail("no case matches the --case / -k filter: nothing was run (exit 3)", NOTHING)
    if arguments.role == "endpoint" and not arguments.peer:
        return _fail("the endpoint role needs --to: the endpoint's own jurisdiction", USAGE)
    if arguments.tls_key and not arguments.tls_cert:
        return _fail("--tls-key needs --tls-cert", USAGE)
    try:
        key = SigningKey.load(arguments.key)
        hub_key = SigningKey.load(arguments.hub_key) if arguments.hub_key else None
        tls = ssl_context(arguments.tls_ca, arguments.tls_cert, arguments.tls_key)
        trust_document = load_trust_document(arguments.trust)
        trust = read_trust_list(trust_document)
    except PreflightError as error:
        return _fail(str(error), USAGE)
    except (OSError, ValueError, KeyError) as error:
        return _fail(f"cannot read a key or certificate: {type(error).__name__}: {error}", USAGE)
    refused_route = tuple(arguments.refused_route.split(":")) if arguments.refused_route else None
    if refused_route is not None and len(refused_route) != 3:
        return _fail("--refused-route is TO:TYPE:PURPOSE, e.g. MO:referral.submit:referral", USAGE)
    addresses = {}
    for option in ("serve_hub", "receive_at"):
        value = getattr(arguments, option)
        if value:
            host, _, port = value.rpartition(":")
            if not host or not port.isdigit():
                return _fail(f"--{option.replace('_', '-')} is HOST:PORT, e.g. 127.0.0.1:9200", USAGE)
            addresses[option] = (host, int(port))
    target = Target(arguments.target.rstrip("/"), arguments.jurisdiction, key, trust, arguments.allow_production, tls,
                    arguments.peer or "", hub_key, refused_route, client_certificate=arguments.tls_cert is not None,
                    trust_document=trust_document, serve_hub=addresses.get("serve_hub"), endpoint_mode=arguments.endpoint_mode,
                    trust_fetch_seconds=arguments.trust_fetch_wait, tls_ca=arguments.tls_ca, rate_burst=arguments.rate_burst,
                    body_deadline=arguments.body_deadline, witness_url=arguments.witness or "", log_origin=arguments.log_origin,
                    receive_at=addresses.get("receive_at"), push_wait_seconds=arguments.push_wait)

    def progress(number: int, total: int, result: Result) -> None:
        line = f"[{number}/{total}] {result.verdict.upper():5} {result.case} {result.title}"
        print(line + (f" -- {result.reason}" if result.reason else ""), flush=True)

    try:
        about, results = asyncio.run(run(target, cases, progress))
    except PreflightError as error:
        return _fail(f"preflight: {error}", USAGE)
    paths = write_reports(arguments.report_dir, target, arguments.role, about, results)
    verdicts = [r.verdict for r in results]
    print(f"{verdicts.count('pass')} passed, {verdicts.count('fail')} failed, {verdicts.count('error')} erred, "
          f"{verdicts.count('skip')} skipped; reports: {paths['json']}, {paths['junit']}, {paths['html']}")
    if verdicts.count("skip") == len(verdicts):
        return _fail("every selected case was skipped: nothing was executed (exit 3)", NOTHING)
    return FAILED if "fail" in verdicts or "error" in verdicts else PASSED


def _vectors(arguments: argparse.Namespace) -> int:
    from gateway.conformance.vectors import write_vectors

    index = write_vectors(arguments.out)
    print(f"{len(index['vectors'])} vectors and the test keys written to {arguments.out}")
    return PASSED
