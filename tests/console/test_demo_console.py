"""The demo's console, end to end in a real Chromium: `gateway demo` as a separate process, its documented test
officer signing in with TOTP, the demo's referral found by case id, its timeline, an entry the page itself
verifies — and fails once the test serves a proof with one flipped byte. Screenshots in three languages."""

from __future__ import annotations

import queue
import re
import signal
import subprocess
import sys
import threading

import pyotp

from gateway.demo.console import TEST_OFFICER
from tests.console.pages import check, flip_a_proof_byte, screenshot, sign_in, switch_language, verdict
from tests.database import temporary_data_dir
from tests.privacy import leaks_in

HEADINGS = {"en": "Dashboard", "zh-Hant": "總覽", "zh-Hans": "总览"}
TIMELINE = {"en": "Case timeline", "zh-Hant": "個案時間線", "zh-Hans": "个案时间线"}
VERIFIED = {"en": "verified", "zh-Hant": "已驗證", "zh-Hans": "已验证"}


def _demo_output(process: subprocess.Popen) -> str:
    """The demo's stdout up to the line saying it keeps running (read by a thread: a pipe's buffer hides lines from select)."""
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for line in iter(process.stdout.readline, ""):
            lines.put(line)
        lines.put("")  # the end

    threading.Thread(target=read, daemon=True).start()
    seen = []
    while True:
        line = lines.get(timeout=180)
        assert line, "the demo ended early:\n" + "".join(seen)
        seen.append(line)
        if line.startswith("Running until Ctrl-C."):
            return "".join(seen)


def test_after_the_demo_an_officer_finds_the_referral_and_the_page_verifies_its_entry(browser):
    with temporary_data_dir() as data_dir:
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "demo", "--keep-running", "--data-dir", str(data_dir)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        try:
            output = _demo_output(process)
            assert "Done: every step ended as docs/protocol.md requires." in output, output
            hub = re.search(r"Hub at (http://127\.0\.0\.1:\d+)", output).group(1)
            case = re.search(r"case ([0-9a-f-]{36}): referral CN-GD -> HK", output).group(1)
            assert f"{hub}/console/ — test officer {TEST_OFFICER.name}" in output
            _officer_session(browser, hub, case)
        finally:
            process.send_signal(signal.SIGINT)
            process.wait(60)
            process.stdout.close()
        log = (data_dir / "demo.log").read_text("utf-8")
        assert "console_signed_in" in log and not leaks_in(log), "the console's log lines carry no personal data"


def _officer_session(browser, hub: str, case: str) -> None:
    page = browser.new_page()
    try:
        sign_in(page, hub, TEST_OFFICER.name, TEST_OFFICER.password, pyotp.TOTP(TEST_OFFICER.totp_secret).now())
        dashboard_url = page.url
        assert "Times in Asia/Hong_Kong" in page.inner_text("#who") and "HKT" in page.inner_text("#checkpoint")
        page.click("nav >> text=Search")
        page.fill("#case", case)
        page.click("#search-button")
        page.wait_for_selector("#messages")
        rows = page.locator("#messages tbody tr")
        assert rows.count() >= 3, "submit, accept and close of the referral"
        assert page.locator("#messages").inner_text().count(case) == rows.count()
        page.click(f"#messages a[href='/console/cases/{case}'] >> nth=0")
        page.wait_for_selector("#timeline")
        timeline_url = page.url
        kinds = page.locator("#timeline > li").evaluate_all("items => items.map(item => item.dataset.kind)")
        assert page.locator("#timeline time").first.inner_text().endswith(" HKT"), "times in the officer's zone"
        assert kinds[0] == "accepted" and {"accepted", "receipt-received", "delivered"} <= set(kinds), kinds
        page.click("#timeline > li >> nth=0 >> a")
        page.wait_for_selector("#verdict")
        entry_url = page.url
        assert verdict(page) == "verified"
        assert [check(page, name) for name in ("leaf", "root", "log", "quorum", "pins")] == ["true"] * 5
        assert page.locator("#key-rows tr").count() == 4, "the log key and three witness keys, each with its fingerprint"
        assert page.get_attribute("#bundle-link", "href").endswith("/bundle.json")

        for language in ("en", "zh-Hant", "zh-Hans"):
            page.goto(dashboard_url)
            if language != "en":
                switch_language(page, language)
            assert page.inner_text("h1") == HEADINGS[language]
            screenshot(page, f"dashboard-{language}")
            page.goto(timeline_url)
            assert page.inner_text("h1") == TIMELINE[language]
            screenshot(page, f"timeline-{language}")
            page.goto(entry_url)
            assert verdict(page) == "verified"
            assert page.inner_text("#verdict") == VERIFIED[language]
            screenshot(page, f"entry-{language}")

        switch_language(page, "en")
        flip_a_proof_byte(page)
        page.reload()
        assert verdict(page) == "failed"
        assert check(page, "root") == "false" and check(page, "leaf") == "true"
        screenshot(page, "entry-flipped-proof-byte")

        page.unroute("**/proof.json")
        page.goto(entry_url)
        page.fill("#reason", "Demo: checking what the referral carried")
        page.click("#view-payload")
        page.wait_for_selector("#viewed")
        assert '"type": "referral.submit"' in page.inner_text("#payload")
    finally:
        page.close()
