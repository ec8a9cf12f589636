"""The OpenAPI 3.1 description of the hub's HTTP binding (docs/protocol.md §12).

The hub serves it at `GET /openapi.json` for its own public base URL; a copy for an
example base URL ships as docs/openapi.json:

    python -m gateway.hub.openapi > docs/openapi.json

The document is built, not written by hand. The problem responses come from the one
error catalogue (`gateway.protocol.errors.CATALOGUE`, §11.2): the problem schema's
`code` enum is every catalogue code, and each operation answers the codes whose
requirement lies in the sections it names in `_OPERATIONS` (a code added to §3 is
answered by every operation that checks a JWS, without an edit here). The message
types and the JSON Schemas a message is validated against come from the installed
schemas, named by their `$id`. tests/hub/test_openapi.py checks that the document is
valid OpenAPI 3.1, that its operations are the hub's routes, that every catalogue code
has a place, that the running hub's answers match it, and that docs/openapi.json is
current.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from gateway import __version__
from gateway.config import MODES
from gateway.protocol.errors import CATALOGUE, PROBLEM_TYPE_PREFIX, Code, ProtocolError
from gateway.protocol.jws import MAX_COMPACT_BYTES
from gateway.protocol.request_proof import REQUEST_TYP, WINDOW_SECONDS
from gateway.protocol.schema import SCHEMA_BASE, load_message_schemas

OPENAPI_VERSION = "3.1.1"
OPENAPI_PATH = "/openapi.json"
EXAMPLE_SERVER = "https://hub.gba-case-gateway.example"
"""The base URL named by docs/openapi.json; the served document names the hub's configured one."""

# The same strings as gateway.hub.http (which imports this module, so they cannot be
# imported from there); tests/hub/test_openapi.py checks that they agree.
JOSE = "application/jose"
PROBLEM = "application/problem+json"
JSON = "application/json"
BULK = "application/vnd.gba.jose-lines"
NDJSON = "application/x-ndjson"
REQUEST_PROOF_HEADER = "GBA-Request-Proof"
SECURITY_SCHEME = "requestProof"

_REF = "#/components/schemas/"


# -- which catalogue codes an operation answers ------------------------------------
#
# A selector names requirements of docs/protocol.md: "3" is every requirement of §3
# (PROTO-3.*), "9.4" every one of §9.4, and "12.1-4" exactly PROTO-12.1-4.

_JWS_AND_KEY = ("3", "4", "10.2", "10.4")
"""A compact JWS under §3 and §4, its key looked up and judged under §10."""
_FAILURE = ("12.1-5",)
"""Every resource may fail (internal-error)."""
_DATABASE = ("12.1-4",)
"""A resource that reads the database answers unavailable when it cannot."""
_LIMITED = ("12.8-4",)
"""Every request spends its address's budget (rate-limited)."""
_CALLER = ("12.8-2", "12.8-3", "12.8-4")
"""A request that names its caller: mutual TLS checks it, and it spends the caller's budget."""
_BODY = ("12.8-5",)
"""A request with a body: the body deadline, and its declared length checked before reading."""

UNROUTED = ("12.1-2", "12.1-3")
"""Codes for requests that match no operation: a path the hub does not have, a method a path does not have."""
NOT_ANSWERED_HERE = ("9.2", "10.1", "10.3")
"""Codes of checks no resource of this binding makes yet: attestations are checked by
receivers of deliveries (`gateway delivery verify`; the delivery issue adds the HTTP
resources), public keys and trust lists when a trust list is loaded (`gateway keys`,
`gateway trust-list verify`)."""


def _selected(requirement: str, selectors: Iterable[str]) -> bool:
    """Whether `requirement` (PROTO-12.1-4) is named by one of `selectors` ("12", "12.1", "12.1-4")."""
    name = requirement.removeprefix("PROTO-")
    section = name.rpartition("-")[0]
    for selector in selectors:
        if "-" in selector:
            if name == selector:
                return True
        elif section == selector or section.startswith(selector + "."):
            return True
    return False


def codes_for(selectors: Iterable[str]) -> list[Code]:
    """The catalogue entries named by `selectors`, in catalogue order."""
    chosen = tuple(selectors)
    return [entry for entry in CATALOGUE.values() if _selected(entry.requirement, chosen)]


