"""A hub and its three simulated jurisdictions in one event loop, on loopback sockets.

The hub is `gateway.hub.http.build_app` with the demonstration's configuration
(`default_config`: test mode, the published test keys); each jurisdiction is a
`gateway.simulator.Simulator` receiving by push or pull as asked. Ports are chosen
free before anything starts, because the hub must know the push endpoints and the
simulators the hub's URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

from aiohttp import web


from gateway.config import GatewayConfig, Jurisdiction, Route, Witness, default_config
from gateway.contract import contract_dir
from gateway.hub.http import CHECKPOINTER, HubSettings, build_app, settings_for
from gateway.hub.witnessing import Checkpointer
from gateway.ledger import notes
from gateway.keyfiles import read_private_key
from gateway.protocol.timestamps import utc_now
from gateway.protocol.trust import TrustList
from gateway.simulator import Rules, Simulator
from gateway.simulator.endpoint import WITNESS_PATH

KEYS = {"CN-GD": "test-cn-gd-message-1", "HK": "test-hk-message-1", "MO": "test-mo-message-1"}
"""The published test key each simulated jurisdiction signs with (keys/test/)."""


WITNESS_KEYS = {"CN-GD": "test-cn-gd-witness-1", "HK": "test-hk-witness-1", "MO": "test-mo-witness-1"}
"""The published test witness key of each simulated jurisdiction (keys/test/)."""


@dataclass
class Exchange:
    hub_url: str
    settings: HubSettings
    simulators: dict[str, Simulator]
    app: web.Application
    config: GatewayConfig

    @property
    def checkpointer(self) -> Checkpointer:
        return self.app[CHECKPOINTER]

    def log_key(self) -> notes.NoteKey:
        """The hub's checkpoint key as the witnesses and verifiers configure it."""
        assert self.config.hub.checkpoint_key is not None
        return notes.note_key(self.config.origin, read_private_key(self.config.hub.checkpoint_key).public())

    def witness_keys(self) -> list[notes.NoteKey]:
        """Every witness's key, and the keys it rotated from (same name), as verifiers configure them."""
        return [notes.parse_vkey(vkey) for witness in self.config.witnesses for vkey in (witness.vkey, *witness.previous_vkeys)]

    def __getitem__(self, code: str) -> Simulator:
        return self.simulators[code]

    async def wait_for(self, condition: Callable[[], bool], timeout: float) -> None:
        """Return once `condition()` holds, re-checking after every change of any simulator's state."""
        waits = [asyncio.ensure_future(simulator.wait_for(condition, timeout)) for simulator in self.simulators.values()]
        try:
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for finished in done:
                finished.result()
        finally:
            for pending in waits:
                pending.cancel()
            await asyncio.gather(*waits, return_exceptions=True)


def free_port() -> int:
    """A TCP port nobody listens on now, outside the range the OS hands out to outgoing connections.

    The port is chosen before it is bound: the configuration names the simulators' and the hub's ports before any of
    them listens. A port the OS picked (bind to 0) comes from that range, where any outgoing connection meanwhile, one
    to a database over TCP say, can take it: "address already in use" (seen in CI's pass against the external
    PostgreSQL). Outside the range only another listener can, and this one is free when it is returned."""
    low, high = _ephemeral_range()
    outside = [*range(max(1024, low - 16384), low), *range(high + 1, 65536)]
    for port in random.sample(outside, min(200, len(outside))):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:  # every port tried was taken: the OS's choice
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _ephemeral_range() -> tuple[int, int]:
    """The OS's range of ports for outgoing connections, first and last (Linux's; its default elsewhere)."""
    try:
        low, high = (int(value) for value in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text("ascii").split())
        return low, high
    except (OSError, ValueError):
        return 32768, 60999


def demo_routes(config: GatewayConfig) -> tuple[Route, ...]:
    """The demonstration's route policy: every pair may exchange everything, except that Hong Kong
    sends nothing to Macao — so that a misrouted message has something to be refused by."""
    return tuple(route for route in config.routes if not (route.sender == "HK" and route.receiver == "MO"))


