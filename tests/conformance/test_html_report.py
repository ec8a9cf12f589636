"""The HTML report of a failing run is one self-contained page that a real browser shows with the evidence."""

from __future__ import annotations

from typing import Any

from gateway.conformance.requirements import requirements
from tests.browser import screenshot_dir
from tests.conformance.fixtures.broken import AcceptsAlgNone
from tests.conformance.fixtures.proxy import proxy
from tests.conformance.suite import in_thread, routes_refusing_the_suites_route, run_suite
from tests.hub.harness import running_hub


def _failing_run(database_url: str, folder: Any) -> Any:
    with running_hub(database_url, routes=routes_refusing_the_suites_route()) as hub, proxy(hub.base_url, AcceptsAlgNone()) as broken:
        result, _ = run_suite(broken, folder, "--case", "hub-ingress-004", "--case", "hub-ingress-001")
    return result


def test_the_report_of_a_failing_run_shows_expected_actual_requirement_and_wire_evidence(database_url, tmp_path, browser):
    result = in_thread(_failing_run, database_url, tmp_path)
    assert result.status == 1, result.stdout
    html = (tmp_path / "report.html").read_text("utf-8")
    assert not [tag for tag in ("<script", "<link", "<img", "<iframe", "@import", "url(") if tag in html], "a self-contained page"

    page = browser.new_page()
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    try:
        page.goto((tmp_path / "report.html").as_uri())
        failure = page.locator("#case-hub-ingress-004")
        assert failure.locator(".verdict").inner_text().lower() == "fail"
        assert '"code": "alg-refused"' in failure.locator(".expected").inner_text()
        assert '"status": 202' in failure.locator(".actual").inner_text()
        quoted = failure.locator("blockquote.requirement").first.inner_text()
        assert quoted.startswith("[PROTO-3.2-1]") and requirements()["PROTO-3.2-1"].text[:60] in quoted
        request_text = failure.locator("pre.request").first.inner_text()
        assert request_text.startswith("POST /v1/messages") and "Content-Type: application/jose" in request_text
        assert failure.locator("pre.response").first.inner_text().startswith("202")
        assert page.locator("#case-hub-ingress-001 .verdict").inner_text().lower() == "pass"
        failure.screenshot(path=str(screenshot_dir() / "conformance-report-failure.png"))
    finally:
        page.close()
    assert requested == [(tmp_path / "report.html").as_uri()], f"the page fetched more than itself: {requested}"
