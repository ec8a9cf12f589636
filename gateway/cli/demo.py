"""`gateway demo`: the hub and three simulated jurisdictions exchange the story of MISSION.md (README, first command).

On the embedded PostgreSQL in --data-dir (a new temporary folder by default) and the
published test keys: a referral Guangdong -> Hong Kong through acceptance and closure
with its outcome, verifications Guangdong -> Hong Kong and -> Macao with their answers,
then the refusals (forged, misrouted, stale, same id with other bytes) and an identical
resend answered with the stored receipt. Prints a summary; exit 0 only if every step
ended as docs/protocol.md requires. With --keep-running the hub and the simulators stay
up until Ctrl-C, for exploring the API.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import tempfile
from pathlib import Path

import asyncpg

from gateway.demo.exchange import running_exchange
from gateway.demo.story import tell
from gateway.ledger.verify import verify_ledger
from gateway.logs import configure_logging
from gateway.store.embedded import ensure_embedded_server, running_embedded_server, stop_embedded_server

DELIVERY = {
    "mixed": {"CN-GD": "pull", "HK": "push", "MO": "pull"},
    "push": {"CN-GD": "push", "HK": "push", "MO": "push"},
    "pull": {"CN-GD": "pull", "HK": "pull", "MO": "pull"},
}


def register(commands: argparse._SubParsersAction) -> None:
    demo = commands.add_parser("demo", help="run the demonstration: a hub and three simulated jurisdictions", description=__doc__)
    demo.add_argument("--data-dir", type=Path, help="where the embedded database, simulators' state and logs go (default: a new temporary folder)")
    demo.add_argument("--keep-running", action="store_true", help="keep the hub and the simulators running after the story, until Ctrl-C")
    demo.add_argument(
        "--delivery", choices=sorted(DELIVERY), default="mixed",
        help="how the jurisdictions receive: mixed (HK push, CN-GD and MO pull; the default), all push, or all pull",
    )
    demo.set_defaults(run=_run)


def _say(line: str = "") -> None:
    print(line, flush=True)


def _run(arguments: argparse.Namespace) -> int:
    data_dir = (arguments.data_dir or Path(tempfile.mkdtemp(prefix="gba-demo-"))).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / "demo.log"
    # Left open until the process ends: loggers keep the stream they were configured with.
    configure_logging(stream=log_path.open("a", encoding="utf-8", buffering=1))
    started_here = running_embedded_server(data_dir) is None
    _say(f"GBA Case Gateway demo — data in {data_dir}")
    _say("Starting the embedded PostgreSQL (first run: initialising it takes a few seconds)...")
    server = ensure_embedded_server(data_dir, notify=lambda line: _say(f"  {line}"))
    try:
        return asyncio.run(_story(server.dsn, data_dir, DELIVERY[arguments.delivery], arguments.keep_running, log_path))
    finally:
        if started_here and not arguments.keep_running:
            stop_embedded_server(data_dir)
            _say("Embedded PostgreSQL stopped.")


async def _story(dsn: str, data_dir: Path, delivery: dict[str, str], keep_running: bool, log_path: Path) -> int:
    async with running_exchange(dsn, data_dir, delivery) as exchange:
        modes = ", ".join(f"{code} by {mode}" for code, mode in delivery.items())
        _say(f"Hub at {exchange.hub_url} (test mode, published test keys); simulators: {modes}.")
        _say()
        story = await tell(exchange)
        for number, step in enumerate(story.steps, 1):
            _say(f"{number:>2}. {step.label}: {step.happened}{'' if step.ok else '   <-- NOT as required'}")
        connection = await asyncpg.connect(dsn)
        try:
            report = await verify_ledger(connection)
        finally:
            await connection.close()
        intact = not report.findings
        _say()
        _say(f"Ledger: {report.size} entries, {'verified intact' if intact else 'NOT intact: ' + str(report.findings[0])} (gateway ledger verify).")
        for name, case in story.cases.items():
            if name != "checkpoint":
                _say(f"  case {case}: {name}")
        _say(f"Checkpoint: {exchange.hub_url}/v1/ledger/checkpoint (C2SP signed note with the witnesses' cosignatures)")
        _say(f"API: {exchange.hub_url}/v1/about, {exchange.hub_url}/openapi.json, {exchange.hub_url}/metrics")
        _say(f"Console: {exchange.hub_url}/console/ (the test officer: docs/console.md; with --keep-running)")
        _say(f"Logs (JSON lines, no personal data): {log_path}")
        ok = story.ok and intact
        _say("Done: every step ended as docs/protocol.md requires." if ok else "Some steps did not end as required.")
        if keep_running:
            _say("Running until Ctrl-C.")
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for number in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(number, stop.set)
            await stop.wait()
        return 0 if ok else 1
