"""The trust list: who owns which key, for what, and when (docs/protocol.md §10).

A trust list names the registered jurisdictions and every party's public keys, each
with its owner, use, algorithm, validity window and status. Key ids are unique across
the whole list (PROTO-10.3-2). The hub distributes it signed (`gba-trust-list+jws`,
by a hub key of use `receipt`); `TrustList.key_for` is the one place where a `kid`
becomes a key fit for a given use at a given time (PROTO-10.2-1, PROTO-10.4-1..4).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any, Literal, Mapping, Sequence

import jsonschema_rs

from gateway.contract import contract_dir
from gateway.protocol import jws, strict_json
from gateway.protocol.errors import ProtocolError
from gateway.protocol.keys import PrivateKey, PublicKey, public_key_from_jwk
from gateway.protocol.timestamps import format_timestamp, parse_timestamp

KeyUse = Literal["message", "receipt", "checkpoint", "witness"]
KEY_USES: tuple[KeyUse, ...] = ("message", "receipt", "checkpoint", "witness")
HUB = "hub"
"""Owner name of the hub's own keys; the hub is not a jurisdiction."""

USE_OF_TYP: Mapping[str, KeyUse] = MappingProxyType(
    {
        "gba-case+jws": "message",
        "gba-request+jws": "message",
        "gba-receipt+jws": "receipt",
        "gba-attestation+jws": "receipt",
        "gba-trust-list+jws": "receipt",
    }
)
"""Which key use may sign which JWS type (PROTO-10.2-1)."""


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """One key of the trust list."""

    kid: str
    owner: str
    use: KeyUse
    public: PublicKey
    not_before: datetime
    not_after: datetime
    revoked_at: datetime | None
    test_key: bool

    @property
    def status(self) -> str:
        return "revoked" if self.revoked_at is not None else "active"

    def check_valid_at(self, at: datetime) -> None:
        """Refuse unless the key may sign at `at` (PROTO-10.4-2..4).

        A key revoked at R still verifies what was accepted before R: audits and
        deliveries pass the acceptance time, ingress passes the present.
        """
        if self.revoked_at is not None and at >= self.revoked_at:
            raise ProtocolError("key-revoked", where="kid")
        if at < self.not_before:
            raise ProtocolError("key-not-yet-valid", where="kid")
        if at >= self.not_after:
            raise ProtocolError("key-expired", where="kid")

    def to_document(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "kid": self.kid,
            "owner": self.owner,
            "use": self.use,
            "alg": self.public.alg,
            "jwk": self.public.to_jwk(),
            "not_before": format_timestamp(self.not_before),
            "not_after": format_timestamp(self.not_after),
            "status": self.status,
            "test_key": self.test_key,
        }
        if self.revoked_at is not None:
            entry["revoked_at"] = format_timestamp(self.revoked_at)
        return entry


