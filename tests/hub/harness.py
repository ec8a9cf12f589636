"""A hub on a real socket and a real database, for tests: `running_hub(database_url)`.

The hub runs its own event loop in a background thread, exactly as `gateway serve`
builds it (`build_app`); tests talk to it over HTTP with the standard library, as a
jurisdiction system would.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import selectors
import signal
import subprocess
import sys
import http.client
import json
import secrets
import tempfile
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
from aiohttp import web

from gateway.contract import contract_dir
from gateway.config import default_config
from gateway.hub.http import HubSettings, build_app, settings_for
from gateway.protocol.timestamps import utc_now
from gateway.store.payloads import PayloadKeys
from tests.privacy import leaks_in


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def code(self) -> str | None:
        """The catalogue code of a problem answer."""
        if self.headers.get("content-type", "").startswith("application/problem+json"):
            return self.json()["code"]
        return None


@dataclass
class RunningHub:
    base_url: str
    settings: HubSettings
    client_tls: Any = None
    """For an https hub: the client's `ssl.SSLContext` (with a client certificate for mutual TLS)."""

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> Answer:
        parts = urlsplit(self.base_url)
        if parts.scheme == "https":
            connection: http.client.HTTPConnection = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=30, context=self.client_tls)
        else:
            connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
        finally:
            connection.close()

    def post_message(self, compact: bytes, content_type: str = "application/jose") -> Answer:
        return self.request("POST", "/v1/messages", compact, {"Content-Type": content_type})


TEST_PAYLOAD_KEYS = PayloadKeys({"ptest": secrets.token_bytes(32)}, "the test session's payload key")
"""One throwaway payload key for the hubs of a test session (gateway/store/payloads.py)."""


def payload_keys_variable(keys: Mapping[str, bytes]) -> dict[str, str]:
    """The environment that gives a `gateway serve` process these payload keys (`GATEWAY_PAYLOAD_KEYS`, id=base64;...)."""
    import base64

    return {"GATEWAY_PAYLOAD_KEYS": ";".join(f"{key_id}={base64.b64encode(key).decode()}" for key_id, key in keys.items())}


HUB_DATA_DIR = Path(tempfile.mkdtemp(prefix="gba-test-hubs-"))
"""The data directory of the test session's in-process hubs (the console keeps its test blind index key there)."""


def hub_settings(database_url: str, **changes: Any) -> HubSettings:
    config = default_config(HUB_DATA_DIR)
    return replace(settings_for(config, database_url, changes.pop("payload_keys", TEST_PAYLOAD_KEYS)), **changes)


@contextlib.contextmanager
def running_hub(database_url: str, **changes: Any) -> Iterator[RunningHub]:
    """Serve a hub on 127.0.0.1 (a free port) until the block ends; over TLS with `server_tls` (an `ssl.SSLContext`)."""
    before_commit = changes.pop("before_commit", None)
    server_tls = changes.pop("server_tls", None)
    listen_port = changes.pop("port", 0)
    clock = changes.pop("clock", utc_now)
    settings = hub_settings(database_url, **changes)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    state: dict[str, Any] = {}

    async def serve() -> None:
        app = build_app(settings, clock=clock, before_commit=before_commit)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", listen_port, ssl_context=server_tls)
        await site.start()
        host, port = runner.addresses[0][:2]
        state["url"] = f"{'https' if server_tls else 'http'}://{host}:{port}"
        state["stop"] = asyncio.Event()
        started.set()
        await state["stop"].wait()
        await runner.cleanup()

    def run() -> None:
        try:
            loop.run_until_complete(serve())
        except BaseException as error:  # noqa: BLE001 - reported to the test below
            state["error"] = error
            started.set()

    thread = threading.Thread(target=run, name="hub", daemon=True)
    thread.start()
    started.wait(60)
    if "error" in state:
        raise state["error"]
    try:
        yield RunningHub(state["url"], settings)
    finally:
        loop.call_soon_threadsafe(state["stop"].set)
        thread.join(60)
        loop.close()


