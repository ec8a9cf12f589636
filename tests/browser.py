"""A real headless Chromium for the tests: Debian's /usr/bin/chromium driven by Playwright for Python.

No browser is downloaded (this machine's network is closed): Playwright launches the
system Chromium with the flags a root user on a closed network needs. Where no
Chromium or no Playwright is installed the browser tests skip and say why, except under
`CI=true`, where they fail (`.ci/run` installs Chromium with apt-get).

Loaded as a plugin from tests/conftest.py; tests ask for the `browser` fixture (one
Chromium per test module) and open their own pages (`browser.new_page()`), closing them.
Screenshots go to `screenshot_dir()`, which CI keeps as artifacts.
"""

from __future__ import annotations

import concurrent.futures
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from tests.conftest import unavailable_here

CHROMIUM = os.environ.get("GATEWAY_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run", "--disable-quic", "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[1] / "tests" / "artifacts" / "screenshots"


def in_thread(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """`function(*args, **kwargs)` in a worker thread: asyncio work (`asyncio.run`) while a module's browser
    holds the main thread's event loop."""
    with concurrent.futures.ThreadPoolExecutor(1) as worker:
        return worker.submit(function, *args, **kwargs).result()


def screenshot_dir() -> Path:
    """Where browser tests save their PNG screenshots (tests/artifacts/screenshots, ignored by git)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


def _unavailable(reason: str) -> NoReturn:
    unavailable_here(reason, "a browser (.ci/run installs Debian's chromium)")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless Chromium (Playwright `Browser`), shared by one module's browser tests.

    Per module, not per session: while Playwright's synchronous API is running it holds an
    event loop in the main thread, and `asyncio.run` in any later test would refuse to start.
    """
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        _unavailable(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("Playwright for Python is not installed (pip install -e '.[test]')")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()
