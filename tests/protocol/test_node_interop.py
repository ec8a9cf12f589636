"""Interoperability with a non-Python JOSE implementation: panva/jose on Node.js.

Our messages verify in jose with the published test keys and give back the exact
payload bytes and the {alg, kid, typ} header; jose's messages (Ed25519 under both the
RFC 9864 name `Ed25519` and the legacy `EdDSA`, and ES256 as raw R||S) pass our full
`verify_message`; a payload changed after signing is refused by both. Node runs
tests/interop_node/jose_check.mjs, a few cases per start.

Needs `node` and `npm ci --prefix tests/interop_node`: without them the tests skip,
except under CI=true, where they fail.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from typing import Any

import pytest

from gateway.protocol import base64url, jws, strict_json
from gateway.protocol.errors import ProtocolError
from gateway.protocol.message import MESSAGE_TYP, sign_message, verify_message
from tests.conftest import NOW, REPO, TEST_KEYS, TRUST_LIST, unavailable_here

INTEROP_NODE = REPO / "tests" / "interop_node"
NODE_TIMEOUT_SECONDS = 60

SIGNERS = {"Ed25519": ("test-cn-gd-message-1", "CN-GD"), "ES256": ("test-mo-message-1", "MO")}
"""Key algorithm -> (published test key, its owner)."""
HEADER_ALGS = {"Ed25519": "Ed25519", "EdDSA": "Ed25519", "ES256": "ES256"}
"""Header `alg` -> key algorithm (PROTO-3.2-2)."""
ALLOWED = {"Ed25519": ["Ed25519", "EdDSA"], "ES256": ["ES256"]}
"""Key algorithm -> the header `alg` values jose may accept for it."""


def _jose_installed() -> bool:
    """jose's package.json and the module it names as `main` are both there."""
    manifest = INTEROP_NODE / "node_modules" / "jose" / "package.json"
    if not manifest.is_file():
        return False
    main = json.loads(manifest.read_text("utf-8")).get("main")
    return isinstance(main, str) and (manifest.parent / main).is_file()


def jose_command() -> list[str]:
    """The command that runs jose_check.mjs; skip when node or jose is missing, but fail under CI=true."""
    node = shutil.which("node")
    if node is None:
        reason = "node (Node.js) not found on PATH; the jose cross-check needs it"
    elif not _jose_installed():
        reason = (
            f"jose is not (completely) installed in {INTEROP_NODE / 'node_modules'}; "
            "run `npm ci --prefix tests/interop_node --no-audit --no-fund`"
        )
    else:
        return [node, str(INTEROP_NODE / "jose_check.mjs")]
    unavailable_here(reason, "them")


