"""`gateway demo`: the protocol story so far, on fresh keys (README, first command).

Makes keys for Guangdong, Hong Kong and the hub, signs a referral Guangdong -> Hong
Kong, verifies it, then shows three refusals: a tampered copy, a message whose
`from` is not the signer's jurisdiction, and a non-canonical signature encoding.
Exit 0 only if every step ends as the protocol says it must.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Callable

from gateway.contract import contract_dir
from gateway.keyfiles import write_private_key
from gateway.protocol import base64url, jws
from gateway.protocol.errors import ProtocolError
from gateway.protocol.ids import new_uuid7
from gateway.protocol.keys import PrivateKey, generate
from gateway.protocol.message import sign_message, verify_message
from gateway.protocol.schema import load_message_schemas
from gateway.protocol.timestamps import format_timestamp, utc_now
from gateway.protocol.trust import KeyRecord, TrustList


def register(commands: argparse._SubParsersAction) -> None:
    demo = commands.add_parser("demo", help="run the demonstration (protocol part)")
    demo.add_argument("--data-dir", type=Path, help="where to write the demo keys (default: a new temporary folder)")
    demo.set_defaults(run=_run)


def _run(arguments: argparse.Namespace) -> int:
    folder = arguments.data_dir or Path(tempfile.mkdtemp(prefix="gba-demo-"))
    folder.mkdir(parents=True, exist_ok=True)
    now = utc_now().replace(microsecond=0)
    guangdong = generate("Ed25519", f"demo-cn-gd-message-{new_uuid7()[-6:]}")
    hong_kong = generate("ES256", f"demo-hk-message-{new_uuid7()[-6:]}")
    hub = generate("Ed25519", f"demo-hub-receipt-{new_uuid7()[-6:]}")
    trust = _trust_list([("CN-GD", "message", guangdong), ("HK", "message", hong_kong), ("hub", "receipt", hub)], now)
    for key in (guangdong, hong_kong, hub):
        write_private_key(key, folder / f"{key.kid}.key.jwk")
    (folder / "trust-list.json").write_text(json.dumps(trust.to_document(), indent=2, ensure_ascii=False) + "\n", "utf-8")
    print(f"1. Keys made in {folder}: {guangdong.kid} (Ed25519), {hong_kong.kid} (ES256), {hub.kid};")
    print("   trust-list.json names CN-GD, HK and MO and holds the public halves.")

    schemas = load_message_schemas()
    example = json.loads((contract_dir("schemas") / "referral.submit.json").read_text("utf-8"))["examples"][0]
    payload = dict(example)
    payload.update(id=new_uuid7(), case=new_uuid7(), created=format_timestamp(now))
    signed = sign_message(payload, guangdong)
    (folder / "referral.jws").write_bytes(signed + b"\n")
    print(f"2. Guangdong signs a referral to Hong Kong: {len(signed)} bytes, digest {jws.digest(signed)[:16]}...")

    checks: list[tuple[str, Callable[[], None], str | None]] = [
        ("3. The hub's checks accept it", lambda: verify_message(signed, trust, schemas, now), None),
        ("4. A copy with one payload byte changed", lambda: verify_message(_tampered(signed), trust, schemas, now), "signature-invalid"),
        ("5. Hong Kong's key signing 'from: CN-GD'", lambda: verify_message(sign_message(payload, hong_kong), trust, schemas, now), "sender-mismatch"),
        ("6. The same signature, last base64url character altered", lambda: verify_message(_non_canonical(signed), trust, schemas, now), "jws-base64url-invalid"),
        ("7. A message checked after its key expired", lambda: verify_message(signed, trust, schemas, now + timedelta(days=800)), "key-expired"),
    ]
    failures = 0
    for label, check, expected in checks:
        try:
            check()
            outcome = None
        except ProtocolError as error:
            outcome = error.code
        ok = outcome == expected
        failures += not ok
        said = "accepted" if outcome is None else f"refused with {outcome} ({ProtocolError(outcome).entry.requirement})"
        note = "" if ok else f"  <-- expected {expected or 'acceptance'}"
        print(f"{label}: {said}{note}")
    print("Done: every step ended as docs/protocol.md requires." if not failures else f"{failures} step(s) went wrong.")
    return 0 if not failures else 1


def _trust_list(parties: list[tuple[str, str, PrivateKey]], now) -> TrustList:
    document = {
        "v": 1,
        "issued": format_timestamp(now),
        "sequence": 1,
        "mode": "test",
        "jurisdictions": {code: {"name": {"en": code}} for code in ("CN-GD", "HK", "MO")},
        "keys": [
            KeyRecord(key.kid, owner, use, key.public(), now, now + timedelta(days=730), None, True).to_document()
            for owner, use, key in parties
        ],
    }
    return TrustList.from_document(document)


def _tampered(compact: bytes) -> bytes:
    header, payload, signature = compact.split(b".")
    raw = bytearray(base64url.decode(payload))
    raw[raw.index(b'"HK"') + 2] ^= 0x01  # "HK" -> "HJ": still valid JSON, no longer what was signed
    return b".".join((header, base64url.encode(bytes(raw)), signature))


def _non_canonical(compact: bytes) -> bytes:
    # An 86-character Ed25519 signature leaves 4 unused bits in its last character;
    # setting one gives another string for the same bytes, which must be refused.
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(compact[-1:])
    return compact[:-1] + alphabet[last ^ 0x01 : (last ^ 0x01) + 1]