def key_path(code: str) -> Path:
    """The test key of a jurisdiction's messages (CN-GD, HK, MO), or `hub-checkpoint`, `hub-receipt`, or `witness:CODE`."""
    hub = {"hub-checkpoint": "test-hub-checkpoint-1", "hub-receipt": "test-hub-receipt-1"}
    name = hub[code] if code in hub else WITNESS_KEYS[code[8:]] if code.startswith("witness:") else KEYS[code]
    return contract_dir("keys") / "test" / f"{name}.key.jwk"


def witness_name(code: str) -> str:
    return f"witness.{code.lower()}.gba.example"


@contextlib.asynccontextmanager
async def running_exchange(
    dsn: str,
    data_dir: Path,
    delivery: Mapping[str, str],
    *,
    clock: Callable[[], datetime] = utc_now,
    rules: Mapping[str, Rules] | None = None,
    hub_changes: Mapping[str, Any] | None = None,
    poll_wait_seconds: int = 5,
    origin: str | None = None,
    key_files: Mapping[str, Path] | None = None,
    earlier_witness_keys: Mapping[str, Sequence[Path]] | None = None,
    earlier_logs: Mapping[str, notes.NoteKey] | None = None,
    anchors: Mapping[str, TrustList] | None = None,
) -> AsyncIterator[Exchange]:
    """Serve the hub and start a simulator for each code of `delivery` ("push" or "pull") until the block ends.

    For key rotations (tests/hub/test_key_lifecycle.py): `key_files` replaces the key file of a `key_path` code
    (CN-GD, HK, MO, `witness:CODE`, `hub-checkpoint`, `hub-receipt`); `earlier_witness_keys` lists, per code, the
    witness keys it rotated from (the hub's `previous_vkeys`); `earlier_logs` are more origins the witnesses
    witness (origin -> the log's key); `anchors` the trust list each simulator holds at start, instead of the
    shipped one.
    """
    def path(code: str) -> Path:
        return Path((key_files or {}).get(code) or key_path(code))

    def witness_vkey(code: str, file: Path) -> str:
        return notes.note_key(witness_name(code), read_private_key(file).public(), 0x04).vkey()

    hub_port = free_port()
    hub_url = f"http://127.0.0.1:{hub_port}"
    ports = {code: free_port() for code in delivery}
    base = default_config(data_dir)
    jurisdictions = {
        code: Jurisdiction(code, mode, f"http://127.0.0.1:{ports[code]}/v1/deliveries" if mode == "push" else None, base.jurisdictions[code].adapter)
        for code, mode in delivery.items()
    }
    witnesses = tuple(
        Witness(code, witness_vkey(code, path(f"witness:{code}")), f"http://127.0.0.1:{ports[code]}{WITNESS_PATH}",
                tuple(witness_vkey(code, Path(file)) for file in (earlier_witness_keys or {}).get(code, ())))
        for code in delivery
    )
    config = replace(
        base, public_base_url=hub_url, listen_port=hub_port, jurisdictions=MappingProxyType(jurisdictions),
        hub=replace(base.hub, receipt_key=path("hub-receipt"), checkpoint_key=path("hub-checkpoint")),
        routes=demo_routes(base), witnesses=witnesses,
        # Checkpoints on demand in the story; the hub's own schedule is slower than the story.
        ledger=replace(base.ledger, checkpoint_interval_seconds=3600.0, origin=origin),
    )
    settings = replace(settings_for(config, dsn), **dict(hub_changes or {}))
    app = build_app(settings, clock=clock)
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=5)
    await runner.setup()
    simulators: dict[str, Simulator] = {}
    logs = {**(earlier_logs or {}), config.origin: notes.note_key(config.origin, read_private_key(path("hub-checkpoint")).public())}
    try:
        await web.TCPSite(runner, "127.0.0.1", hub_port).start()
        for code, mode in delivery.items():
            simulators[code] = Simulator(
                jurisdiction=code, key=read_private_key(path(code)), hub_url=hub_url, mode=mode, anchor=(anchors or {}).get(code),
                state_dir=Path(data_dir) / "simulators" / code, rules=(rules or {}).get(code), port=ports[code],
                poll_wait_seconds=poll_wait_seconds, clock=clock,
                witness_key=read_private_key(path(f"witness:{code}")), witness_name=witness_name(code), logs=logs,
            )
            await simulators[code].start()
        yield Exchange(hub_url, settings, simulators, app, config)
    finally:
        for simulator in simulators.values():
            await simulator.stop()
        await runner.cleanup()