# -- the operations ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Operation:
    """One route of gateway/hub/http.py and what it answers."""

    method: str
    path: str
    operation_id: str
    tag: str
    summary: str
    description: str
    public: bool
    answers: tuple[str, ...]
    """Selectors of the catalogue codes it may refuse with."""
    success: tuple[int, str, str, dict[str, Any]]
    """Status, media type, description and schema of the answer."""
    example_path: str


_MESSAGE_ID_EXAMPLE = "01a2217d-75c0-7754-90bd-7b93e6fa7d18"


def _operations() -> tuple[Operation, ...]:
    return (
        Operation(
            method="post",
            path="/v1/messages",
            operation_id="postMessage",
            tag="messages",
            summary="Send a signed message to the hub",
            description=(
                "The body is the message: a compact JWS of `typ` `gba-case+jws` (docs/protocol.md §3), "
                "exactly as signed, sent as `application/jose` (PROTO-12.2-1). The request is public: "
                "the message is its own authentication, its signature checked against the trust list (§10). "
                "The hub answers `202` with its signed hub receipt (§9.1) once the acceptance is durable "
                "(PROTO-12.1-1); resending the identical bytes, at any later time, gets the same receipt "
                "with `replayed` true (§8.2). Any refusal is a problem (§11)."
            ),
            public=True,
            answers=("2", *_JWS_AND_KEY, "5", "6", "7", "8", "9.4", "12.2", "14", *_CALLER, *_BODY, *_DATABASE, *_FAILURE),
            success=(202, JSON, "Accepted (or a resend of an accepted message): the hub receipt.", {"$ref": _REF + "Acceptance"}),
            example_path="/v1/messages",
        ),
        Operation(
            method="post",
            path="/v1/messages/bulk",
            operation_id="postMessagesBulk",
            tag="messages",
            summary="Send many signed messages in one request",
            description=(
                "The body is lines, each one compact JWS exactly as signed, sent as `application/vnd.gba.jose-lines` "
                "(docs/protocol.md §12.9). Every line is judged, ledgered and receipted exactly as `POST /v1/messages` "
                "judges it alone, in the order of the lines (PROTO-12.9-1). The hub answers `200` once every accepted "
                "line is durable, with one JSON object a line (`application/x-ndjson`), in order: the line's `status` "
                "and either its hub receipt or its problem (PROTO-12.9-2). Lines answered `unavailable` or "
                "`rate-limited` are resent later with identical bytes (PROTO-12.9-4). The problems listed below refuse "
                "the request as a whole, judging no line (PROTO-12.9-3)."
            ),
            public=True,
            answers=("3.1-1", "4.5-1", "12.2-1", "12.8-2", "12.8-4", *_BODY, *_DATABASE, *_FAILURE),
            success=(200, NDJSON, "One result a line, in the order of the lines; each line of the answer is a BulkResult.",
                     {"$ref": _REF + "BulkResult"}),
            example_path="/v1/messages/bulk",
        ),
        Operation(
            method="get",
            path="/v1/messages/{message_id}",
            operation_id="getMessage",
            tag="messages",
            summary="The sender's view of a message it sent",
            description=(
                "Answers only the jurisdiction that sent the message: the owner of the key that signed the "
                f"request proof (`{REQUEST_PROOF_HEADER}`, §9.5). Anyone else, and any id the hub does not "
                "know (including one that is not a UUIDv7), gets `not-found`, so that the existence of another "
                "party's message is never revealed (PROTO-12.1-2)."
            ),
            public=False,
            answers=(*_JWS_AND_KEY, "9.5", "12.1-2", *_CALLER, *_DATABASE, *_FAILURE),
            success=(200, JSON, "The sender's view of its message.", {"$ref": _REF + "MessageView"}),
            example_path=f"/v1/messages/{_MESSAGE_ID_EXAMPLE}",
        ),
        Operation(
            method="get",
            path="/v1/inbox",
            operation_id="getInbox",
            tag="delivery",
            summary="Fetch the caller's deliveries (pull), long-polling",
            description=(
                "The deliveries (§9.3) ready for the caller — the owner of the request proof's key — in ledger order, "
                "each leased to it for the configured lease, and a cursor (PROTO-12.6-1). `after` acknowledges the "
                "receipts delivered up to that cursor (PROTO-12.6-2); messages other than receipts are acknowledged "
                "with `POST /v1/receipts`. With `wait` the hub answers as soon as a delivery is ready, or empty when "
                "the wait ends or the hub shuts down."
            ),
            public=False,
            answers=(*_JWS_AND_KEY, "9.5", "12.6-4", *_CALLER, *_DATABASE, *_FAILURE),
            success=(200, JSON, "Deliveries and the new cursor.", {"$ref": _REF + "Inbox"}),
            example_path="/v1/inbox",
        ),
        Operation(
            method="post",
            path="/v1/receipts",
            operation_id="postReceipt",
            tag="delivery",
            summary="Acknowledge a pulled delivery with a receipt",
            description=(
                "The body is one receipt (§6.11), a compact JWS sent as `application/jose`, signed by the caller "
                "(PROTO-12.6-3). The hub checks and ledgers it like any message and answers as `POST /v1/messages`: "
                "`202` with its hub receipt; the identical bytes again get the same answer with `replayed` true."
            ),
            public=False,
            answers=(*_JWS_AND_KEY, "5", "6", "7", "8", "9.4", "9.5", "12.2", "12.6-3", "14", *_CALLER, *_BODY, *_DATABASE, *_FAILURE),
            success=(202, JSON, "Accepted (or a resend of an accepted receipt): the hub receipt.", {"$ref": _REF + "Acceptance"}),
            example_path="/v1/receipts",
        ),
        Operation(
            method="get",
            path="/v1/ledger/checkpoint",
            operation_id="getCheckpoint",
            tag="ledger",
            summary="The latest signed checkpoint, with the witnesses' cosignatures",
            description=(
                "A C2SP tlog-checkpoint signed note of the ledger, signed with the hub's checkpoint key, followed by "
                "the cosignature lines of the witnesses that cosigned it so far (docs/protocol.md §13.4, §13.5); "
                "`?size=N` for an earlier one. Verify it with keys from your own configuration (PROTO-13.5-3)."
            ),
            public=True,
            answers=("12.1-2", "12.6-4", *_LIMITED, *_DATABASE, *_FAILURE),
            success=(200, "text/plain", "The signed note, cosignature lines appended.", {"type": "string"}),
            example_path="/v1/ledger/checkpoint",
        ),
        Operation(
            method="get",
            path="/v1/ledger/proof/consistency",
            operation_id="getConsistencyProof",
            tag="ledger",
            summary="An RFC 9162 consistency proof between two tree heads",
            description="Public. `from` and `to` are tree sizes of stored heads, 1 <= from <= to (§13.6).",
            public=True,
            answers=("12.1-2", "12.6-4", *_LIMITED, *_DATABASE, *_FAILURE),
            success=(200, JSON, "The proof, hashes in base64.", {"type": "object"}),
            example_path="/v1/ledger/proof/consistency",
        ),
        Operation(
            method="get",
            path="/v1/ledger/entries",
            operation_id="getLedgerEntries",
            tag="ledger",
            summary="The ledger entries the caller is a party to",
            description=(
                "From index `start`, at most `limit` entries are read and those the caller is a party to are "
                "returned, with their canonical bytes in base64 and the index to continue from (PROTO-13.6-1)."
            ),
            public=False,
            answers=(*_JWS_AND_KEY, "9.5", "12.6-4", *_CALLER, *_DATABASE, *_FAILURE),
            success=(200, JSON, "Entries and the next index.", {"type": "object"}),
            example_path="/v1/ledger/entries",
        ),
        Operation(
            method="get",
            path="/v1/ledger/proof/inclusion",
            operation_id="getInclusionProof",
            tag="ledger",
            summary="An entry the caller is a party to, with its inclusion proof",
            description=(
                "The entry at `index` and its RFC 9162 inclusion proof against the tree head of `size`; "
                "`not-found` when the caller is not a party to the entry (PROTO-13.6-1)."
            ),
            public=False,
            answers=(*_JWS_AND_KEY, "9.5", "12.1-2", "12.6-4", *_CALLER, *_DATABASE, *_FAILURE),
            success=(200, JSON, "The entry, the root and the proof, in base64.", {"type": "object"}),
            example_path="/v1/ledger/proof/inclusion",
        ),
        Operation(
            method="get",
            path="/v1/about",
            operation_id="getAbout",
            tag="about",
            summary="What this hub is",
            description="The implementation's name and version, the protocol version and the hub's mode (`test` or `production`, §10.5).",
            public=True,
            answers=(*_LIMITED, *_FAILURE),
            success=(200, JSON, "The hub's name, version, protocol version and mode.", {"$ref": _REF + "About"}),
            example_path="/v1/about",
        ),
        Operation(
            method="get",
            path="/v1/trust-list",
            operation_id="getTrustList",
            tag="about",
            summary="Every party's keys, signed by the hub",
            description=(
                "The key registry as a `gba-trust-list+jws` (docs/protocol.md §10.3), signed by a hub `receipt` "
                "key; its `sequence` is the registry's version. Receivers verify senders end to end with it and "
                "install a new one only if it verifies with the list they hold (PROTO-10.3-3)."
            ),
            public=True,
            answers=(*_LIMITED, *_FAILURE),
            success=(200, "application/jose", "The signed trust list (compact JWS).", {"type": "string"}),
            example_path="/v1/trust-list",
        ),
        Operation(
            method="get",
            path="/healthz",
            operation_id="getHealth",
            tag="operations",
            summary="Liveness: the process runs",
            description="Answers `200` while the process runs; it does not touch the database.",
            public=True,
            answers=(*_LIMITED, *_FAILURE),
            success=(200, JSON, "The process runs.", {"$ref": _REF + "Health"}),
            example_path="/healthz",
        ),
        Operation(
            method="get",
            path="/readyz",
            operation_id="getReady",
            tag="operations",
            summary="Readiness: the process can reach its database",
            description="Answers `200` when the process can reach its database, `unavailable` (`503`) when it cannot.",
            public=True,
            answers=(*_LIMITED, *_DATABASE, *_FAILURE),
            success=(200, JSON, "The database answers.", {"$ref": _REF + "Ready"}),
            example_path="/readyz",
        ),
        Operation(
            method="get",
            path="/metrics",
            operation_id="getMetrics",
            tag="operations",
            summary="Prometheus metrics",
            description=(
                "Counters of this process (acceptances, refusals by catalogue code) and gauges read from the "
                "database (ledger size, messages, outbox), in the Prometheus text exposition format. Public; "
                "operators restrict it at the network edge (§12.1)."
            ),
            public=True,
            answers=(*_LIMITED, *_DATABASE, *_FAILURE),
            success=(200, "text/plain", "Prometheus text exposition format (version 0.0.4).", {"type": "string"}),
            example_path="/metrics",
        ),
        Operation(
            method="get",
            path=OPENAPI_PATH,
            operation_id="getOpenApi",
            tag="about",
            summary="This document",
            description="The OpenAPI 3.1 description of the hub's HTTP binding, with this hub's public base URL as its server.",
            public=True,
            answers=(*_LIMITED, *_FAILURE),
            success=(200, JSON, "An OpenAPI 3.1 document.", {"type": "object"}),
            example_path=OPENAPI_PATH,
        ),
    )


