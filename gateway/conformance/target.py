"""The target of a run and the set-up checks every role shares (docs/conformance.md, "Preflight").

A fault found here is a configuration problem of the run (`PreflightError`, exit 2),
never a failure of the target.
"""

from __future__ import annotations

import json
import ssl
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path

import aiohttp

from gateway.conformance import crafting
from gateway.conformance.crafting import SigningKey, TrustedKey
from gateway.contract import contract_dir

MAX_SKEW_SECONDS = 60


class PreflightError(Exception):
    """The target cannot be tested as configured: not a failure of the target, a fault of the set-up."""


def load_trust(path: Path | None) -> dict[str, TrustedKey]:
    """The suite's trust list (`--trust`; the shipped test list by default), read by the suite's own code."""
    source = path or contract_dir("keys") / "test" / "trust-list.json"
    try:
        return crafting.read_trust_list(json.loads(Path(source).read_text("utf-8")))
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise PreflightError(f"cannot read the trust list {source}: {type(error).__name__}: {error}") from None


@dataclass
class Target:
    """What a run tests and with what: the role's URL, the suite's jurisdiction and keys, the trust list, TLS."""

    url: str
    jurisdiction: str
    key: SigningKey
    trust: dict[str, TrustedKey] = field(default_factory=dict)
    allow_production: bool = False
    ssl: ssl.SSLContext | None = None
    peer: str = ""
    """The counterpart (hub role: the receiver of the suite's messages; endpoint role: the endpoint's jurisdiction)."""
    hub_key: SigningKey | None = None
    """Endpoint role: the hub `receipt` key the suite signs attestations with."""
    refused_route: tuple[str, str, str] | None = None
    """Hub role: (to, type, purpose) of a route the target's policy refuses for the suite's jurisdiction (PROTO-5.4-2)."""
    client_certificate: bool = False
    """A client certificate is in use (--tls-cert): it names one jurisdiction, so the suite cannot speak for others."""
    public_url: str = ""
    """Hub role: the hub's public base URL for request proofs' htu (its /openapi.json says; the target URL otherwise)."""

    def __post_init__(self) -> None:
        if not self.peer:
            self.peer = "HK" if self.jurisdiction != "HK" else "CN-GD"


def ssl_context(ca: Path | None, certificate: Path | None, private_key: Path | None) -> ssl.SSLContext | None:
    """A client TLS context for `--tls-ca/--tls-cert/--tls-key`, or None for the system defaults."""
    if ca is None and certificate is None:
        return None
    context = ssl.create_default_context(cafile=str(ca) if ca else None)
    if certificate is not None:
        context.load_cert_chain(str(certificate), str(private_key) if private_key else None)
    return context


async def http_get(session: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, str], bytes]:
    async with session.get(url) as response:
        return response.status, dict(response.headers), await response.read()


def check_clock(date: str | None) -> None:
    if date:
        skew = abs((parsedate_to_datetime(date) - datetime.now(timezone.utc)).total_seconds())
        if skew > MAX_SKEW_SECONDS:
            raise PreflightError(f"the target's clock is {skew:.0f} s away from this machine's: freshness cases would be meaningless")


def check_key_known(key: SigningKey, owner: str, use: str, keys: dict[str, TrustedKey], where: str) -> None:
    """The suite's key is in `keys` under its kid, owned by `owner` for `use`, with the same public key."""
    known = keys.get(key.kid)
    if known is None:
        raise PreflightError(f"{where} has no key {key.kid}: register the suite's public key there first")
    if (known.owner, known.use) != (owner, use):
        raise PreflightError(f"{where} lists {key.kid} as a {known.use} key of {known.owner}, not a {use} key of {owner}")
    if known.jwk.get("x") != key.public_jwk()["x"]:
        raise PreflightError(f"{where} holds another public key under {key.kid}: --key is not the key it knows")
