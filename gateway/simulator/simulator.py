"""`Simulator`: one jurisdiction endpoint, as integrators and the demo run it (docs/simulator.md).

It owns the pieces and their lifetimes: the sqlite state, the HTTP server (push
endpoint and control API, in both modes), the hub client, the held trust list, the
sender task and, in pull mode, the inbox task. `start` binds and starts them; `stop`
ends the loops, closes the server, the client and the state.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from datetime import datetime
from pathlib import Path
from typing import Awaitable, Callable, Mapping

import structlog
from aiohttp import web

from gateway.contract import contract_dir
from gateway.ledger import notes
from gateway.ledger.notes import NoteKey
from gateway.protocol import jws
from gateway.protocol.errors import ProtocolError
from gateway.protocol.keys import PrivateKey
from gateway.protocol.schema import load_message_schemas
from gateway.protocol.statements import parse_delivery
from gateway.protocol.timestamps import utc_now
from gateway.protocol.trust import TrustList, load_trust_list
from gateway.simulator.application import PROFILES, Application, Decision
from gateway.simulator.endpoint import DELIVERIES_PATH, WITNESS_PATH, EndpointActions, build_endpoint
from gateway.simulator.hub_client import HubClient
from gateway.simulator.inbox import InboxPoller
from gateway.simulator.reception import Answer, Reception
from gateway.simulator.rules import Rules
from gateway.simulator.sender import Sender
from gateway.simulator.state import CaseView, OutgoingView, SimulatorState
from gateway.simulator.trust_source import TRUST_REFRESH_SECONDS, HubTrust
from gateway.simulator.witnessing import Witness

MODES = ("push", "pull")
_log = structlog.get_logger("gateway.simulator")


def default_anchor() -> TrustList:
    """The shipped test trust list: the anchor the hub's signed list must verify against."""
    return load_trust_list((contract_dir("keys") / "test" / "trust-list.json").read_bytes())


def _report_end(task: asyncio.Task[object]) -> None:
    """A loop runs until `stop` cancels it: one that ends otherwise has stopped the simulator's work, so say so
    (by the exception's type: its text may quote what it was handling)."""
    if task.cancelled():
        return
    error = task.exception()
    _log.error("simulator.loop_ended", loop=task.get_name(), error=type(error).__name__ if error else None)


def _check_own_key(key: PrivateKey, jurisdiction: str, anchor: TrustList) -> None:
    """Refuse a key the anchor list holds as anything but this jurisdiction's message key: with another
    jurisdiction's key the simulator would sign as, and pull the inbox of, that jurisdiction (§9.5, §12.6)."""
    held = anchor.keys.get(key.kid)
    if held is None:
        return  # registered since the anchor was published: the hub's list judges it
    if held.owner != jurisdiction or held.use != "message":
        raise ValueError(f"the key {key.kid} is {held.owner}'s {held.use} key in the trust list, not a message key of {jurisdiction}")
    if held.public.to_jwk() != key.public().to_jwk():
        raise ValueError(f"the key {key.kid} is not the key the trust list holds under that kid")