def run_jose(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One node start for a batch of requests; its results, in order."""
    completed = subprocess.run(
        jose_command(),
        input=json.dumps(requests).encode(),
        capture_output=True,
        timeout=NODE_TIMEOUT_SECONDS,
        cwd=INTEROP_NODE,
        check=False,
    )
    stderr = completed.stderr.decode(errors="replace")
    try:
        results = json.loads(completed.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"jose_check.mjs printed no JSON (exit {completed.returncode}): {stderr}")
    assert isinstance(results, list) and len(results) == len(requests), results
    # The CLI contract: exit 1 exactly when some result is an error.
    assert completed.returncode == (1 if any("error" in result for result in results) else 0), stderr
    return results


def published_public_jwk(kid: str) -> dict[str, Any]:
    """The public JWK as the trust list publishes it."""
    document = json.loads(TRUST_LIST.read_text("utf-8"))
    (entry,) = [entry for entry in document["keys"] if entry["kid"] == kid]
    return entry["jwk"]


def published_private_jwk(kid: str) -> dict[str, Any]:
    return json.loads((TEST_KEYS / f"{kid}.key.jwk").read_text("utf-8"))


def payload_from(key_alg: str, example) -> dict[str, Any]:
    """The `referral.submit` example, sent by the owner of the key for `key_alg`."""
    payload = example("referral.submit")
    payload["from"] = SIGNERS[key_alg][1]
    return payload


def verify_request(compact: bytes, key_alg: str) -> dict[str, Any]:
    kid = SIGNERS[key_alg][0]
    return {"op": "verify", "jws": compact.decode(), "jwk": published_public_jwk(kid), "algorithms": ALLOWED[key_alg]}


def sign_request(header_alg: str, payload: bytes) -> dict[str, Any]:
    kid = SIGNERS[HEADER_ALGS[header_alg]][0]
    return {
        "op": "sign",
        "jwk": published_private_jwk(kid),
        "alg": header_alg,
        "kid": kid,
        "typ": MESSAGE_TYP,
        "payload": base64url.encode_str(payload),
    }


def with_payload(compact: bytes, payload: dict[str, Any]) -> bytes:
    """`compact` with its payload segment replaced, header and signature kept."""
    header, _, signature = compact.split(b".")
    return header + b"." + base64url.encode(strict_json.dumps(payload)) + b"." + signature


def readdressed(payload: dict[str, Any]) -> dict[str, Any]:
    """The same message sent to another registered jurisdiction: valid, but not what was signed."""
    changed = json.loads(json.dumps(payload))
    changed["to"] = "MO" if payload["from"] != "MO" else "CN-GD"
    assert changed["to"] not in (payload["to"], payload["from"])
    return changed


def test_python_signed_messages_verify_in_node_jose(example, test_key):
    messages = {}
    for key_alg, (kid, _) in SIGNERS.items():
        payload = payload_from(key_alg, example)
        messages[key_alg] = (payload, sign_message(payload, test_key(kid)))

    results = run_jose([verify_request(compact, key_alg) for key_alg, (_, compact) in messages.items()])

    for (key_alg, (payload, compact)), result in zip(messages.items(), results):
        assert "error" not in result, (key_alg, result)
        assert result["protectedHeader"] == {"alg": key_alg, "kid": SIGNERS[key_alg][0], "typ": MESSAGE_TYP}
        assert result["protectedHeader"] == json.loads(base64url.decode(compact.split(b".")[0]))
        their_payload = base64url.decode(result["payload"].encode())
        assert their_payload == base64url.decode(compact.split(b".")[1]) == strict_json.dumps(payload)
        assert json.loads(their_payload) == payload


def test_node_jose_signed_messages_verify_with_us(example, trust, schemas):
    cases = []
    for header_alg, key_alg in HEADER_ALGS.items():
        payload = payload_from(key_alg, example)
        # Another serializer than ours (spaces after separators): we verify the bytes as sent.
        cases.append((header_alg, payload, json.dumps(payload, ensure_ascii=False).encode()))

    results = run_jose([sign_request(header_alg, payload_bytes) for header_alg, _, payload_bytes in cases])

    for (header_alg, payload, payload_bytes), result in zip(cases, results):
        assert "error" not in result, (header_alg, result)
        compact = result["jws"].encode()
        kid = SIGNERS[HEADER_ALGS[header_alg]][0]
        header = strict_json.loads(base64url.decode(compact.split(b".")[0]), part="header")
        assert header == {"alg": header_alg, "kid": kid, "typ": MESSAGE_TYP}
        assert jws.parse_compact(compact, MESSAGE_TYP).alg == header_alg

        message = verify_message(compact, trust, schemas, NOW)

        assert message.compact == compact and message.digest == jws.digest(compact)
        assert message.kid == kid and message.sender == payload["from"]
        assert message.payload == payload
        assert base64url.decode(compact.split(b".")[1]) == payload_bytes


def test_node_jose_ed25519_signature_is_byte_identical_to_ours(example, test_key):
    # Ed25519 is deterministic and both sides write the header {alg, kid, typ} compactly
    # in that order: the same key over the same payload bytes gives the same JWS.
    payload = payload_from("Ed25519", example)
    ours = sign_message(payload, test_key(SIGNERS["Ed25519"][0]))

    (result,) = run_jose([sign_request("Ed25519", strict_json.dumps(payload))])

    assert result.get("jws", "").encode() == ours, result


def test_tampered_payload_is_refused_by_node_jose_and_by_us(example, test_key, trust, schemas):
    signed = []
    for key_alg, (kid, _) in SIGNERS.items():
        payload = payload_from(key_alg, example)
        signed.append(("python", key_alg, payload, sign_message(payload, test_key(kid))))
    jose_cases = [(header_alg, payload_from(key_alg, example)) for header_alg, key_alg in HEADER_ALGS.items()]
    for (header_alg, payload), result in zip(
        jose_cases, run_jose([sign_request(alg, strict_json.dumps(payload)) for alg, payload in jose_cases])
    ):
        assert "error" not in result, (header_alg, result)
        signed.append(("jose", HEADER_ALGS[header_alg], payload, result["jws"].encode()))
    tampered = [(signer, key_alg, with_payload(compact, readdressed(payload))) for signer, key_alg, payload, compact in signed]

    # As signed, every message verifies in jose: the refusals below are the tampering's.
    untouched = run_jose([verify_request(compact, key_alg) for _, key_alg, _, compact in signed])
    refused = run_jose([verify_request(compact, key_alg) for _, key_alg, compact in tampered])

    for (signer, key_alg, _, _), result in zip(signed, untouched):
        assert "error" not in result, (signer, key_alg, result)
    for (signer, key_alg, compact), result in zip(tampered, refused):
        assert result.get("code") == "ERR_JWS_SIGNATURE_VERIFICATION_FAILED", (signer, key_alg, result)
        with pytest.raises(ProtocolError) as refusal:
            verify_message(compact, trust, schemas, NOW)
        assert refusal.value.code == "signature-invalid", (signer, key_alg)


def test_missing_node_dependency_skips_outside_ci(monkeypatch, tmp_path):
    monkeypatch.setattr(sys.modules[__name__], "INTEROP_NODE", tmp_path / "absent")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"not \(completely\) installed|not found on PATH"):
        jose_command()


def test_missing_node_dependency_fails_under_ci(monkeypatch, tmp_path):
    monkeypatch.setattr(sys.modules[__name__], "INTEROP_NODE", tmp_path / "absent")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true requires them"):
        jose_command()
