"""Transport security (docs/protocol.md §12.8): TLS contexts, and the party a client certificate names.

With mutual TLS on, a client certificate names its holder in a subjectAltName URI:
`urn:gba:jurisdiction:<CODE>` for a jurisdiction's systems, `urn:gba:hub` for the hub's
own outgoing calls (pushes, witness requests). The certificate authority that issues
them is the hub operator's `[tls] client_ca`: issuing the certificate is the act that
binds a TLS identity to a jurisdiction, as registering a key binds a signing identity.
The hub then checks that both name the same jurisdiction (PROTO-12.8-3).

The server asks for a certificate but does not require one at the handshake, so that
the public resources (checkpoints, the trust list, `/v1/about`) stay readable by
monitors and witnesses; every non-public resource, and `POST /v1/messages`, refuses a
caller without one (PROTO-12.8-2).
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

JURISDICTION_URI_PREFIX = "urn:gba:jurisdiction:"
HUB_URI = "urn:gba:hub"
HUB_PARTY = "hub"
"""What `certificate_party` returns for the hub's own certificate."""


def server_context(certificate: Path, private_key: Path, client_ca: Path | None = None) -> ssl.SSLContext:
    """A TLS 1.2+ server context; with `client_ca`, it asks for client certificates and verifies those it gets."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certificate, private_key)
    if client_ca is not None:
        context.load_verify_locations(cafile=str(client_ca))
        context.verify_mode = ssl.CERT_OPTIONAL
    return context


def client_context(ca: Path | None = None, certificate: Path | None = None, private_key: Path | None = None) -> ssl.SSLContext:
    """A TLS 1.2+ client context that verifies the server against `ca` (else the system's store) and, with
    `certificate`, presents it (mutual TLS)."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca) if ca is not None else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if certificate is not None:
        context.load_cert_chain(certificate, private_key)
    return context


def certificate_party(peercert: dict[str, Any] | None) -> str | None:
    """The jurisdiction code (or `HUB_PARTY`) a verified peer certificate names; None when it names none or several.

    `peercert` is what `ssl.SSLSocket.getpeercert()` returns: empty or None when the
    client presented no certificate (a certificate that fails verification never gets
    this far: the handshake fails).
    """
    if not peercert:
        return None
    parties = set()
    for kind, value in peercert.get("subjectAltName", ()):
        if kind != "URI":
            continue
        if value == HUB_URI:
            parties.add(HUB_PARTY)
        elif value.startswith(JURISDICTION_URI_PREFIX) and len(value) > len(JURISDICTION_URI_PREFIX):
            parties.add(value[len(JURISDICTION_URI_PREFIX):])
    return parties.pop() if len(parties) == 1 else None


def peer_party(transport: Any) -> str | None:
    """The party named by the client certificate on this connection (an asyncio transport), if any."""
    if transport is None:
        return None
    return certificate_party(transport.get_extra_info("peercert"))
