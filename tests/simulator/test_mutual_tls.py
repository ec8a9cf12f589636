"""The simulator speaks mutual TLS (docs/protocol.md §12.8) both ways with a real hub.

CN-GD's simulator sends and pulls with its client certificate; the hub pushes to HK's
simulator with the hub's own client certificate, which HK's simulator requires; HK
answers with its receipt, which reaches CN-GD. Every hop is HTTPS with certificates
this test issues (tests/tls.py).
"""

from __future__ import annotations

import asyncio
import ssl

from gateway.demo.exchange import free_port
from gateway.hub.transport import client_context, server_context
from tests.hub.harness import running_hub
from tests.tls import CertificateAuthority


def test_a_referral_crosses_a_hub_that_requires_client_certificates_to_a_simulator_that_does_too(
    running_simulator, database_url, tmp_path
):
    authority = CertificateAuthority(tmp_path / "pki")
    server, hub_client = authority.server("hub-server"), authority.client("hub", ["urn:gba:hub"])
    gd, hk = authority.client("cn-gd", ["urn:gba:jurisdiction:CN-GD"]), authority.client("hk", ["urn:gba:jurisdiction:HK"])
    hk_endpoint_server = authority.server("hk-endpoint")
    hk_server_context = server_context(hk_endpoint_server.certificate, hk_endpoint_server.private_key, authority.certificate)
    hk_server_context.verify_mode = ssl.CERT_REQUIRED  # HK's endpoint serves only holders of the operator's certificates
    hk_port, hub_port = free_port(), free_port()

    with running_hub(
        database_url,
        port=hub_port,
        public_base_url=f"https://127.0.0.1:{hub_port}",
        server_tls=server_context(server.certificate, server.private_key, authority.certificate),
        client_certificates=True,
        outgoing_ssl=client_context(authority.certificate, hub_client.certificate, hub_client.private_key),
        push_endpoints={"HK": f"https://127.0.0.1:{hk_port}/v1/deliveries"},
    ) as hub:

        async def scenario():
            async with running_simulator(
                hub.base_url, jurisdiction="HK", mode="push", port=hk_port, state_dir=tmp_path / "hk",
                ssl_context=hk_server_context,
                hub_ssl_context=client_context(authority.certificate, hk.certificate, hk.private_key),
            ) as hk_simulator, running_simulator(
                hub.base_url, jurisdiction="CN-GD", mode="pull", state_dir=tmp_path / "gd",
                hub_ssl_context=client_context(authority.certificate, gd.certificate, gd.private_key),
            ) as gd_simulator:
                _, message_id = await gd_simulator.start_referral("HK")
                await gd_simulator.wait_for(lambda: gd_simulator.outgoing(message_id).receiver_receipt_status is not None, timeout=30)
                sent = gd_simulator.outgoing(message_id)
                assert (sent.hub_status, sent.receiver_receipt_status) == ("accepted", "accepted")
                assert hk_simulator.application_deliveries(message_id) == 1

        asyncio.run(scenario())


def test_the_simulators_tls_options_that_need_each_other_are_refused_alone(tmp_path):
    from tests.cli_runner import run_cli

    alone = run_cli("simulate", "--jurisdiction", "HK", "--hub", "https://127.0.0.1:9", "--key", "k.jwk", "--mode", "push",
                    "--tls-client-ca", str(tmp_path / "ca.pem"))
    assert alone.status == 1 and "--tls-client-ca needs --tls-certificate" in alone.stderr
    half = run_cli("simulate", "--jurisdiction", "HK", "--hub", "https://127.0.0.1:9", "--key", "k.jwk", "--mode", "push",
                   "--hub-client-certificate", str(tmp_path / "c.pem"))
    assert half.status == 1 and "go together" in half.stderr


def test_gateway_simulate_sends_over_mutual_tls_with_its_client_certificate(database_url, tmp_path):
    """The command, not only the API: `gateway simulate --hub-ca --hub-client-certificate --hub-client-key`."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import urllib.request
    from pathlib import Path

    from gateway.contract import contract_dir
    from tests.hub.harness import wait_for_row

    authority = CertificateAuthority(tmp_path / "pki")
    server, gd = authority.server("hub-server"), authority.client("cn-gd", ["urn:gba:jurisdiction:CN-GD"])
    hub_port = free_port()
    with running_hub(
        database_url, port=hub_port, public_base_url=f"https://127.0.0.1:{hub_port}",
        server_tls=server_context(server.certificate, server.private_key, authority.certificate), client_certificates=True,
    ) as hub:
        command = [
            sys.executable, "-m", "gateway.cli", "simulate", "--jurisdiction", "CN-GD", "--mode", "pull", "--port", "0",
            "--hub", hub.base_url, "--key", str(contract_dir("keys") / "test" / "test-cn-gd-message-1.key.jwk"),
            "--state-dir", str(tmp_path / "state"), "--hub-ca", str(authority.certificate),
            "--hub-client-certificate", str(gd.certificate), "--hub-client-key", str(gd.private_key),
        ]  # fmt: skip
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                                   env=os.environ | {"PYTHONPATH": str(Path(__file__).resolve().parents[2])})
        try:
            line = process.stdout.readline()
            assert line.startswith("simulator: CN-GD serving http://127.0.0.1:"), line + process.stderr.read()
            control = line.split()[3].removesuffix("/v1/deliveries") + "/v1/simulator/flows"
            request = urllib.request.Request(control, data=json.dumps({"kind": "referral", "to": "HK"}).encode(),
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=30) as answer:
                message_id = json.loads(answer.read())["message_id"]
            wait_for_row(database_url, "SELECT 1 FROM messages WHERE id = $1::uuid", message_id)
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=20) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
