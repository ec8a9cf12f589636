"""`gateway config check`: load a configuration file as `serve` would, without starting (docs/configuration.md)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from gateway.config import ConfigError, GatewayConfig, is_loopback, load_config
from gateway.store import StoreError
from gateway.store.database import resolve_database


def register(commands: argparse._SubParsersAction) -> None:
    config = commands.add_parser("config", help="check the gateway's configuration file")
    verbs = config.add_subparsers(dest="verb", required=True, metavar="VERB")
    check = verbs.add_parser(
        "check",
        help="check a configuration file and print what it sets up",
        description="Runs every check `gateway serve` runs on its configuration, then prints a summary. "
        "Exit 0 if the file is usable; 1 with 'gateway: config: FILE: KEY: REASON' on stderr if not.",
    )
    check.add_argument("--config", required=True, type=Path, metavar="FILE", help="the TOML configuration file")
    check.set_defaults(run=_check)


def _check(arguments: argparse.Namespace) -> int:
    try:
        config = load_config(arguments.config)
    except ConfigError as error:
        print(f"gateway: config: {error}", file=sys.stderr)
        return 1
    try:
        lines = summary(config, os.environ)
    except StoreError as error:
        print(f"gateway: error: {error}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0


def summary(config: GatewayConfig, environ: Mapping[str, str]) -> list[str]:
    """What the file sets up, one line per subject; a database password never appears.

    The database line applies `GATEWAY_DATABASE_URL` from `environ` as `serve` would.
    """
    database = resolve_database(None, config.database_url, config.data_dir, environ)
    if config.tls is not None:
        transport = "TLS" + (", client certificates required" if config.tls.client_ca else "")
    elif is_loopback(config.listen_host):
        transport = "plain HTTP on loopback"
    else:
        transport = "plain HTTP, insecure development"
    jurisdictions = ", ".join(
        f"{code} ({j.delivery}{' to ' + j.endpoint if j.endpoint else ''}, adapter {j.adapter})"
        for code, j in config.jurisdictions.items()
    )
    return [
        f"configuration: {config.source} is usable",
        f"mode: {config.mode}",
        f"listen: {config.listen_host}:{config.listen_port} ({transport})",
        f"public base URL: {config.public_base_url}",
        f"database: {database.describe()}",
        f"jurisdictions: {jurisdictions}",
        f"routes: {len(config.routes)}",
    ]
