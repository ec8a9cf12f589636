"""The console under test: a hub (alone, or with the demo's exchange and story) on a real socket, officers
enrolled through `gateway officers`, and a small cookie-keeping HTTP client for tests that need no browser."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pyotp

from gateway.demo.exchange import Exchange, running_exchange
from gateway.demo.story import Story, tell
from gateway.protocol.timestamps import utc_now
from tests.browser import in_thread
from tests.cli_runner import CliResult, run_cli
from tests.hub import harness


def query(database_url: str, sql: str, *args: Any) -> list[Any]:
    """tests/hub/harness.py's `query`, in a worker thread."""
    return in_thread(harness.query, database_url, sql, *args)


def cli(*arguments: str, stdin: bytes = b"") -> CliResult:
    """`gateway ARGUMENTS...` in-process (tests/cli_runner.py), in a worker thread."""
    return in_thread(run_cli, *arguments, stdin=stdin)

MIXED = {"CN-GD": "pull", "HK": "push", "MO": "pull"}
PASSWORD = "correct horse battery staple"


@dataclass
class ConsoleSite:
    base_url: str
    exchange: Exchange | None = None
    story: Story | None = None
    loop: asyncio.AbstractEventLoop | None = None

    def call(self, coroutine: Any) -> Any:
        """Run `coroutine` on the hub's event loop and return its result."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(60)

    def on_loop(self, function: Callable[[], Any]) -> Any:
        """`function()` run in the hub's thread (the simulators' state belongs to it)."""

        async def run() -> Any:
            return function()

        return self.call(run())


@contextlib.contextmanager
def story_exchange(database_url: str, data_dir: Path, *, clock: Callable = utc_now, hub_changes: dict | None = None) -> Iterator[ConsoleSite]:
    """The demo's hub and simulators in a background loop, after the demo's story was told on them."""
    loop = asyncio.new_event_loop()
    started, state = threading.Event(), {}

    async def serve() -> None:
        async with running_exchange(database_url, data_dir, MIXED, clock=clock, hub_changes=hub_changes, poll_wait_seconds=2) as exchange:
            state["story"] = await tell(exchange, clock)
            state["exchange"] = exchange
            state["stop"] = asyncio.Event()
            started.set()
            await state["stop"].wait()

    def run() -> None:
        try:
            loop.run_until_complete(serve())
        except BaseException as error:  # noqa: BLE001 - reported to the test
            state["error"] = error
            started.set()

    thread = threading.Thread(target=run, name="console-exchange", daemon=True)
    thread.start()
    assert started.wait(180), "the exchange did not start"
    if "error" in state:
        raise state["error"]
    assert state["story"].ok, [(step.label, step.happened) for step in state["story"].steps if not step.ok]
    try:
        yield ConsoleSite(state["exchange"].hub_url, state["exchange"], state["story"], loop)
    finally:
        loop.call_soon_threadsafe(state["stop"].set)
        thread.join(60)
        loop.close()


def enrol(database_url: str, name: str, role: str, *jurisdictions: str, payload_right: bool = False,
          site: ConsoleSite | None = None, time_zone: str = "UTC") -> str:
    """`gateway officers add` with PASSWORD on stdin, pinning the exchange's keys (or the default configuration's);
    returns the officer's TOTP secret as the command printed it."""
    arguments = ["officers", "add", name, "--role", role, "--database-url", database_url, "--password-stdin", "--time-zone", time_zone]
    for code in jurisdictions:
        arguments += ["--jurisdiction", code]
    if payload_right:
        arguments.append("--payload-right")
    if site is not None and site.exchange is not None:
        arguments += ["--log-key", site.exchange.log_key().vkey()]
        for key in site.exchange.witness_keys():
            arguments += ["--witness", key.vkey()]
        arguments += ["--quorum", str(site.exchange.settings.quorum)]
    result = cli(*arguments, stdin=(PASSWORD + "\n").encode())
    assert result.status == 0, result.stderr
    return re.search(r"^totp secret: ([A-Z2-7]+)$", result.stdout, re.MULTILINE).group(1)


def totp(secret: str, at: Any = None, steps_ahead: int = 0) -> str:
    """The officer's one-time code at `at` (now by default), `steps_ahead` 30-second steps later."""
    moment = at or utc_now()
    return pyotp.TOTP(secret).at(moment.timestamp() + 30 * steps_ahead)


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    text: str
    set_cookies: list[str] = field(default_factory=list)

    def cookie(self, name: str) -> str:
        """The Set-Cookie header that sets `name`."""
        return next(value for value in self.set_cookies if value.startswith(name + "="))


@dataclass
class Client:
    """An HTTP client with a cookie jar for one site, optionally from a given loopback source address."""

    base_url: str
    source: str | None = None
    cookies: dict[str, str] = field(default_factory=dict)
    tls: Any = None
    """For an https site: the client's `ssl.SSLContext`."""
    host: str | None = None
    """A Host header other than the URL's."""

    def request(self, method: str, path: str, form: dict[str, str] | None = None) -> Reply:
        parts = urlsplit(self.base_url)
        source = (self.source, 0) if self.source else None
        if parts.scheme == "https":
            connection: http.client.HTTPConnection = http.client.HTTPSConnection(
                parts.hostname, parts.port, timeout=60, source_address=source, context=self.tls
            )
        else:
            connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60, source_address=source)
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())} if self.cookies else {}
        if self.host:
            headers["Host"] = self.host
        body = None
        if form is not None:
            body = urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            set_cookies = [value for name, value in response.getheaders() if name.lower() == "set-cookie"]
            for value in set_cookies:
                cookie, _, attributes = value.partition(";")
                key, _, content = cookie.partition("=")
                if "max-age=0" in attributes.lower() or content in ('""', ""):
                    self.cookies.pop(key.strip(), None)
                else:
                    self.cookies[key.strip()] = content.strip()
            return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read().decode("utf-8"), set_cookies)
        finally:
            connection.close()

    def get(self, path: str) -> Reply:
        return self.request("GET", path)

    def post(self, path: str, form: dict[str, str]) -> Reply:
        return self.request("POST", path, form)

    def csrf(self, page: str = "/console/dashboard") -> str:
        """The session's CSRF token, read from a form on `page`."""
        return re.search(r'name="csrf" value="([^"]+)"', self.get(page).text).group(1)

    def sign_in(self, name: str, code: str, password: str = PASSWORD) -> Reply:
        form = self.get("/console/login")
        token = re.search(r'name="login_token" value="([^"]+)"', form.text).group(1)
        return self.post("/console/login", {"login_token": token, "lang": "en", "name": name, "password": password, "totp": code})
