"""Offline vectors (docs/conformance.md): signed messages with the verdict a verifier must reach, for unit tests in any language.

`write_vectors(folder)` writes `index.json` (`gba-conformance-vectors/v1`), one `.jws`
file per vector, the published test keys and their trust list. Each vector is a shipped
schema example, signed by the key of its `from` with the suite's own crafting
(gateway/conformance/crafting.py), and broken as its mutation says. A verifier checks it
end to end as a receiver does (docs/protocol.md §3 to §5, §10.4) at `verify_at`:
`expected` is `valid`, or `invalid` with the catalogue `code`. The hub's own checks (route
policy, freshness, case state) are not part of a vector's verdict.

Classes: `signature` (the signature and the key that makes it count), `profile` (the JWS
profile of §3: encoding, header), `JSON` (§4), `schema` (§5, §6), `protocol` (envelope rules
beyond the schema).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from gateway.conformance import crafting
from gateway.conformance.published_keys import published_key, signer_for
from gateway.contract import contract_dir

VECTORS_FORMAT = "gba-conformance-vectors/v1"
VERIFY_AT = "2026-11-28T12:00:00Z"
TYPES = ("referral.submit", "referral.accept", "referral.decline", "referral.update", "referral.withdraw", "referral.close",
         "verification.request", "verification.response", "verification.cancel", "receipt")

# (id, class, template, mutation, edits, splice, code or None, requirements, why)
_NEGATIVES: tuple[tuple[str, str, str, str, list[list[Any]], str | None, str, tuple[str, ...], str], ...] = (
    ("signature-flipped-byte", "signature", "referral.submit", "flip-signature", [], None, "signature-invalid", ("PROTO-3.5-1",),
     "one bit of the signature flipped"),
    ("signature-payload-changed", "signature", "referral.submit", "flip-payload", [], None, "signature-invalid", ("PROTO-3.5-1", "PROTO-3.5-3"),
     "the payload changed after signing: refused before the payload is read"),
    ("signature-alg-none", "signature", "referral.submit", "alg-none", [], None, "alg-refused", ("PROTO-3.2-1",), "alg none"),
    ("signature-hmac-public-key", "signature", "referral.submit", "hmac-public-key", [], None, "alg-refused", ("PROTO-3.2-1",),
     "HS256 with the public key bytes as the HMAC secret"),
    ("signature-eddsa-p256-key", "signature", "referral.submit", "eddsa-p256-key", [], None, "key-alg-mismatch", ("PROTO-3.2-2",),
     "alg EdDSA naming a P-256 key"),
    ("signature-ed25519-p256-key", "signature", "referral.submit", "ed25519-p256-key", [], None, "key-alg-mismatch", ("PROTO-3.2-2",),
     "alg Ed25519 naming a P-256 key"),
    ("signature-es256-ed25519-key", "signature", "referral.submit", "es256-ed25519-key", [], None, "key-alg-mismatch", ("PROTO-3.2-2",),
     "alg ES256 naming an Ed25519 key"),
    ("signature-es256-der", "signature", "referral.submit", "es256-der", [], None, "signature-invalid", ("PROTO-3.2-4",),
     "an ES256 signature in DER instead of raw R||S"),
    ("signature-unknown-kid", "signature", "referral.submit", "unknown-kid", [], None, "key-unknown", ("PROTO-10.4-1",), "a kid not in the trust list"),
    ("signature-revoked-key", "signature", "referral.submit", "revoked-key", [], None, "key-revoked", ("PROTO-10.4-2",),
     "a key revoked before verify_at"),
    ("signature-expired-key", "signature", "referral.submit", "expired-key", [], None, "key-expired", ("PROTO-10.4-3",),
     "a key whose not_after is before verify_at"),
    ("signature-key-not-yet-valid", "signature", "referral.submit", "future-key", [], None, "key-not-yet-valid", ("PROTO-10.4-4",),
     "a key whose not_before is after verify_at"),
    ("signature-witness-key", "signature", "referral.submit", "witness-key", [], None, "key-use-mismatch", ("PROTO-10.2-1",),
     "a witness key signing a message"),
    ("profile-header-jwk", "profile", "referral.submit", "header-jwk", [], None, "header-parameter-refused", ("PROTO-3.3-2", "PROTO-3.3-3"),
     "a jwk header parameter: the key comes only from the trust list"),
    ("profile-header-crit", "profile", "referral.submit", "header-crit", [], None, "header-parameter-refused", ("PROTO-3.3-2",), "a crit header"),
    ("profile-header-b64", "profile", "referral.submit", "header-b64", [], None, "header-parameter-refused", ("PROTO-3.3-2",), "a b64 header"),
    ("profile-header-missing-kid", "profile", "referral.submit", "header-missing-kid", [], None, "header-invalid", ("PROTO-3.3-1",), "no kid"),
    ("profile-typ-receipt", "profile", "referral.submit", "typ-receipt", [], None, "typ-unexpected", ("PROTO-3.4-1",),
     "the hub receipt's typ on a message"),
    ("profile-trailing-bits", "profile", "referral.submit", "non-canonical-signature", [], None, "jws-base64url-invalid", ("PROTO-3.1-2",),
     "non-zero unused bits in the last base64url character"),
    ("profile-padding", "profile", "referral.submit", "padded-signature", [], None, "jws-base64url-invalid", ("PROTO-3.1-2",), "= padding"),
    ("profile-two-segments", "profile", "referral.submit", "two-segments", [], None, "jws-malformed", ("PROTO-3.1-1",), "two segments"),
    ("json-duplicate-member", "JSON", "referral.submit", "duplicate-member", [], None, "json-duplicate-key", ("PROTO-4.2-1",),
     "purpose twice"),
    ("json-lone-surrogate", "JSON", "referral.submit", "splice", [], ',"x":"\\ud800"', "json-lone-surrogate", ("PROTO-4.3-1",), "an unpaired surrogate"),
    ("json-nul", "JSON", "referral.submit", "splice", [], ',"x":"\\u0000"', "json-nul-character", ("PROTO-4.3-2",), "U+0000 in a string"),
    ("json-nan", "JSON", "referral.submit", "splice", [], ',"x":NaN', "json-non-finite-number", ("PROTO-4.4-1",), "NaN"),
    ("json-integer-beyond-2-53", "JSON", "referral.submit", "splice", [], ',"x":9007199254740993', "json-integer-too-large", ("PROTO-4.4-3",),
     "an integer beyond 2^53"),
    ("json-number-beyond-double", "JSON", "referral.submit", "splice", [], ',"x":1e400', "json-number-out-of-range", ("PROTO-4.4-2",), "1e400"),
    ("json-too-deep", "JSON", "referral.submit", "too-deep", [], None, "json-too-deep", ("PROTO-4.5-2",), "40 nested arrays"),
    ("json-invalid-utf8", "JSON", "referral.submit", "invalid-utf8", [], None, "json-invalid-utf8", ("PROTO-4.1-1",), "an invalid UTF-8 sequence"),
    ("json-bom", "JSON", "referral.submit", "bom", [], None, "json-invalid-utf8", ("PROTO-4.1-1",), "a byte-order mark"),
    ("json-trailing-comma", "JSON", "referral.submit", "splice", [], ',"x":[1,]', "json-syntax", ("PROTO-4.1-2",), "a trailing comma"),
    ("schema-missing-purpose", "schema", "referral.submit", "none", [["remove", "/purpose"]], None, "schema-violation", ("PROTO-5.1-1",),
     "no purpose"),
    ("schema-unknown-member", "schema", "referral.submit", "none", [["set", "/body/extra", "x"]], None, "schema-violation", ("PROTO-5.1-1",),
     "a member the schema does not define"),
    ("schema-money-as-number", "schema", "referral.submit", "none",
     [["set", "/body/household/members/0/declared_monthly_income/amount", 1640.5]], None, "schema-violation", ("PROTO-6.1-1",),
     "an amount as a JSON number"),
    ("schema-created-with-offset", "schema", "referral.submit", "none", [["set", "/created", "2026-11-28T17:30:00+08:00"]], None,
     "schema-violation", ("PROTO-5.3-1",), "created not in UTC with Z"),
    ("schema-year-1899", "schema", "referral.submit", "none", [["set", "/body/household/members/0/person/date_of_birth", "1899-12-31"]], None,
     "schema-violation", ("PROTO-5.3-3",), "a date in 1899"),
    ("schema-consent-without-reference", "schema", "referral.submit", "none", [["remove", "/legal_basis/consent_ref"]], None,
     "schema-violation", ("PROTO-5.5-1",), "a consent basis without consent_ref"),
    ("protocol-type-unknown", "protocol", "referral.submit", "none", [["set", "/type", "referral.reopen"]], None, "type-unknown",
     ("PROTO-5.1-2",), "an unregistered type"),
    ("protocol-version-2", "protocol", "referral.submit", "none", [["set", "/v", 2]], None, "version-unsupported", ("PROTO-14.1-1",), "v 2"),
    ("protocol-from-not-the-signer", "protocol", "referral.submit", "none", [["set", "/from", "MO"], ["set", "/to", "HK"]], None,
     "sender-mismatch", ("PROTO-5.1-3",), "from names another jurisdiction than the key's owner"),
    ("protocol-self-addressed", "protocol", "referral.submit", "none", [["set", "/to", "CN-GD"]], None, "self-addressed", ("PROTO-5.1-4",),
     "to equals from"),
    ("protocol-jurisdiction-unknown", "protocol", "referral.submit", "none", [["set", "/to", "TW"]], None, "jurisdiction-unknown",
     ("PROTO-2.1-1",), "to is not a registered jurisdiction"),
)


def _template(message_type: str) -> dict[str, Any]:
    return json.loads((contract_dir("schemas") / f"{message_type}.json").read_text("utf-8"))["examples"][0]


def _signer(owner: str) -> crafting.Signer:
    return signer_for(published_key(owner), owner)


def build_vectors() -> list[tuple[dict[str, Any], bytes]]:
    """Every vector: its index entry and its bytes."""
    vectors = []
    for message_type in TYPES:
        payload = _template(message_type)
        body = crafting.mutate("none", payload, _signer(payload["from"]))
        vectors.append(({"id": f"valid-{message_type}", "class": "signature", "expected": "valid", "code": None,
                         "requirements": ["PROTO-3.5-1", "PROTO-5.1-1"], "why": f"the schema example of {message_type}, signed by its sender"}, body))
    payload = _template("referral.submit")
    vectors.append(({"id": "valid-alg-eddsa", "class": "signature", "expected": "valid", "code": None, "requirements": ["PROTO-3.2-1"],
                     "why": "the legacy alg name EdDSA with an Ed25519 key"}, crafting.mutate("alg-eddsa", payload, _signer(payload["from"]))))
    for name, kind, template, mutation, edits, splice, code, requirements, why in _NEGATIVES:
        payload = crafting.apply_edits(_template(template), edits)
        body = crafting.mutate(mutation, payload, _signer("CN-GD"), splice=splice)
        vectors.append(({"id": name, "class": kind, "expected": "invalid", "code": code, "requirements": list(requirements), "why": why}, body))
    return vectors


def write_vectors(folder: Path) -> dict[str, Any]:
    """Write index.json, vectors/*.jws and keys/ (the test keys, the trust list) into `folder`; the index."""
    folder = Path(folder)
    (folder / "vectors").mkdir(parents=True, exist_ok=True)
    keys = folder / "keys"
    keys.mkdir(exist_ok=True)
    for source in (contract_dir("keys") / "test").iterdir():
        if source.suffix in (".jwk", ".json", ".jws"):
            shutil.copyfile(source, keys / source.name)
    entries = []
    for entry, body in build_vectors():
        (folder / "vectors" / f"{entry['id']}.jws").write_bytes(body)
        entries.append(dict(entry, file=f"vectors/{entry['id']}.jws", digest=crafting.digest(body)))
    index = {"format": VECTORS_FORMAT, "verify_at": VERIFY_AT, "trust_list": "keys/trust-list.json",
             "how": "Verify each vector as a receiver verifies a message (docs/protocol.md §3 to §5, §10.4) with the trust list, "
                    "judging keys at verify_at. expected valid: it must verify; invalid: it must be refused with code "
                    "(a verifier that reports codes) or at least refused. The .key.jwk files are test-only private keys.",
             "vectors": entries}
    (folder / "index.json").write_text(json.dumps(index, indent=1, ensure_ascii=False) + "\n", "utf-8")
    return index
