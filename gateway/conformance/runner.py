"""The conformance runner for the hub role (docs/conformance.md): preflight, cases as data, verdicts, reports.

Cases live in `conformance/cases/*.json` and cite the requirement ids of docs/protocol.md.
The runner crafts each case's messages itself (gateway/conformance/crafting.py), sends them
over HTTP, and compares the answer with the case's expectation down to the catalogue
code. A configuration problem found by the preflight (target unreachable, not a test
system, clock skew) is reported as such, never as failed cases.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from fnmatch import fnmatch
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import aiohttp

from gateway.conformance.crafting import NotApplicable, SigningKey, craft
from gateway.contract import contract_dir

REPORT_FORMAT = "gba-conformance-report/v1"
MAX_SKEW_SECONDS = 60


class PreflightError(Exception):
    """The target cannot be tested as configured: not a failure of the target, a fault of the set-up."""


@dataclass(frozen=True)
class Case:
    id: str
    title: str
    requirements: tuple[str, ...]
    level: str
    tags: tuple[str, ...]
    template: str
    mutation: str
    expect: dict[str, Any]
    splice: str | None = None


@dataclass
class Result:
    case: str
    title: str
    requirements: list[str]
    verdict: str  # pass, fail, skip, error
    expected: dict[str, Any]
    actual: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    evidence: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


def load_cases(role: str = "hub") -> list[Case]:
    cases = []
    for path in sorted((contract_dir("conformance") / "cases").glob("*.json")):
        document = json.loads(path.read_text("utf-8"))
        if document.get("role") != role:
            continue
        for item in document["cases"]:
            cases.append(Case(item["id"], item["title"], tuple(item["requirements"]), item["level"], tuple(item["tags"]),
                              item["template"], item["mutation"], dict(item["expect"]), item.get("splice")))
    return cases


def select(cases: list[Case], ids: list[str], pattern: str | None) -> list[Case]:
    """The cases named by `ids` (all when none) whose id, title or tags match `pattern` (fnmatch, case-insensitive)."""
    chosen = [case for case in cases if not ids or case.id in ids]
    if pattern:
        wanted = pattern.lower() if any(c in pattern for c in "*?[") else f"*{pattern.lower()}*"
        chosen = [case for case in chosen if any(fnmatch(text.lower(), wanted) for text in (case.id, case.title, *case.tags))]
    return chosen


@dataclass
class Target:
    url: str
    jurisdiction: str
    key: SigningKey
    allow_production: bool = False


async def preflight(session: aiohttp.ClientSession, target: Target) -> dict[str, Any]:
    """Reachable, a test system (unless allowed), clock within MAX_SKEW_SECONDS; what `/v1/about` said."""
    try:
        async with session.get(target.url + "/v1/about") as response:
            if response.status != 200:
                raise PreflightError(f"GET /v1/about answered {response.status}: is {target.url} a GBA hub?")
            about = await response.json(content_type=None)
            date = response.headers.get("Date")
    except (aiohttp.ClientError, OSError, TimeoutError) as error:
        raise PreflightError(f"cannot reach {target.url}: {type(error).__name__}: {error}") from None
    if about.get("mode") != "test" and not target.allow_production:
        raise PreflightError(f"{target.url} says it runs in mode {about.get('mode')!r}: the suite runs against test systems only "
                             "(--allow-production overrides)")
    if date:
        skew = abs((parsedate_to_datetime(date) - datetime.now(timezone.utc)).total_seconds())
        if skew > MAX_SKEW_SECONDS:
            raise PreflightError(f"the target's clock is {skew:.0f} s away from this machine's: freshness cases would be meaningless")
    return about


def _others() -> dict[str, SigningKey]:
    keys = contract_dir("keys") / "test"
    return {
        "revoked-key": SigningKey.load(keys / "test-hk-message-revoked.key.jwk"),
        "expired-key": SigningKey.load(keys / "test-mo-message-expired.key.jwk"),
    }


def _template(message_type: str) -> dict[str, Any]:
    return json.loads((contract_dir("schemas") / f"{message_type}.json").read_text("utf-8"))["examples"][0]


async def run_case(session: aiohttp.ClientSession, target: Target, case: Case) -> Result:
    started = time.monotonic()
    result = Result(case.id, case.title, list(case.requirements), "error", case.expect)
    receiver = "HK" if target.jurisdiction != "HK" else "CN-GD"
    try:
        crafted = craft(case.mutation, _template(case.template), target.key, _others(), target.jurisdiction, receiver,
                        datetime.now(timezone.utc), case.splice)
    except NotApplicable as reason:
        result.verdict, result.reason = "skip", str(reason)
        return result
    answer: dict[str, Any] = {}
    try:
        for body in crafted.bodies:
            async with session.post(target.url + "/v1/messages", data=body, headers={"Content-Type": "application/jose"}) as response:
                text = await response.text()
                answer = {"status": response.status, "content_type": response.content_type, "body": text[:2000]}
                result.evidence.append({
                    "request": {"method": "POST", "path": "/v1/messages", "content_type": "application/jose",
                                "bytes": len(body), "sha256": hashlib.sha256(body).hexdigest(), "body": body.decode("ascii", "replace")[:2000]},
                    "response": answer,
                })
    except (aiohttp.ClientError, OSError, TimeoutError) as error:
        result.reason = f"the request failed: {type(error).__name__}"
        return result
    result.actual = _actual(answer)
    result.verdict, result.reason = _judge(case.expect, result.actual)
    result.seconds = time.monotonic() - started
    return result


def _actual(answer: dict[str, Any]) -> dict[str, Any]:
    actual: dict[str, Any] = {"status": answer.get("status")}
    try:
        document = json.loads(answer.get("body") or "null")
    except ValueError:
        document = None
    if isinstance(document, dict):
        if "code" in document:
            actual["code"] = document["code"]
        if "replayed" in document:
            actual["replayed"] = document["replayed"]
    return actual


def _judge(expect: dict[str, Any], actual: dict[str, Any]) -> tuple[str, str]:
    wrong = [f"{name}: expected {value!r}, got {actual.get(name)!r}" for name, value in expect.items() if actual.get(name) != value]
    return ("fail", "; ".join(wrong)) if wrong else ("pass", "")


async def run(target: Target, cases: list[Case], progress: Any = None) -> tuple[dict[str, Any], list[Result]]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        about = await preflight(session, target)
        results = []
        for number, case in enumerate(cases, 1):
            result = await run_case(session, target, case)
            results.append(result)
            if progress is not None:
                progress(number, len(cases), result)
    return about, results


def write_reports(folder: Path, target: Target, about: dict[str, Any], results: list[Result]) -> tuple[Path, Path]:
    """The JSON report (versioned) and the JUnit XML report; their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    counts = {verdict: sum(1 for r in results if r.verdict == verdict) for verdict in ("pass", "fail", "skip", "error")}
    report = {"format": REPORT_FORMAT, "target": target.url, "as": target.jurisdiction, "about": about, "counts": counts,
              "results": [asdict(result) for result in results]}
    json_path = folder / "conformance.json"
    json_path.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", "utf-8")
    suite = ElementTree.Element("testsuite", name="gba-conformance-hub", tests=str(len(results)),
                                failures=str(counts["fail"]), errors=str(counts["error"]), skipped=str(counts["skip"]))
    for result in results:
        case = ElementTree.SubElement(suite, "testcase", classname="hub", name=f"{result.case} {result.title}", time=f"{result.seconds:.3f}")
        if result.verdict == "fail":
            ElementTree.SubElement(case, "failure", message=result.reason).text = json.dumps(result.evidence, ensure_ascii=False)[:4000]
        elif result.verdict == "error":
            ElementTree.SubElement(case, "error", message=result.reason)
        elif result.verdict == "skip":
            ElementTree.SubElement(case, "skipped", message=result.reason)
    junit_path = folder / "junit.xml"
    ElementTree.ElementTree(suite).write(junit_path, encoding="utf-8", xml_declaration=True)
    return json_path, junit_path