class Simulator:
    """A simulated jurisdiction (`CN-GD`, `HK` or `MO`) that receives by push or pull and opens flows."""

    def __init__(
        self,
        *,
        jurisdiction: str,
        key: PrivateKey,
        hub_url: str,
        mode: str,
        state_dir: Path,
        rules: Rules | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        anchor: TrustList | None = None,
        poll_wait_seconds: int = 30,
        trust_refresh_seconds: float = TRUST_REFRESH_SECONDS,
        clock: Callable[[], datetime] = utc_now,
        ssl_context: ssl.SSLContext | None = None,
        hub_ssl_context: ssl.SSLContext | None = None,
        witness_key: PrivateKey | None = None,
        witness_name: str | None = None,
        logs: Mapping[str, NoteKey] | None = None,
    ) -> None:
        """With `witness_key` the simulator is also a witness (C2SP tlog-witness) of the logs in `logs`
        (origin -> the log's checkpoint key), cosigning as `witness_name` (default: witness.<code>.gba.example)."""
        if mode not in MODES:
            raise ValueError(f"mode must be push or pull, not {mode!r}")
        _check_own_key(key, jurisdiction, anchor or default_anchor())
        self.jurisdiction = jurisdiction
        self.mode = mode
        self.on_delivery: Callable[[str], Awaitable[None]] | None = None
        """Test hook: awaited with the message id at the start of each pushed delivery, before verification."""
        self._application = Application(jurisdiction, key, rules or Rules(), clock)
        self._key = key
        self._hub_url = hub_url
        self._state_dir = Path(state_dir)
        self._host, self._port = host, port
        self._anchor = anchor
        self._poll_wait = poll_wait_seconds
        self._trust_refresh = trust_refresh_seconds
        self._clock = clock
        self._ssl_context = ssl_context
        self._hub_ssl_context = hub_ssl_context
        self._changed = asyncio.Event()
        self._state: SimulatorState | None = None
        self._sender: Sender | None = None
        self._runner: web.AppRunner | None = None
        self._hub: HubClient | None = None
        self._tasks: list[asyncio.Task[object]] = []
        self._reception: Reception | None = None
        self._endpoint_url: str | None = None
        self._witness_key = witness_key
        self.witness_name = witness_name or f"witness.{jurisdiction.lower()}.gba.example"
        self._logs = dict(logs or {})
        self._witness: Witness | None = None

    # --- lifetime ---

    async def start(self) -> None:
        """Load the state, bind the server (push endpoint and control API), start the sender and, in pull mode, the inbox loop."""
        self._state = SimulatorState.open(self._state_dir, on_change=self._notify)
        self._hub = HubClient(self._hub_url, self._key, self._clock, self._hub_ssl_context)
        trust = HubTrust(self._anchor or default_anchor(), self._hub, self._clock)
        reception = self._reception = Reception(self._application, self._state, trust, load_message_schemas())
        peers = frozenset(PROFILES) - {self.jurisdiction}
        if self._witness_key is not None:
            self._witness = Witness(self._state, self.witness_name, self._witness_key, self._logs, lambda: int(self._clock().timestamp()))
        app = build_endpoint(
            EndpointActions(
                self._receive_push, self._start_flow, self._state.summary, peers,
                self._witness.add_checkpoint if self._witness is not None else None,
            )
        )
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port, ssl_context=self._ssl_context)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        scheme = "https" if self._ssl_context else "http"
        self._endpoint_url = f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}{DELIVERIES_PATH}"
        self._sender = Sender(self._state, self._hub, trust, self._application.renewed)
        loops = {"simulator-trust": trust.keep_fresh(self._trust_refresh), "simulator-sender": self._sender.run()}
        if self.mode == "pull":
            loops["simulator-inbox"] = InboxPoller(self._state, self._hub, trust, reception, self._poll_wait).run()
        self._tasks = [asyncio.create_task(loop, name=name) for name, loop in loops.items()]
        for task in self._tasks:
            task.add_done_callback(_report_end)
        _log.info("simulator.started", jurisdiction=self.jurisdiction, mode=self.mode, port=port)

    async def stop(self) -> None:
        """Stop taking deliveries, end the loops, close the client and the state. Safe to call twice."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._hub is not None:
            await self._hub.close()
            self._hub = None
        if self._state is not None:
            self._state.close()
            self._state = None
        _log.info("simulator.stopped", jurisdiction=self.jurisdiction)

    @property
    def endpoint_url(self) -> str:
        """The push endpoint, e.g. http://127.0.0.1:PORT/v1/deliveries (valid after `start`)."""
        if self._endpoint_url is None:
            raise RuntimeError("the simulator has not started")
        return self._endpoint_url

    @property
    def witness_url(self) -> str:
        """The witness's URL prefix (the hub POSTs to it + /add-checkpoint); valid after `start`."""
        return self.endpoint_url.removesuffix(DELIVERIES_PATH) + WITNESS_PATH

    @property
    def is_witness(self) -> bool:
        return self._witness_key is not None

    def witness_vkey(self) -> str:
        """This witness's cosignature key as a C2SP vkey, for verifiers' configuration."""
        if self._witness_key is None:
            raise RuntimeError("this simulator is not a witness")
        return notes.note_key(self.witness_name, self._witness_key.public(), 0x04).vkey()

    def witnessed(self, origin: str) -> tuple[int, bytes] | None:
        """(size, root) of the latest checkpoint of `origin` this witness cosigned."""
        return self._held().witnessed(origin)

    # --- flows ---

    async def start_referral(self, to: str) -> tuple[str, str]:
        """Open a referral case with `to`: (case id, message id) of its `referral.submit`, stored then sent."""
        return self._open(self._application.open_referral(self._peer(to)))

    async def start_verification(self, to: str) -> tuple[str, str]:
        """Open a verification case with `to`: (case id, message id) of its `verification.request`."""
        return self._open(self._application.open_verification(self._peer(to)))

    # --- what tests and the demo read ---

    def wire_deliveries(self, message_id: str) -> int:
        """How many times the message arrived (every push, every inbox item)."""
        return self._held().wire_deliveries(message_id)

    def application_deliveries(self, message_id: str) -> int:
        """How many times the message was handed to the application: 1 once taken in, never more."""
        return self._held().application_deliveries(message_id)

    def case(self, case_id: str) -> CaseView | None:
        return self._held().case(case_id)

    def outgoing(self, message_id: str) -> OutgoingView | None:
        return self._held().outgoing(message_id)

    async def wait_for(self, condition: Callable[[], bool], timeout: float) -> None:
        """Return once `condition()` holds, re-checking after every change of state; TimeoutError after `timeout` s."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not condition():
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"the simulator's condition did not hold within {timeout} s")
            changed = self._changed
            try:
                await asyncio.wait_for(changed.wait(), remaining)
            except TimeoutError:
                pass

    # --- inside ---

    def _held(self) -> SimulatorState:
        if self._state is None:
            raise RuntimeError("the simulator's state is open only between start and stop")
        return self._state

    def _peer(self, to: str) -> str:
        if to not in PROFILES or to == self.jurisdiction:
            raise ValueError(f"a flow goes to one of {', '.join(sorted(set(PROFILES) - {self.jurisdiction}))}")
        return to

    def _open(self, decision: Decision) -> tuple[str, str]:
        self._held().open_flow(decision)
        opening = decision.outgoing[0]
        _log.info("simulator.flow.opened", case=opening.case, message_id=opening.id, type=opening.type)
        return opening.case, opening.id

    async def _start_flow(self, kind: str, to: str) -> tuple[str, str]:
        return await (self.start_referral(to) if kind == "referral" else self.start_verification(to))

    async def _receive_push(self, data: bytes) -> Answer:
        if self.on_delivery is not None:
            message_id = _message_id_of(data)
            if message_id is not None:
                await self.on_delivery(message_id)
        assert self._reception is not None, "deliveries arrive only while the server runs"
        return await self._reception.receive(data)

    def _notify(self) -> None:
        """After every committed change: wake `wait_for` callers and the sender."""
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        if self._sender is not None:
            self._sender.wake()


def _message_id_of(data: bytes) -> str | None:
    """The id a pushed delivery claims, read without verifying anything (for the test hook only)."""
    try:
        payload = json.loads(jws.parse_compact(parse_delivery(data).message, "gba-case+jws").payload)
        message_id = payload.get("id")
    except (ProtocolError, ValueError, AttributeError):
        return None
    return message_id if isinstance(message_id, str) else None
