"""The transport the hub-role cases of §12.8 need: TLS identities other than the run's, and raw HTTP exchanges.

- `client_context(target, identity)`: `none` connects without a client certificate;
  `foreign` presents a certificate naming the suite's jurisdiction that the suite issues
  itself, from a throwaway authority the hub cannot trust (PROTO-12.8-1).
- `raw_exchange`: one HTTP/1.1 request written by hand on a socket, so that a case can
  declare a body it never sends whole (PROTO-12.8-5) and see whether the hub then closes
  the connection.
"""

from __future__ import annotations

import asyncio
import datetime
import ssl
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gateway.conformance.target import Target

JURISDICTION_URI = "urn:gba:jurisdiction:{}"

CLOSE_WITHIN_SECONDS = 30.0
"""How long a hub may linger before it closes a connection whose body it refused unread: servers keep reading for a
while so that the client sees the answer before the reset (RFC 9112 §9.6; aiohttp lingers 10 s)."""


def client_context(target: Target, identity: str) -> ssl.SSLContext:
    """A client TLS context that verifies the hub as the run does (--tls-ca) and presents `identity`'s certificate."""
    context = ssl.create_default_context(cafile=str(target.tls_ca) if target.tls_ca else None)
    if identity == "foreign":
        with tempfile.TemporaryDirectory() as folder:
            certificate, key = _foreign_certificate(Path(folder), target.jurisdiction)
            context.load_cert_chain(certificate, key)
    elif identity != "none":
        raise ValueError(f"unknown TLS identity {identity!r}")
    return context


def _foreign_certificate(folder: Path, jurisdiction: str) -> tuple[Path, Path]:
    """A client certificate naming `jurisdiction`, issued by an authority made here and thrown away: no hub trusts it."""
    now = datetime.datetime.now(datetime.timezone.utc)
    authority_key, holder_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    authority = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "GBA conformance suite: an authority no hub trusts")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"conformance {jurisdiction}")]))
        .issuer_name(authority)
        .public_key(holder_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(JURISDICTION_URI.format(jurisdiction))]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(authority_key, hashes.SHA256())
    )
    certificate_path, key_path = folder / "foreign.pem", folder / "foreign.key"
    certificate_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(holder_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
    return certificate_path, key_path


async def raw_exchange(target: Target, method: str, path: str, headers: dict[str, str], body: bytes,
                       answer_within: float) -> dict[str, Any]:
    """Send `method path` with `headers` (a Content-Length among them) and `body` (possibly less than declared) on a new
    connection; the answer read within `answer_within` seconds, and whether the hub then closed the connection.

    Raises TimeoutError when no answer comes in time."""
    parts = urlsplit(target.url)
    secure = parts.scheme == "https"
    host, port = parts.hostname or "127.0.0.1", parts.port or (443 if secure else 80)
    reader, writer = await asyncio.open_connection(host, port, ssl=target.ssl if secure and target.ssl else (True if secure else None),
                                                   server_hostname=host if secure else None)
    try:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {parts.netloc}", *(f"{name}: {value}" for name, value in headers.items()), "", ""]
        writer.write("\r\n".join(lines).encode("ascii") + body)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), answer_within)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        answered = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in header_lines if line)}
        raw = await asyncio.wait_for(reader.readexactly(int(answered.get("content-length", "0"))), answer_within)
        try:
            closed = await asyncio.wait_for(reader.read(1), CLOSE_WITHIN_SECONDS) == b""
        except TimeoutError:
            closed = False
        except (ConnectionError, ssl.SSLError):
            closed = True
        return {"status": int(status_line.split()[1]), "content_type": answered.get("content-type", "").split(";")[0].strip(),
                "body": raw[:8000].decode("utf-8", "replace"), "raw": raw, "closed": closed, "retry_after": answered.get("retry-after")}
    finally:
        writer.close()