def case_message(example: Any, message_type: str, case: str, parties: tuple[str, str], created: datetime,
                 sent: list[tuple[str, str, str, bytes]], respond_by: datetime | None = None) -> dict[str, Any]:
    """A payload of `message_type` in `case` from parties[0] to parties[1], made from the schema's example so that only
    the case rules can refuse it; `sent` is the case's messages so far, (id, type, receiver, compact), in order.

    A reply names the case's first message of the type it answers; a receipt, the last message sent to its sender.
    """
    from gateway.adapters.schemes import SCHEME_LISTS
    from gateway.protocol.ids import new_uuid7
    from gateway.protocol.jws import digest
    from gateway.protocol.timestamps import format_timestamp

    sender, receiver = parties
    payload = example(message_type)
    payload.update(id=new_uuid7(), case=case, created=format_timestamp(created))
    payload["from"], payload["to"] = sender, receiver
    wanted = {"referral.accept": "referral.submit", "referral.decline": "referral.submit",
              "verification.response": "verification.request"}.get(message_type)
    if wanted is None:
        payload["reply_to"] = None
    else:
        found = next((entry[0] for entry in sent if entry[1] == wanted), None)
        payload["reply_to"] = found or (sent[0][0] if sent else new_uuid7())
    if message_type == "verification.request":
        payload["body"]["respond_by"] = format_timestamp(respond_by)
    if sender == "CN-GD" and message_type != "receipt":
        # The default routes require a transfer mechanism out of Guangdong (docs/data-protection.md).
        mechanism = example("referral.submit")["legal_basis"]["transfer_mechanism"]
        payload["legal_basis"] = dict(payload["legal_basis"], transfer_mechanism=mechanism)
    for award in payload["body"].get("awards", ()):
        # An award names a scheme of its sender (PROTO-6.1-9): the case rules are what is tested.
        award["scheme"] = SCHEME_LISTS[sender].schemes[0].code
    if message_type == "receipt":
        target = next((entry for entry in reversed(sent) if entry[2] == sender), None)
        target_id, target_digest = (target[0], digest(target[3])) if target else (new_uuid7(), "0" * 64)
        payload["reply_to"] = target_id
        payload["body"].update(message_id=target_id, message_digest=target_digest, status="accepted")
        payload["body"].pop("code", None)
    return payload


class Clock:
    """A hub clock a test can move: real time plus `offset`."""

    def __init__(self) -> None:
        from datetime import timedelta

        self.offset = timedelta(0)

    def __call__(self):
        return utc_now() + self.offset


def serving_url(process: subprocess.Popen) -> str:
    """The URL a `gateway serve` subprocess prints once it listens (its stdout must be a text pipe)."""
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    for _ in range(200):
        if not selector.select(timeout=60):
            break
        line = process.stdout.readline()
        if not line:
            break
        if line.startswith("gateway: serving "):
            return line.split()[2]
    raise AssertionError(f"gateway serve did not start (exit {process.poll()})")


_KEYS = contract_dir("keys") / "test"
SERVE_CONFIG = f"""
mode = "test"
public_base_url = "http://127.0.0.1:8443"
[hub]
receipt_key = "{_KEYS / 'test-hub-receipt-1.key.jwk'}"
trust_list = "{_KEYS / 'trust-list.json'}"
[jurisdictions.CN-GD]
[jurisdictions.HK]
[[routes]]
sender = "CN-GD"
receiver = "HK"
types = ["referral.*", "receipt"]
purposes = ["referral", "delivery_receipt"]
[[routes]]
sender = "HK"
receiver = "CN-GD"
types = ["referral.*", "receipt"]
purposes = ["referral", "assistance_feedback", "delivery_receipt"]
"""
_TEST_FACILITIES = ("GATEWAY_KILL_POINT", "GATEWAY_HOLD_POINT")


@contextlib.contextmanager
def serve_process(
    folder: Path, database_url: str, environment: dict[str, str] | None = None, name: str = "serve",
    config_text: str = SERVE_CONFIG, port: int = 0, arguments: tuple[str, ...] = (), prefix: tuple[str, ...] = (),
):
    """`gateway serve` as a separate OS process on `database_url`; yields (process, RunningHub).

    Its log goes to FOLDER/NAME.log and is checked for personal data when it stops;
    SIGTERM must end it with status 0 (unless the test ended it itself). `prefix` runs the
    command through another (`nsenter ...`).
    """
    config = folder / f"{name}.toml"
    config.write_text(config_text, "utf-8")
    env = {key: value for key, value in os.environ.items() if key not in _TEST_FACILITIES}
    env.update(environment or {})
    log_path = folder / f"{name}.log"
    log = log_path.open("a", encoding="utf-8")
    process = subprocess.Popen(
        [*prefix, sys.executable, "-m", "gateway.cli", "serve", "--config", str(config), "--database-url", database_url, "--port", str(port),
         *arguments],
        stdout=subprocess.PIPE, stderr=log, env=env, text=True,
    )
    try:
        yield process, RunningHub(serving_url(process), hub_settings(database_url))
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            assert process.wait(60) == 0, "SIGTERM must drain and exit cleanly"
        process.stdout.close()
        log.close()
        assert not leaks_in(log_path.read_text("utf-8")), "personal data in the hub's log"


def query(database_url: str, sql: str, *args: Any) -> list[Any]:
    """The rows of one statement on its own connection: for tests that look into the database."""

    async def run() -> list[Any]:
        connection = await asyncpg.connect(database_url)
        try:
            return await connection.fetch(sql, *args)
        finally:
            await connection.close()

    return asyncio.run(run())


def wait_for_row(database_url: str, sql: str, *args: Any, timeout: float = 30.0) -> Any:
    """The first row of `sql` once there is one: polls the database for a condition, bounded by `timeout`."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        rows = query(database_url, sql, *args)
        if rows:
            return rows[0]
        assert time.monotonic() < deadline, f"no row within {timeout} s for: {sql}"
        time.sleep(0.02)  # a poll for a condition in another process, bounded by the deadline
