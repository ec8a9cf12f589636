"""The reports of a conformance run (docs/conformance.md): versioned JSON, JUnit XML and one self-contained HTML page.

The HTML page needs nothing but itself: no script, no stylesheet or font from elsewhere.
For each failure it shows Expected and Actual, the text of every requirement the case
checks (quoted from conformance/requirements.json, which is docs/protocol.md's), and
the wire evidence: each request and answer.
"""

from __future__ import annotations

import html
import json
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from gateway.conformance.requirements import requirements
from gateway.conformance.cases import Result
from gateway.conformance.target import Target

REPORT_FORMAT = "gba-conformance-report/v1"
VERDICTS = ("pass", "fail", "skip", "error")


def counts_of(results: list[Result]) -> dict[str, int]:
    return {verdict: sum(1 for r in results if r.verdict == verdict) for verdict in VERDICTS}


def write_reports(folder: Path, target: Target, role: str, about: dict[str, Any], results: list[Result]) -> dict[str, Path]:
    """conformance.json, junit.xml and report.html in `folder`; their paths by kind."""
    folder.mkdir(parents=True, exist_ok=True)
    report = {"format": REPORT_FORMAT, "role": role, "target": target.url, "as": target.jurisdiction, "about": about,
              "finished": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "counts": counts_of(results),
              "results": [asdict(result) for result in results]}
    paths = {"json": folder / "conformance.json", "junit": folder / "junit.xml", "html": folder / "report.html"}
    paths["json"].write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", "utf-8")
    junit(results, role).write(paths["junit"], encoding="utf-8", xml_declaration=True)
    paths["html"].write_text(html_report(report), "utf-8")
    return paths


def junit(results: list[Result], role: str) -> ElementTree.ElementTree:
    counts = counts_of(results)
    suite = ElementTree.Element("testsuite", name=f"gba-conformance-{role}", tests=str(len(results)),
                                failures=str(counts["fail"]), errors=str(counts["error"]), skipped=str(counts["skip"]))
    for result in results:
        case = ElementTree.SubElement(suite, "testcase", classname=role, name=f"{result.case} {result.title}", time=f"{result.seconds:.3f}")
        if result.verdict == "fail":
            ElementTree.SubElement(case, "failure", message=result.reason).text = json.dumps(result.evidence, ensure_ascii=False)[:8000]
        elif result.verdict == "error":
            ElementTree.SubElement(case, "error", message=result.reason)
        elif result.verdict == "skip":
            ElementTree.SubElement(case, "skipped", message=result.reason)
    return ElementTree.ElementTree(suite)


_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em;color:#1b1b1b;max-width:72em}
h1{font-size:1.4em}table.summary td{padding:.2em .8em}
.case{border:1px solid #ccc;border-radius:4px;margin:1em 0;padding:.5em 1em}
.case.fail,.case.error{border-left:6px solid #b00020}.case.pass{border-left:6px solid #2e7d32}.case.skip{border-left:6px solid #999}
.verdict{font-weight:bold;text-transform:uppercase}.fail .verdict,.error .verdict{color:#b00020}.pass .verdict{color:#2e7d32}
dl.compare{display:grid;grid-template-columns:8em 1fr;gap:.2em 1em}dt{font-weight:bold}
blockquote{margin:.4em 0;padding:.3em .8em;border-left:3px solid #88a;background:#f4f4fa}
pre{white-space:pre-wrap;word-break:break-all;background:#f7f7f7;padding:.5em;font-size:12px;max-height:24em;overflow:auto}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _requirement_quotes(ids: list[str]) -> str:
    known = requirements()
    parts = []
    for requirement in ids:
        entry = known.get(requirement)
        text = entry.text if entry else "(not in conformance/requirements.json)"
        parts.append(f'<blockquote class="requirement" id="{_e(requirement)}"><b>[{_e(requirement)}]</b> {_e(text)}</blockquote>')
    return "".join(parts)


def _evidence(evidence: list[dict[str, Any]]) -> str:
    parts = []
    for number, exchange in enumerate(evidence, 1):
        request, response = exchange.get("request", {}), exchange.get("response", {})
        headers = "".join(f"{_e(k)}: {_e(v)}\n" for k, v in request.get("headers", {}).items())
        parts.append(
            f'<div class="exchange"><h4>Request {number}</h4><pre class="request">{_e(request.get("method", ""))} {_e(request.get("path", ""))}\n'
            f'{headers}\n{_e(request.get("body", ""))}</pre><p>{_e(request.get("bytes", ""))} bytes, SHA-256 {_e(request.get("sha256", ""))}</p>'
            f'<h4>Response {number}</h4><pre class="response">{_e(response.get("status", ""))} {_e(response.get("content_type", ""))}\n\n'
            f'{_e(response.get("body", ""))}</pre></div>'
        )
    return "".join(parts)


def _case(result: dict[str, Any]) -> str:
    verdict = result["verdict"]
    details = ""
    if verdict in ("fail", "error"):
        details = (f'<dl class="compare"><dt>Expected</dt><dd class="expected">{_e(json.dumps(result["expected"], ensure_ascii=False))}</dd>'
                   f'<dt>Actual</dt><dd class="actual">{_e(json.dumps(result["actual"], ensure_ascii=False))}</dd>'
                   f'<dt>Why</dt><dd>{_e(result["reason"])}</dd></dl>'
                   f'<h3>Requirements</h3>{_requirement_quotes(result["requirements"])}'
                   f'<h3>Wire evidence</h3>{_evidence(result["evidence"])}')
    elif verdict == "skip":
        details = f'<p>Skipped: {_e(result["reason"])}</p>'
    return (f'<section class="case {verdict}" id="case-{_e(result["case"])}"><h2><span class="verdict">{verdict}</span> '
            f'{_e(result["case"])} — {_e(result["title"])}</h2><p>Requirements: {_e(", ".join(result["requirements"]))}</p>{details}</section>')


def html_report(report: dict[str, Any]) -> str:
    """One self-contained page: summary, then the failures first, then every other case."""
    results = report["results"]
    ordered = [r for r in results if r["verdict"] in ("fail", "error")] + [r for r in results if r["verdict"] not in ("fail", "error")]
    counts = report["counts"]
    summary = "".join(f"<tr><td>{_e(verdict)}</td><td>{counts[verdict]}</td></tr>" for verdict in VERDICTS)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>GBA conformance report: {_e(report['role'])} {_e(report['target'])}</title><style>{_STYLE}</style></head><body>"
        f"<h1>GBA Case Gateway conformance report</h1><p>Role under test: <b>{_e(report['role'])}</b> at {_e(report['target'])}; "
        f"the suite spoke as {_e(report['as'])}; finished {_e(report['finished'])}; format {_e(report['format'])}.</p>"
        f'<table class="summary">{summary}</table>'
        + "".join(_case(result) for result in ordered)
        + "</body></html>\n"
    )