OPERATIONS: tuple[Operation, ...] = _operations()


# -- schemas ---------------------------------------------------------------------------


def _schema_ids() -> dict[str, str]:
    """The `$id` of every installed message schema, by file name."""
    return {name: document["$id"] for name, document in load_message_schemas().documents.items()}


def _defs_ref(name: str) -> str:
    return f"{SCHEMA_BASE}defs.json#/$defs/{name}"


def _components_schemas() -> dict[str, Any]:
    schemas = load_message_schemas()
    statuses = sorted({entry.status for entry in CATALOGUE.values()})
    return {
        "Problem": {
            "type": "object",
            "title": "Problem details (RFC 9457)",
            "description": (
                "Every refusal (docs/protocol.md §11.1). Clients act on `code`, never on `title` or `detail` "
                "(PROTO-11.1-3). A problem never contains a value taken from the refused input (PROTO-11.1-2). "
                "Consumers ignore members they do not know (RFC 9457 §3.2)."
            ),
            "required": ["type", "title", "status", "detail", "code", "requirement"],
            "properties": {
                "type": {
                    "type": "string",
                    "format": "uri",
                    "pattern": "^" + PROBLEM_TYPE_PREFIX.replace(".", "\\.") + "[a-z0-9]+(-[a-z0-9]+)*$",
                    "description": f"`{PROBLEM_TYPE_PREFIX}` followed by the code: a tag URI, never dereferenced.",
                },
                "title": {"type": "string", "description": "The code's title from the catalogue (§11.2), verbatim."},
                "status": {"type": "integer", "enum": statuses, "description": "The code's HTTP status from the catalogue; the same as the answer's."},
                "detail": {
                    "type": "string",
                    "description": "A fixed sentence written by the hub, possibly more specific than the title; never built from input.",
                },
                "code": {
                    "type": "string",
                    "enum": list(CATALOGUE),
                    "description": "The catalogue code (docs/protocol.md §11.2): the one member a client acts on.",
                },
                "requirement": {
                    "type": "string",
                    "pattern": "^PROTO-[0-9]+(\\.[0-9]+)*-[0-9]+$",
                    "description": "The requirement id of the code (§11.2).",
                },
                "where": {
                    "type": "string",
                    "description": (
                        "Optional: where the fault is, never what it is. A JSON Pointer into the payload "
                        "(`/body/household/members/0/person`), a header parameter name (`alg`, `kid`, `typ`, or a "
                        "refused one), a segment or document name (`header`, `payload`, `signature`, `trust list`), "
                        "or a JSON Pointer into the trust list."
                    ),
                },
                "instance": {"type": "string", "format": "uri-reference", "description": "Optional: the request's path."},
            },
        },
        "Uuid7": {
            "type": "string",
            "pattern": "^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$",
            "description": f"A lowercase UUIDv7: a message or case id (§5.2; {_defs_ref('uuid7')}).",
            "examples": [_MESSAGE_ID_EXAMPLE],
        },
        "Digest": {
            "type": "string",
            "pattern": "^[0-9a-f]{64}$",
            "description": f"SHA-256 of the compact JWS exactly as received, 64 lowercase hex characters (§5.6; {_defs_ref('digest')}).",
        },
        "Jurisdiction": {
            "type": "string",
            "pattern": "^[A-Z]{2}(-[A-Z0-9]{1,3})?$",
            "description": f"A jurisdiction code (§2.1; {_defs_ref('jurisdiction')}).",
            "examples": ["CN-GD", "HK", "MO"],
        },
        "Timestamp": {
            "type": "string",
            "format": "date-time",
            "description": f"An RFC 3339 date-time in UTC (§5.3; {_defs_ref('timestamp')}).",
        },
        "CompactJws": {
            "type": "string",
            "pattern": "^[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+$",
            "maxLength": MAX_COMPACT_BYTES,
            "description": "A JWS in compact serialization: three canonical base64url segments (§3.1), at most 262144 bytes (PROTO-4.5-1).",
        },
        "Acceptance": {
            "type": "object",
            "description": "The answer to an accepted message (PROTO-12.1-1).",
            "required": ["message_id", "hub_receipt", "replayed"],
            "additionalProperties": False,
            "properties": {
                "message_id": {"$ref": _REF + "Uuid7"},
                "hub_receipt": {
                    "$ref": _REF + "CompactJws",
                    "description": "The hub receipt (§9.1): a `gba-receipt+jws` signed by a hub `receipt` key. Verify it before regarding the message as accepted (PROTO-9.1-2).",
                },
                "replayed": {"type": "boolean", "description": "True when the identical bytes had been accepted before (§8.2)."},
            },
        },
        "BulkResult": {
            "type": "object",
            "description": "The result of one line of a bulk body (PROTO-12.9-2): an acceptance or a problem.",
            "required": ["line", "status"],
            "additionalProperties": False,
            "properties": {
                "line": {"type": "integer", "minimum": 1, "description": "The line's number in the request, from 1."},
                "status": {"type": "integer", "description": "What `POST /v1/messages` would answer for this line alone."},
                "message_id": {"$ref": _REF + "Uuid7"},
                "hub_receipt": {"$ref": _REF + "CompactJws"},
                "replayed": {"type": "boolean"},
                "problem": {"$ref": _REF + "Problem"},
            },
            "oneOf": [
                {"required": ["message_id", "hub_receipt", "replayed"], "properties": {"status": {"const": 202}}},
                {"required": ["problem"]},
            ],
        },
        "MessageView": {
            "type": "object",
            "description": "The sender's view of its message (PROTO-12.1-2).",
            "required": [
                "message_id", "status", "type", "to", "case", "message_digest",
                "ledger_index", "accepted_at", "hub_receipt", "receiver_receipt",
            ],
            "additionalProperties": False,
            "properties": {
                "message_id": {"$ref": _REF + "Uuid7"},
                "status": {
                    "type": "string",
                    "enum": ["accepted", "delivered", "receipted", "dead-lettered", "superseded"],
                    "description": "Where the message's delivery stands (§12.4).",
                    "examples": ["receipted"],
                },
                "type": {"type": "string", "enum": list(schemas.types), "description": "The message type (§6)."},
                "to": {"$ref": _REF + "Jurisdiction"},
                "case": {"$ref": _REF + "Uuid7"},
                "message_digest": {"$ref": _REF + "Digest"},
                "ledger_index": {"type": "integer", "minimum": 0, "description": "The ledger index of the acceptance (§13)."},
                "accepted_at": {"$ref": _REF + "Timestamp"},
                "hub_receipt": {"$ref": _REF + "CompactJws", "description": "The stored hub receipt (§9.1)."},
                "receiver_receipt": {
                    "type": ["string", "null"],
                    "description": "The receiver's receipt (§9.4) once there is one, else null.",
                },
            },
        },
        "Inbox": {
            "type": "object",
            "description": "An answer of GET /v1/inbox (PROTO-12.6-1).",
            "required": ["deliveries", "cursor"],
            "additionalProperties": False,
            "properties": {
                "deliveries": {
                    "type": "array",
                    "description": "Deliveries (§9.3) in ledger order.",
                    "items": {
                        "type": "object",
                        "required": ["message", "attestation", "local_view"],
                        "additionalProperties": False,
                        "properties": {
                            "message": {"$ref": _REF + "CompactJws"},
                            "attestation": {"$ref": _REF + "CompactJws"},
                            "local_view": {"type": "object", "description": "The receiver's local view (§9.3)."},
                        },
                    },
                },
                "cursor": {"type": "integer", "minimum": -1, "description": "Send it back as `after` (PROTO-12.6-2)."},
            },
        },
        "About": {
            "type": "object",
            "required": ["name", "version", "protocol", "mode"],
            "properties": {
                "name": {"type": "string", "examples": ["GBA Case Gateway"]},
                "version": {"type": "string", "description": "The implementation's version.", "examples": [__version__]},
                "protocol": {"const": 1, "description": "The protocol version (§14)."},
                "mode": {"type": "string", "enum": list(MODES), "description": "`test` accepts the published test keys; `production` refuses them (§10.5)."},
            },
        },
        "Health": {"type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}}},
        "Ready": {"type": "object", "required": ["status"], "properties": {"status": {"const": "ready"}}},
    }


def _message_body_description() -> str:
    ids = _schema_ids()
    types = load_message_schemas().types
    per_type = "\n".join(f"- `{name}`: {ids[name + '.json']}" for name in types)
    return (
        f"A compact JWS of `typ` `gba-case+jws` (§3), as the whole body, exactly as signed (PROTO-12.2-1); "
        f"any other media type is refused with `media-type-unsupported`, a larger body with `message-too-large`.\n\n"
        f"Its payload is a message of protocol v1 (§5, §6), I-JSON under §4. It validates against the JSON Schema "
        f"{ids['message.json']}, which applies the envelope, {ids['envelope.json']}, and the schema of its `type` "
        f"(shared definitions in {ids['defs.json']}):\n\n{per_type}\n\n"
        f"The schemas ship with the gateway (`schemas/`); their `$id`s are names, never fetched."
    )


_PROOF_DESCRIPTION = (
    f"A signed request proof (docs/protocol.md §9.5), modelled on DPoP (RFC 9449): a compact JWS of `typ` "
    f"`{REQUEST_TYP}` signed by a `message` key of the calling jurisdiction, valid at the hub's clock "
    f"(PROTO-9.5-6); its owner is the caller. Its payload has exactly these members (PROTO-9.5-2): `htm`, the "
    f"request's method in uppercase; `htu`, the hub's public base URL (this document's server, without a trailing "
    f"`/`) followed by the request path as sent, without query or fragment; `iat`, integer seconds since the epoch, "
    f"at most {WINDOW_SECONDS} s from the hub's clock; `jti`, a fresh lowercase UUIDv7, never used before by the "
    f"caller; `body_sha256`, the SHA-256 of the exact body bytes as 64 hex characters, or null for an empty body. "
    f"The hub refuses a missing proof with `request-proof-missing`, a malformed payload with `request-proof-invalid`, "
    f"one that does not match the request with `request-proof-mismatch`, an `iat` outside the window with "
    f"`request-proof-stale` and a `jti` used before with `request-proof-replayed`; the JWS itself and "
    f"its key are checked as for messages (§3, §4, §10)."
)


def _info_description() -> str:
    unrouted = " or ".join(f"`{e.code}` ({e.status}: {e.title})" for e in codes_for(UNROUTED))
    elsewhere = ", ".join(f"`{e.code}`" for e in codes_for(NOT_ANSWERED_HERE))
    return (
        "The HTTP binding of the GBA Case Gateway hub (docs/protocol.md §12). The protocol document is normative; "
        "this description is generated from the hub's routes and its error catalogue "
        "(`python -m gateway.hub.openapi`).\n\n"
        "Every refusal is an RFC 9457 problem (`application/problem+json`, §11.1) naming one code of the "
        "catalogue (§11.2) with that code's status; clients act on `code`. Each operation lists the codes it "
        f"can answer, grouped by status. A request that matches no operation (a path the hub does not have, or a method the path does not have) is answered {unrouted}. "
        f"The codes {elsewhere} are checked outside these resources (deliveries, trust lists).\n\n"
        f"Public resources need no authentication; the others carry a request proof in `{REQUEST_PROOF_HEADER}` "
        "(§9.5, the `requestProof` security scheme)."
    )


# -- responses -------------------------------------------------------------------------


def _problem_responses(operation: Operation) -> dict[str, Any]:
    by_status: dict[int, list[Code]] = {}
    for entry in codes_for(operation.answers):
        by_status.setdefault(entry.status, []).append(entry)
    responses: dict[str, Any] = {}
    for status in sorted(by_status):
        entries = by_status[status]
        listing = "\n".join(f"- `{e.code}` ({e.requirement}): {e.title}" for e in entries)
        responses[str(status)] = {
            "description": f"Refused (RFC 9457 problem) with one of:\n\n{listing}",
            "content": {
                PROBLEM: {
                    "schema": {
                        "allOf": [
                            {"$ref": _REF + "Problem"},
                            {"properties": {"status": {"const": status}, "code": {"enum": [e.code for e in entries]}}},
                        ]
                    },
                    "examples": {
                        e.code: {"summary": e.title, "value": ProtocolError(e.code).problem(instance=operation.example_path)}
                        for e in entries
                    },
                }
            },
        }
    return responses


def _operation_object(operation: Operation) -> dict[str, Any]:
    status, media_type, description, schema = operation.success
    body: dict[str, Any] = {
        "operationId": operation.operation_id,
        "tags": [operation.tag],
        "summary": operation.summary,
        "description": operation.description,
        "security": [] if operation.public else [{SECURITY_SCHEME: []}],
    }
    if "{message_id}" in operation.path:
        body["parameters"] = [
            {
                "name": "message_id",
                "in": "path",
                "required": True,
                "description": "The message's `id` (a lowercase UUIDv7, §5.2). Any other value is answered `not-found`.",
                "schema": {"$ref": _REF + "Uuid7"},
            }
        ]
    if operation.method == "post" and operation.path == "/v1/messages":
        body["requestBody"] = {
            "required": True,
            "description": _message_body_description(),
            "content": {JOSE: {"schema": {"$ref": _REF + "CompactJws"}}},
        }
    if operation.method == "post" and operation.path == "/v1/messages/bulk":
        body["requestBody"] = {
            "required": True,
            "description": "Compact JWSs, one a line, each ended by a line feed (the last one's optional); at most the hub's "
                           "`bulk_max_lines` lines and `max_request_bytes` bytes (PROTO-12.9-3).",
            "content": {BULK: {"schema": {"type": "string"}}},
        }
    if operation.method == "post" and operation.path == "/v1/receipts":
        body["requestBody"] = {
            "required": True,
            "description": "One receipt (§6.11) as its compact JWS, exactly as signed.",
            "content": {JOSE: {"schema": {"$ref": _REF + "CompactJws"}}},
        }
    ledger_queries = {
        "/v1/ledger/checkpoint": (("size", "A checkpoint's tree size (default: the latest).", {"type": "integer", "minimum": 0}),),
        "/v1/ledger/proof/consistency": (
            ("from", "The smaller tree size.", {"type": "integer", "minimum": 1}),
            ("to", "The larger tree size.", {"type": "integer", "minimum": 1}),
        ),
        "/v1/ledger/entries": (
            ("start", "The first index to read.", {"type": "integer", "minimum": 0, "default": 0}),
            ("limit", "How many entries to read.", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}),
        ),
        "/v1/ledger/proof/inclusion": (
            ("index", "The entry's index.", {"type": "integer", "minimum": 0}),
            ("size", "The tree head to prove against.", {"type": "integer", "minimum": 1}),
        ),
    }
    if operation.path in ledger_queries:
        body["parameters"] = [
            {"name": name, "in": "query", "required": False, "description": text, "schema": schema}
            for name, text, schema in ledger_queries[operation.path]
        ]
    if operation.path == "/v1/inbox":
        body["parameters"] = [
            {"name": name, "in": "query", "required": False, "description": text, "schema": schema}
            for name, text, schema in (
                ("after", "The cursor held: the last answer's `cursor`, -1 at first.", {"type": "integer", "minimum": -1, "default": -1}),
                ("wait", "Seconds to wait for a delivery, up to the hub's long-poll limit.", {"type": "integer", "minimum": 0, "default": 0}),
                ("limit", "At most this many deliveries.", {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}),
            )
        ]
    responses: dict[str, Any] = {str(status): {"description": description, "content": {media_type: {"schema": schema}}}}
    responses.update(_problem_responses(operation))
    body["responses"] = responses
    return body


