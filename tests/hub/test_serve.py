"""`gateway serve` as an operator runs it: HTTPS with a certificate, a clean stop on SIGTERM."""

from __future__ import annotations

import datetime as dt
import http.client
import ipaddress
import json
import signal
import ssl
import subprocess
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.contract import contract_dir
from tests.hub.harness import serving_url

KEYS = contract_dir("keys") / "test"


def _self_signed(folder):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hub.test")])
    now = dt.datetime.now(dt.timezone.utc)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    (folder / "hub.crt.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (folder / "hub.key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return folder / "hub.crt.pem", folder / "hub.key.pem"


def test_serve_speaks_https_with_the_configured_certificate_and_stops_cleanly(tmp_path, database_url):
    certificate, private_key = _self_signed(tmp_path)
    config = tmp_path / "gateway.toml"
    config.write_text(
        f'''mode = "test"
public_base_url = "https://hub.test"
[tls]
certificate = "{certificate}"
private_key = "{private_key}"
[hub]
receipt_key = "{KEYS / 'test-hub-receipt-1.key.jwk'}"
trust_list = "{KEYS / 'trust-list.json'}"
[jurisdictions.CN-GD]
[jurisdictions.HK]
[[routes]]
sender = "CN-GD"
receiver = "HK"
types = ["referral.*"]
purposes = ["referral"]
''',
        "utf-8",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config), "--database-url", database_url, "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        url = serving_url(process)
        assert url.startswith("https://")
        port = int(url.rsplit(":", 1)[1])
        context = ssl.create_default_context(cafile=str(certificate))
        connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=30)
        connection.request("GET", "/v1/about")
        response = connection.getresponse()
        assert response.status == 200 and json.loads(response.read())["mode"] == "test"
        connection.close()
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
        process.stdout.close()
        process.stderr.close()
