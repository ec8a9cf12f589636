"""`gateway serve` as an operator runs it: HTTPS with a certificate, a clean stop on SIGTERM."""

from __future__ import annotations

import datetime as dt
import http.client
import ipaddress
import json
import re
import signal
import ssl
import subprocess
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import pytest

from gateway.contract import contract_dir
from gateway.hub.http import HubStartError
from gateway.keyfiles import write_private_key
from gateway.protocol.keys import generate
from gateway.protocol.timestamps import parse_timestamp
from tests.hub.harness import SERVE_CONFIG, running_hub, serving_url

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
        connection.request("GET", "/v1/about?probe=1")
        response = connection.getresponse()
        assert response.status == 200 and json.loads(response.read())["mode"] == "test"
        connection.close()
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
        process.stdout.close()
        log = process.stderr.read()
        process.stderr.close()
    # The log is JSON lines (docs/operations.md), the access log included; only the CLI's own `gateway:` lines are text.
    events = [json.loads(line) for line in log.splitlines() if line and not line.startswith("gateway: ")]
    access = [event for event in events if event["event"] == "http_request"]
    assert [(event["method"], event["path"], event["status"]) for event in access] == [("GET", "/v1/about", 200)]
    assert access[0]["bytes"] > 0 and access[0]["seconds"] >= 0 and access[0]["remote"] == "127.0.0.1"


def test_workers_share_one_port_and_a_killed_worker_is_replaced(tmp_path, database_url, example, test_key):
    """`gateway serve --workers 2`: two processes answer on one address (SO_REUSEPORT); one killed is started again,
    and messages sent meanwhile are accepted (a connection cut by the kill is resent, §8.1); every scrape of /metrics,
    whichever worker answers it, counts the messages of both workers and of the killed one; SIGTERM stops all."""
    import os

    from gateway.protocol.ids import new_uuid7
    from gateway.protocol.message import sign_message
    from gateway.protocol.timestamps import format_timestamp, utc_now
    from tests.hub.harness import query, serve_process

    def referral() -> bytes:
        payload = dict(example("referral.submit"), id=new_uuid7(), case=new_uuid7(), created=format_timestamp(utc_now()))
        return sign_message(payload, test_key("test-cn-gd-message-1"))

    def send(hub, body: bytes) -> int:
        for _ in range(5):  # a connection the kill cut gets no answer: the identical bytes again (§8.1)
            try:
                return hub.post_message(body).status
            except (ConnectionError, http.client.HTTPException):
                continue
        raise AssertionError("no answer after five tries")

    with serve_process(tmp_path, database_url, name="workers", arguments=("--workers", "2")) as (process, hub):
        log = tmp_path / "workers.log"
        workers = _children(process.pid)
        port = int(hub.base_url.rsplit(":", 1)[1])
        assert len(workers) == 2 and all(_listens(pid, port) for pid in workers), "both workers listen on the one port"
        assert all(send(hub, referral()) == 202 for _ in range(10))
        os.kill(workers[0], signal.SIGKILL)
        assert all(send(hub, referral()) == 202 for _ in range(10)), "the other worker answers meanwhile"
        line = _next_line(process, timeout=60)  # the supervisor says so on stdout once the new worker listens
        assert line.startswith("gateway: worker ") and f"(it replaces {workers[0]})" in line, line
        replaced = _children(process.pid)
        assert len(replaced) == 2 and workers[0] not in replaced and all(_listens(pid, port) for pid in replaced)
        assert f"worker {workers[0]} ended (signal 9)" in log.read_text("utf-8")
        # Each request is a new connection, which the kernel gives to either worker: 20 messages went to both (all to
        # one has odds of 2^-19), so a scrape that counted only its own worker's would read less than 20.
        for _ in range(8):
            counters = _accepted_and_verified(hub.request("GET", "/metrics").body.decode())
            assert counters["new"] == 20 and counters["replayed"] == 0, counters
            assert counters["signature"] >= 20, counters
        # Each worker collects once and freezes what startup built as it starts serving (gateway/hub/collector.py):
        # three full collections counted (both first workers and the replacement, which goes on in the killed one's
        # slot), and objects frozen in both live workers.
        metrics = hub.request("GET", "/metrics").body.decode()
        assert int(re.search(r'^gateway_gc_pause_seconds_count\{generation="2"\} (\d+)$', metrics, re.M).group(1)) >= 3
        assert int(re.search(r"^gateway_gc_frozen_objects (\d+)$", metrics, re.M).group(1)) > 0
    assert process.returncode == 0
    assert query(database_url, "SELECT count(*) AS n FROM messages")[0]["n"] == 20
    assert not [pid for pid in workers[1:] if os.path.exists(f"/proc/{pid}")], "SIGTERM stopped every worker"



def _accepted_and_verified(metrics: str) -> dict[str, int]:
    """Accepted messages by kind, and signature stages run, from a /metrics text."""
    found = {"new": 0, "replayed": 0, "signature": 0}
    for kind, count in re.findall(r'^gateway_messages_accepted_total\{kind="(\w+)"\} (\d+)$', metrics, re.M):
        found[kind] = int(count)
    found["signature"] = int(re.search(r'^gateway_stage_count_total\{stage="signature"\} (\d+)$', metrics, re.M).group(1))
    return found


def _children(pid: int) -> list[int]:
    """The child processes of `pid` (Linux /proc)."""
    return [int(child) for child in open(f"/proc/{pid}/task/{pid}/children").read().split()]


def _listens(pid: int, port: int) -> bool:
    """Whether process `pid` holds a TCP socket listening on `port` (Linux /proc)."""
    import os

    listening = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in open(table).read().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # state LISTEN
                listening.add(fields[9])
    sockets = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
    return any(f"socket:[{inode}]" in sockets for inode in listening)


def _next_line(process: subprocess.Popen, timeout: float) -> str:
    """The next line `process` writes on its stdout (a text pipe), waiting at most `timeout` seconds for it."""
    import selectors

    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    assert selector.select(timeout=timeout), f"no line within {timeout:g} s"
    return process.stdout.readline().strip()


def test_serve_refuses_a_receipt_key_the_registry_does_not_hold_as_the_hubs(tmp_path, database_url):
    # Every receipt, attestation and trust list it signed would be refused by every consumer: no start at all.
    config = tmp_path / "gateway.toml"
    hub_key = str(KEYS / "test-hub-receipt-1.key.jwk")
    assert hub_key in SERVE_CONFIG
    config.write_text(SERVE_CONFIG.replace(hub_key, str(KEYS / "test-hk-message-1.key.jwk")), "utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config), "--database-url", database_url, "--port", "0"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 1, result.stderr
    assert "gateway: error: hub.receipt_key (test-hk-message-1) cannot sign for the hub" in result.stderr
    assert "as a key of HK for use 'message'" in result.stderr and "Traceback" not in result.stderr
    assert "gateway: serving" not in result.stdout


def test_the_hub_refuses_to_start_with_another_key_under_its_kid_or_a_key_no_longer_valid(tmp_path, database_url):
    impostor = tmp_path / "impostor.key.jwk"
    write_private_key(generate("Ed25519", "test-hub-receipt-1"), impostor)
    with pytest.raises(HubStartError, match=r"not the one the trust list holds as test-hub-receipt-1"):
        with running_hub(database_url, receipt_key_file=impostor):
            pass
    after_expiry = parse_timestamp("2036-01-01T00:00:01Z")  # test-hub-receipt-1's not_after, passed
    with pytest.raises(HubStartError, match=r"holds test-hub-receipt-1 as expired"):
        with running_hub(database_url, clock=lambda: after_expiry):
            pass
