"""Playwright steps shared by the console's browser tests."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from tests.browser import screenshot_dir


def sign_in(page: Any, base_url: str, name: str, password: str, code: str) -> None:
    page.goto(f"{base_url}/console/login")
    page.fill("#name", name)
    page.fill("#password", password)
    page.fill("#totp", code)
    page.click("form[action='/console/login'] button[type=submit]")
    page.wait_for_url(f"{base_url}/console/dashboard")


def verdict(page: Any) -> str:
    """The entry page's verdict once its own script has finished: "verified" or "failed"."""
    page.wait_for_selector("#verdict:not([data-verdict='pending'])", timeout=30_000)
    return page.get_attribute("#verdict", "data-verdict")


def check(page: Any, name: str) -> str:
    """One check's outcome on the entry page ("true" or "false"): leaf, root, log, quorum, pins."""
    return page.get_attribute(f"#check-{name}", "data-ok")


def flip_a_proof_byte(page: Any) -> None:
    """Serve the entry's proof with one byte of its first hash flipped (the page's own fetch is intercepted)."""

    def handle(route: Any) -> None:
        answer = route.fetch()
        document = json.loads(answer.body())
        node = bytearray(base64.b64decode(document["proof"][0]))
        node[0] ^= 0x01
        document["proof"][0] = base64.b64encode(bytes(node)).decode("ascii")
        route.fulfill(response=answer, body=json.dumps(document))

    page.route("**/proof.json", handle)


def screenshot(page: Any, name: str) -> Path:
    path = screenshot_dir() / f"console-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 0
    return path


def switch_language(page: Any, language: str) -> None:
    page.select_option("#language", language)
    page.click("form[action='/console/language'] button[type=submit]")
    page.wait_for_selector(f"html[lang='{language}']")