@dataclass(frozen=True, slots=True)
class TrustList:
    """A parsed, checked trust list (§10.3)."""

    sequence: int
    issued: datetime
    mode: Literal["test", "production"]
    names: Mapping[str, Mapping[str, str]]
    keys: Mapping[str, KeyRecord]

    @property
    def jurisdictions(self) -> frozenset[str]:
        return frozenset(self.names)

    def key_for(self, kid: str, typ: str, at: datetime) -> KeyRecord:
        """The key `kid`, if it may sign a JWS of type `typ` at time `at` (§10.2, §10.4)."""
        record = self.key_for_typ(kid, typ)
        record.check_valid_at(at)
        return record

    def key_for_typ(self, kid: str, typ: str) -> KeyRecord:
        """The key `kid`, if its use and owner fit `typ` (PROTO-10.4-1, PROTO-10.2-1); validity not checked.

        For hub statements, whose reference time is inside the signed payload (PROTO-9.1-4).
        """
        record = self.keys.get(kid)
        if record is None:
            raise ProtocolError("key-unknown", where="kid")
        use = USE_OF_TYP.get(typ)
        if use != record.use or (use == "receipt") != (record.owner == HUB):
            raise ProtocolError("key-use-mismatch", f"Key {kid} is registered for use {record.use}", where="kid")
        return record

    @classmethod
    def from_document(cls, document: Any, require_production: bool = False) -> TrustList:
        """Check a trust-list document against §10.3 and the JWK profile (§10.1).

        A consumer configured for production passes `require_production` (PROTO-10.5-2).
        """
        error = next(_document_validator().iter_errors(document), None)
        if error is not None:
            raise ProtocolError("trust-list-invalid", where=_pointer(error.instance_path))
        if require_production and document["mode"] != "production":
            raise ProtocolError("trust-list-invalid", "A production consumer accepts only a production list", where="/mode")
        names = {code: MappingProxyType(dict(entry["name"])) for code, entry in document["jurisdictions"].items()}
        keys: dict[str, KeyRecord] = {}
        public_keys: set[str] = set()
        for index, entry in enumerate(document["keys"]):
            where = f"/keys/{index}"
            if entry["kid"] in keys:
                raise ProtocolError("kid-duplicate", where=f"{where}/kid")
            public = public_key_from_jwk(entry["jwk"], where=f"{where}/jwk")
            problem = _entry_problem(entry, public, names, document["mode"])
            if problem is not None:
                member, detail = problem
                raise ProtocolError("trust-list-invalid", detail, where=f"{where}/{member}")
            fingerprint = json.dumps({k: v for k, v in public.to_jwk().items() if k not in ("kid", "alg")}, sort_keys=True)
            if fingerprint in public_keys:
                raise ProtocolError("trust-list-invalid", "A public key is listed twice (PROTO-10.2-2)", where=f"{where}/jwk")
            public_keys.add(fingerprint)
            keys[entry["kid"]] = KeyRecord(
                kid=entry["kid"],
                owner=entry["owner"],
                use=entry["use"],
                public=public,
                not_before=_timestamp(entry, "not_before", where),
                not_after=_timestamp(entry, "not_after", where),
                revoked_at=_timestamp(entry, "revoked_at", where) if "revoked_at" in entry else None,
                test_key=entry["test_key"],
            )
        return cls(
            sequence=document["sequence"],
            issued=_timestamp(document, "issued", ""),
            mode=document["mode"],
            names=MappingProxyType(names),
            keys=MappingProxyType(keys),
        )

    def to_document(self) -> dict[str, Any]:
        return {
            "v": 1,
            "issued": format_timestamp(self.issued),
            "sequence": self.sequence,
            "mode": self.mode,
            "jurisdictions": {code: {"name": dict(name)} for code, name in self.names.items()},
            "keys": [record.to_document() for record in self.keys.values()],
        }


def allowed_uses(owner: str) -> tuple[KeyUse, ...]:
    """The uses a key of `owner` may have (PROTO-10.2-3)."""
    return ("receipt", "checkpoint") if owner == HUB else ("message", "witness")


ED25519_ONLY_USES: tuple[KeyUse, ...] = ("checkpoint", "witness")
"""Uses whose signatures are C2SP notes, which are Ed25519 only (PROTO-10.2-4)."""


def _entry_problem(entry: Mapping[str, Any], public: PublicKey, names: Mapping[str, Any], mode: str) -> tuple[str, str] | None:
    """The member and reason that make one key entry break §10.2-§10.3, or None."""
    owner, use = entry["owner"], entry["use"]
    if owner != HUB and owner not in names:
        return "owner", "A key's owner is not a jurisdiction of the list"
    if use not in allowed_uses(owner):
        return "use", "The hub's keys are for receipt or checkpoint, a jurisdiction's for message or witness (PROTO-10.2-3)"
    if use in ED25519_ONLY_USES and entry["alg"] != "Ed25519":
        return "alg", "Checkpoint and witness keys are Ed25519 keys (PROTO-10.2-4)"
    if public.kid != entry["kid"] or public.alg != entry["alg"]:
        return "jwk", "The JWK's kid and algorithm must equal the entry's"
    if _timestamp(entry, "not_after", "") <= _timestamp(entry, "not_before", ""):
        return "not_after", "not_after must be later than not_before"
    if mode == "production" and entry["test_key"]:
        return "test_key", "A production trust list holds no test key"
    return None


