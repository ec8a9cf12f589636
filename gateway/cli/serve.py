"""`gateway serve --config FILE`: run the hub (docs/operations.md).

Loads and checks the configuration, finds the database (embedded by default), and
serves HTTPS — or plain HTTP on loopback, or anywhere with the explicit insecure
development flag. SIGTERM and SIGINT drain in-flight requests before exit. With `--workers N`, N processes
serve the same port (gateway/cli/workers.py): one machine's cores behind one address.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from gateway.cli import workers
from gateway.config import ConfigError, GatewayConfig, load_config
from gateway.hub.collector import COLLECTOR_PAUSES, freeze_startup_objects
from gateway.hub.faults import chain, hold_point_hook, kill_point_hooks
from gateway.hub.http import HubStartError, build_app, settings_for
from gateway.hub.metrics import Metrics, counter_board
from gateway.hub.stages import STAGE_TIMES
from gateway.hub.transport import server_context
from gateway.logs import JsonAccessLog, configure_logging, write_line
from gateway.store.database import resolve_database
from gateway.store.embedded import ensure_embedded_server


def register(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser("serve", help="run the hub", description=__doc__)
    serve.add_argument("--config", required=True, type=Path, help="the gateway's TOML configuration")
    serve.add_argument("--database-url", help="use this PostgreSQL (default: $GATEWAY_DATABASE_URL, the config, or the embedded server)")
    serve.add_argument("--data-dir", type=Path, help="override the configuration's data_dir")
    serve.add_argument("--port", type=int, help="override the configured listen port (0 picks a free one)")
    serve.add_argument("--workers", type=int, default=1, metavar="N",
                       help="serve with N processes sharing the port (SO_REUSEPORT; default 1; at most one a core helps)")
    serve.set_defaults(run=_serve)


def _serve(arguments: argparse.Namespace) -> int:
    configure_logging()
    try:
        config = load_config(arguments.config)
    except ConfigError as error:
        print(f"gateway: config: {error}", file=sys.stderr)
        return 1
    data_dir = arguments.data_dir or config.data_dir
    database = resolve_database(arguments.database_url, config.database_url, data_dir)
    dsn = database.dsn
    if database.embedded:
        dsn = ensure_embedded_server(database.data_dir, notify=lambda line: print(f"gateway: {line}", file=sys.stderr)).dsn
    print(f"gateway: database: {database.describe()}", file=sys.stderr)
    before_commit, after_commit = kill_point_hooks(config.mode)
    before_commit = chain(hold_point_hook(config.mode, dsn), before_commit)
    port = config.listen_port if arguments.port is None else arguments.port
    if not 1 <= arguments.workers <= 64:
        print("gateway: --workers must be from 1 to 64", file=sys.stderr)
        return 2

    boards = (counter_board(), STAGE_TIMES.board, COLLECTOR_PAUSES.board)

    def serve(slot: int, port: int, reuse_port: bool, ready: Callable[[str], None]) -> int:
        for board in boards:
            board.use_slot(slot)
        COLLECTOR_PAUSES.install()
        metrics = Metrics(boards[0])
        app = build_app(settings_for(config, dsn), before_commit=before_commit, after_commit=after_commit, metrics=metrics)
        try:
            return asyncio.run(_run(app, config, port, reuse_port, ready))
        except HubStartError as error:
            write_line(f"gateway: error: {error}")
            return 1

    if arguments.workers == 1:
        return serve(0, port, False, lambda line: write_line(line, sys.stdout))
    for board in boards:  # before the fork: every worker adds to its own slot, /metrics sums them all
        board.share(arguments.workers)
    return workers.supervise(arguments.workers, config.listen_host, port, serve)


async def _run(app: web.Application, config: GatewayConfig, port: int, reuse_port: bool, ready: Callable[[str], None]) -> int:
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=30, access_log_class=JsonAccessLog)
    await runner.setup()
    context = None
    if config.tls is not None:
        context = server_context(config.tls.certificate, config.tls.private_key, config.tls.client_ca)
    site = web.TCPSite(runner, config.listen_host, port, ssl_context=context, reuse_port=reuse_port or None)
    await site.start()
    scheme = "https" if context else "http"
    bound = runner.addresses[0]
    # What startup built lives as long as the process: out of the collector's reach, its pauses shrink to what
    # serving makes (gateway/hub/collector.py; measured in docs/performance.md, "Seventh pass").
    freeze_startup_objects()
    ready(f"gateway: serving {scheme}://{bound[0]}:{bound[1]} (mode {config.mode}); public base URL {config.public_base_url}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signal_number, stop.set)
    await stop.wait()
    write_line("gateway: draining in-flight requests")
    await runner.cleanup()
    return 0
