"""Protocol benchmark (issue 2): the whole message check against a bare Ed25519 verify.

Measures, in one run and one process, on the shipped ~2 KB referral example:
  - `ed25519_verify_per_s`: raw Ed25519 verifications of that message, by the gateway's own key objects
    (gateway/protocol/keys.py: libsodium since the fourth pass of docs/performance.md, OpenSSL before);
  - `full_check_per_s`: `verify_message` = size, JWS parse with strict header, key
    lookup, signature, strict I-JSON payload, schema validation (jsonschema-rs, formats on),
    sender and receiver checks;
  - the parts: `strict_json_per_s`, `schema_fast_per_s` and, for reference, the pure-Python
    `schema_reference_per_s` (jsonschema, used only in tests).
`ratio_full_to_verify` = verify rate / full rate; the target is <= 2.0 (docs/performance.md).
`openssl_verify_per_s` is the same verification by `cryptography` (OpenSSL), the verifier the target
was set against, and `ratio_full_to_openssl_verify` the ratio against it.
Prints one JSON object. `--seconds` sets the time per measurement.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.contract import contract_dir  # noqa: E402
from gateway.keyfiles import read_private_key  # noqa: E402
from gateway.protocol import jws, strict_json  # noqa: E402
from gateway.protocol.message import sign_message, verify_message  # noqa: E402
from gateway.protocol.schema import load_message_schemas  # noqa: E402
from gateway.protocol.trust import load_trust_list  # noqa: E402

AT = datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc)


def _rate(operation: Callable[[], object], seconds: float, rounds: int = 5) -> float:
    """Operations per second of `operation`: the best of `rounds` timed runs of `seconds`/`rounds` each.

    The best run is the one least disturbed by the rest of the machine (as `timeit` advises);
    every rate in one report is measured the same way, so their ratios are fair.
    """
    for _ in range(50):
        operation()
    best = 0.0
    for _ in range(rounds):
        count, batch = 0, 100
        start = time.perf_counter()
        deadline = start + seconds / rounds
        while True:
            for _ in range(batch):
                operation()
            count += batch
            now = time.perf_counter()
            if now >= deadline:
                break
        best = max(best, count / (now - start))
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="time per measurement (default 3)")
    arguments = parser.parse_args()

    keys = contract_dir("keys") / "test"
    trust = load_trust_list((keys / "trust-list.json").read_bytes())
    key = read_private_key(keys / "test-cn-gd-message-1.key.jwk")
    schemas = load_message_schemas()
    payload = json.loads((contract_dir("schemas") / "referral.submit.json").read_text("utf-8"))["examples"][0]
    compact = sign_message(payload, key)
    parsed = jws.parse_compact(compact, "gba-case+jws")
    public = trust.keys[key.kid].public
    payload_bytes = parsed.payload
    document = strict_json.loads(payload_bytes)

    verify_rate = _rate(lambda: public.verify(parsed.signature, parsed.signing_input), arguments.seconds)
    openssl_rate = _rate(lambda: public.key.verify(parsed.signature, parsed.signing_input), arguments.seconds)
    full_rate = _rate(lambda: verify_message(compact, trust, schemas, AT), arguments.seconds)
    results = {
        "message_bytes": len(compact),
        "payload_bytes": len(payload_bytes),
        "ed25519_verify_per_s": round(verify_rate),
        "full_check_per_s": round(full_rate),
        "ratio_full_to_verify": round(verify_rate / full_rate, 3),
        "target_ratio": 2.0,
        "meets_target": verify_rate / full_rate <= 2.0,
        "openssl_verify_per_s": round(openssl_rate),
        "ratio_full_to_openssl_verify": round(openssl_rate / full_rate, 3),
        "strict_json_per_s": round(_rate(lambda: strict_json.loads(payload_bytes), arguments.seconds)),
        "schema_fast_per_s": round(_rate(lambda: schemas.validate(document), arguments.seconds)),
        "schema_reference_per_s": round(_rate(lambda: schemas.reference_errors(document), min(arguments.seconds, 1.0), rounds=1)),
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