def check_hub_receipt_key(trust: TrustList, hub_key: PrivateKey) -> KeyRecord:
    """The list's entry for `hub_key`, if the list holds that very key as the hub's receipt key; else ValueError.

    Another key under the entry's kid (or another algorithm) signs receipts, attestations and trust lists
    that every consumer refuses.
    """
    record = trust.keys.get(hub_key.kid)
    if record is None:
        raise ValueError(f"the trust list holds no key {hub_key.kid}")
    if record.owner != HUB or record.use != "receipt":
        raise ValueError(f"the trust list holds {hub_key.kid} as a key of {record.owner} for use {record.use!r}, "
                         f"not as the hub's receipt key")
    if record.public.to_jwk() != hub_key.public().to_jwk():
        raise ValueError(f"the key is not the one the trust list holds as {hub_key.kid} (its public key or algorithm differs)")
    return record


def sign_trust_list(trust: TrustList, hub_key: PrivateKey) -> bytes:
    """The trust list as a `gba-trust-list+jws`, signed by the hub's receipt key (which the list must hold)."""
    check_hub_receipt_key(trust, hub_key)
    return jws.sign_compact(strict_json.dumps(trust.to_document()), hub_key, "gba-trust-list+jws")


def verify_signed_trust_list(compact: bytes, anchor: TrustList, at: datetime) -> TrustList:
    """The list in `compact`, if `anchor` (the list held now) may be replaced by it (PROTO-10.3-3, -4).

    It must be signed by a hub receipt key of `anchor`, valid at `at`; it must not go
    back: a lower `sequence`, or the same one with other contents, is refused; and a
    production anchor accepts only a production list (PROTO-10.5-2).
    """
    parsed = jws.parse_compact(compact, "gba-trust-list+jws")
    record = anchor.key_for(parsed.kid, parsed.typ, at)
    payload = jws.verify_signature(parsed, record.public)
    candidate = TrustList.from_document(strict_json.loads(payload), require_production=anchor.mode == "production")
    if candidate.sequence < anchor.sequence or (
        candidate.sequence == anchor.sequence and candidate.to_document() != anchor.to_document()
    ):
        raise ProtocolError("trust-list-invalid", "The list is older than the one held", where="/sequence")
    return candidate


def load_trust_list(data: bytes, require_production: bool = False) -> TrustList:
    """A trust list from its JSON document (a local trust decision: no signature to check)."""
    return TrustList.from_document(strict_json.loads(data, part="trust list"), require_production)


def _timestamp(document: Mapping[str, Any], member: str, where: str) -> datetime:
    try:
        return parse_timestamp(document[member])
    except ValueError:
        raise ProtocolError("trust-list-invalid", "Not a timestamp of the protocol's form", where=f"{where}/{member}") from None


@functools.cache
def _document_validator() -> jsonschema_rs.Validator:
    # jsonschema-rs, as for messages: ECMA-262 patterns (a trailing newline does not
    # match `$`) and asserted formats.
    schema = json.loads((contract_dir("keys") / "trust-list.schema.json").read_text("utf-8"))
    return jsonschema_rs.validator_for(schema, validate_formats=True)


def _pointer(path: Sequence[str | int]) -> str:
    """The JSON Pointer of `path`, cut before the first member name chosen by the list's author."""
    if path and path[0] == "jurisdictions":
        path = path[:1]
    return "".join(f"/{str(part).replace('~', '~0').replace('/', '~1')}" for part in path)
