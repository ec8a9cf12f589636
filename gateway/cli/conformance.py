"""`gateway conformance run`: the conformance suite against a hub (docs/conformance.md).

Exit status: 0 every case executed passed (skips allowed); 1 a case failed or erred;
2 usage or preflight error (a set-up problem, not a failure of the target); 3 no case
was executed (a filter that matched nothing is an error, never a pass).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from gateway.conformance.crafting import SigningKey
from gateway.conformance.runner import PreflightError, Result, Target, load_cases, run, select, write_reports

PASSED, FAILED, USAGE, NOTHING = 0, 1, 2, 3


def register(commands: argparse._SubParsersAction) -> None:
    conformance = commands.add_parser("conformance", help="run the conformance suite against a hub", description=__doc__,
                                      formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = conformance.add_subparsers(dest="verb", required=True, metavar="VERB")
    runner = verbs.add_parser("run", help="run the cases against a target", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    runner.add_argument("--target", required=True, help="the hub's base URL, e.g. http://127.0.0.1:8443")
    runner.add_argument("--role", choices=("hub",), default="hub", help="the role under test (hub; endpoint comes later)")
    runner.add_argument("--as", dest="jurisdiction", required=True, help="the jurisdiction the suite speaks for, e.g. CN-GD")
    runner.add_argument("--key", required=True, type=Path, help="that jurisdiction's private message key (JWK)")
    runner.add_argument("--case", action="append", default=[], metavar="ID", help="run only this case (repeatable)")
    runner.add_argument("-k", dest="pattern", metavar="PATTERN", help="run only cases whose id, title or tag matches")
    runner.add_argument("--report-dir", type=Path, default=Path("conformance-report"), help="where the JSON and JUnit reports go")
    runner.add_argument("--allow-production", action="store_true", help="run against a target whose /v1/about says production")
    runner.set_defaults(run=_run)


def _run(arguments: argparse.Namespace) -> int:
    cases = select(load_cases(arguments.role), arguments.case, arguments.pattern)
    if not cases:
        print("gateway: conformance: no case matches the --case / -k filter: nothing was run (exit 3)", file=sys.stderr)
        return NOTHING
    try:
        key = SigningKey.load(arguments.key)
    except (OSError, ValueError, KeyError) as error:
        print(f"gateway: conformance: cannot read the key {arguments.key}: {error}", file=sys.stderr)
        return USAGE
    target = Target(arguments.target.rstrip("/"), arguments.jurisdiction, key, arguments.allow_production)

    def progress(number: int, total: int, result: Result) -> None:
        line = f"[{number}/{total}] {result.verdict.upper():5} {result.case} {result.title}"
        print(line + (f" -- {result.reason}" if result.reason else ""), flush=True)

    try:
        about, results = asyncio.run(run(target, cases, progress))
    except PreflightError as error:
        print(f"gateway: conformance: preflight: {error}", file=sys.stderr)
        return USAGE
    json_path, junit_path = write_reports(arguments.report_dir, target, about, results)
    executed = [r for r in results if r.verdict != "skip"]
    failed = [r for r in results if r.verdict in ("fail", "error")]
    print(f"{len(results) - len(failed) - (len(results) - len(executed))} passed, {len(failed)} failed, "
          f"{len(results) - len(executed)} skipped; reports: {json_path}, {junit_path}")
    if not executed:
        print("gateway: conformance: every selected case was skipped: nothing was executed (exit 3)", file=sys.stderr)
        return NOTHING
    return FAILED if failed else PASSED
