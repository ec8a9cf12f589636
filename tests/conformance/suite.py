"""Running the conformance suite from tests, as a user of `gateway conformance run` would."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gateway.config import default_config
from gateway.conformance import published_keys
from gateway.conformance.cases import load_cases
from gateway.conformance.crafting import SigningKey
from gateway.conformance.witness import DEFAULT_ORIGIN, log_vkey
from gateway.contract import contract_dir
from gateway.demo.exchange import free_port
from tests.browser import in_thread
from tests.cli_runner import CliResult, run_cli
from tests.conformance.fixtures.simulator import simulator

KEYS = contract_dir("keys") / "test"
CN_GD_KEY = str(KEYS / "test-cn-gd-message-1.key.jwk")
REFUSED_ROUTE = "MO:referral.submit:referral"

KNOWN_HUB_DEFECTS: dict[str, str] = {}
"""Cases our own hub fails today, each with why. Strict: a listed case that passes fails the test, so the list
empties as soon as the hub is fixed."""


def cli(*arguments: str) -> CliResult:
    """`gateway ARGUMENTS...` (tests/cli_runner.py), in a worker thread."""
    return in_thread(run_cli, *arguments)


def routes_refusing_the_suites_route() -> tuple[Any, ...]:
    """The demonstration's routes without Guangdong's referrals to Macao, so that the route-refused case applies."""
    return tuple(route for route in default_config(Path("/nonexistent-unused")).routes
                 if not (route.sender == "CN-GD" and route.receiver == "MO" and "referral.*" in route.types))


def run_suite(target: str, report_dir: Path, *arguments: str, role: str = "hub") -> tuple[CliResult, dict[str, Any] | None]:
    """`gateway conformance run` against `target` as CN-GD; the CLI result and the JSON report (None when none was written)."""
    extra = ["--to", "HK"] if role == "endpoint" else ["--refused-route", REFUSED_ROUTE]
    result = cli("conformance", "run", "--role", role, "--target", target, "--as", "CN-GD", "--key", CN_GD_KEY,
                     "--report-dir", str(report_dir), *extra, *arguments)
    path = report_dir / "conformance.json"
    return result, (json.loads(path.read_text("utf-8")) if path.exists() else None)


def verdicts(report: dict[str, Any], verdict: str) -> set[str]:
    return {result["case"] for result in report["results"] if result["verdict"] == verdict}


PRODUCTION_ONLY = {"endpoint-trust-012"}
"""Endpoint cases for an endpoint configured for production (--endpoint-mode production): skipped against a test one."""

PROFILE_CASES = {case.id for case in load_cases("hub") if case.profile}
"""Hub cases that need a set-up our default test hub lacks (mutual TLS, a known burst, a known body deadline, pushes
to the suite): skipped against it, run by test_transport.py and test_push_answers.py against hubs set up that way."""


@contextlib.contextmanager
def endpoint_with_the_suite_as_hub(folder: Path, anchor: Path | None = None) -> Iterator[tuple[str, tuple[str, ...]]]:
    """A push-mode HK simulator whose hub is the suite (--serve-hub) and which witnesses the suite's log: its push URL,
    and the arguments that serve its hub and name its witness."""
    port = free_port()
    log = log_vkey(DEFAULT_ORIGIN, SigningKey.load(published_keys.test_key_path("test-hub-checkpoint-1")))
    with simulator(folder, hub=f"http://127.0.0.1:{port}", anchor=anchor, witnessed_log=log) as endpoint:
        parts = urlsplit(endpoint)
        yield endpoint, ("--serve-hub", f"127.0.0.1:{port}", "--witness", f"{parts.scheme}://{parts.netloc}/witness")
