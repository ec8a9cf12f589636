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
from typing import Any

import aiohttp

from gateway.conformance import crafting
from gateway.conformance.crafting import SigningKey, TrustedKey
from gateway.contract import contract_dir

MAX_SKEW_SECONDS = 60


class PreflightError(Exception):
    """The target cannot be tested as configured: not a failure of the target, a fault of the set-up."""


def load_trust_document(path: Path | None) -> dict[str, Any]:
    """The suite's trust list document (`--trust`; the shipped test list by default), read by the suite's own code."""
    source = path or contract_dir("keys") / "test" / "trust-list.json"
    try:
        document = json.loads(Path(source).read_text("utf-8"))
        crafting.read_trust_list(document)
        return document
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise PreflightError(f"cannot read the trust list {source}: {type(error).__name__}: {error}") from None


def load_trust(path: Path | None) -> dict[str, TrustedKey]:
    """The keys of the suite's trust list (`--trust`; the shipped test list by default), by kid."""
    return crafting.read_trust_list(load_trust_document(path))


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
    tls_ca: Path | None = None
    """The CA bundle that verifies an https target (--tls-ca), for the connections a case makes with other TLS identities."""
    rate_burst: int | None = None
    """Hub role: the burst of the hub's per-jurisdiction request budget, refilled too slowly to matter in a case (--rate-burst)."""
    body_deadline: float | None = None
    """Hub role: how long the hub waits for a request body, in seconds (--body-deadline)."""
    trust_document: dict[str, Any] | None = None
    """The --trust document, the base of the trust lists the suite serves (endpoint role)."""
    serve_hub: tuple[str, int] | None = None
    """Endpoint role: where the suite serves GET /v1/trust-list as the endpoint's hub (--serve-hub); None: no trust-list cases."""
    endpoint_mode: str = "test"
    """Endpoint role: the mode the endpoint is configured for (--endpoint-mode): the mode of the lists it must take."""
    trust_fetch_seconds: float = 30.0
    """Endpoint role: how long the suite waits for the endpoint to fetch a list it serves (--trust-fetch-wait)."""
    receive_at: tuple[str, int] | None = None
    """Hub role: where the suite listens as --to's push endpoint (--receive-at); None: the push-answer cases are skipped."""
    push_wait_seconds: float = 60.0
    """Hub role: how long the suite waits for the hub to push (or push again) a message (--push-wait)."""
    push_receiver: Any = None
    """Hub role, during a run with --receive-at: the PushReceiver (gateway/conformance/push_receiver.py)."""
    witness_url: str = ""
    """Endpoint role: the URL prefix of the endpoint's jurisdiction's witness (--witness); the suite POSTs add-checkpoint there."""
    log_origin: str = "conformance.gba-case-gateway.example/gba-ledger"
    """Endpoint role: the origin of the suite's own log, which the witness must list (--log-origin)."""
    served_hub: Any = None
    """Endpoint role, during a run with --serve-hub: the ServedHub (gateway/conformance/served_hub.py)."""
    trust_publisher: Any = None
    """Endpoint role, during a run with --serve-hub: the TrustListPublisher (gateway/conformance/trust_lists.py)."""

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
