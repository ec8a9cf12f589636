"""Certificates the tests make for themselves: a CA, a server certificate for 127.0.0.1, client certificates.

Client certificates name their holder as the hub expects (gateway/hub/transport.py):
a subjectAltName URI `urn:gba:jurisdiction:<CODE>`, or `urn:gba:hub`. Everything is
written as PEM into a folder the test owns; nothing here is ever a real credential.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Credential:
    certificate: Path
    private_key: Path


class CertificateAuthority:
    """A throwaway CA that issues server and client certificates into `folder`."""

    def __init__(self, folder: Path, name: str = "GBA test CA") -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self._key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.now(timezone.utc)
        self._certificate = (
            x509.CertificateBuilder()
            .subject_name(subject).issuer_name(subject)
            .public_key(self._key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(hours=1)).not_valid_after(now + timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        self.certificate = folder / f"{name.replace(' ', '-')}.ca.pem"
        self.certificate.write_bytes(self._certificate.public_bytes(serialization.Encoding.PEM))

    def server(self, name: str = "server") -> Credential:
        """A server certificate for 127.0.0.1 and localhost."""
        names = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
        return self._issue(name, names, ExtendedKeyUsageOID.SERVER_AUTH)

    def client(self, name: str, uris: list[str]) -> Credential:
        """A client certificate whose subjectAltName holds `uris` (e.g. `urn:gba:jurisdiction:HK`)."""
        return self._issue(name, [x509.UniformResourceIdentifier(uri) for uri in uris], ExtendedKeyUsageOID.CLIENT_AUTH)

    def _issue(self, name: str, alternative_names: list[x509.GeneralName], usage: x509.ObjectIdentifier) -> Credential:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(timezone.utc)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self._certificate.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(hours=1)).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(alternative_names), critical=False)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        credential = Credential(self.folder / f"{name}.crt.pem", self.folder / f"{name}.key.pem")
        credential.certificate.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        credential.private_key.write_bytes(
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        )
        credential.private_key.chmod(0o600)
        return credential