# -- the document ----------------------------------------------------------------------


def build_document(server_url: str = EXAMPLE_SERVER) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the hub's HTTP binding, for a hub at `server_url` (its public base URL)."""
    paths: dict[str, dict[str, Any]] = {}
    for operation in OPERATIONS:
        paths.setdefault(operation.path, {})[operation.method] = _operation_object(operation)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "GBA Case Gateway hub",
            "summary": "Signed case exchange between Guangdong, Hong Kong and Macao: the hub's HTTP API.",
            "description": _info_description(),
            "version": __version__,
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "servers": [{"url": server_url.rstrip("/"), "description": "The hub's public base URL (configuration `public_base_url`); request proofs' `htu` starts with it."}],
        "tags": [
            {"name": "messages", "description": "Sending messages and following them (§12.1)."},
            {"name": "delivery", "description": "Pulling deliveries and acknowledging them (§12.6)."},
            {"name": "ledger", "description": "Checkpoints, proofs and the entries a party may see (§13.4-§13.6)."},
            {"name": "about", "description": "What this hub is."},
            {"name": "operations", "description": "Health, readiness and metrics for operators."},
        ],
        "paths": paths,
        "components": {
            "schemas": _components_schemas(),
            "securitySchemes": {
                SECURITY_SCHEME: {
                    "type": "apiKey",
                    "in": "header",
                    "name": REQUEST_PROOF_HEADER,
                    "description": _PROOF_DESCRIPTION,
                }
            },
        },
    }


def render(document: dict[str, Any]) -> bytes:
    """The document as the bytes of docs/openapi.json: UTF-8 JSON, indented, ending in a newline."""
    return (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


@functools.lru_cache(maxsize=4)
def document_bytes(server_url: str = EXAMPLE_SERVER) -> bytes:
    """`render(build_document(server_url))`, built once per base URL (the hub serves it)."""
    return render(build_document(server_url))


def main() -> int:
    sys.stdout.buffer.write(document_bytes())
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
