"""The one error catalogue of protocol v1 (docs/protocol.md §11).

Every refusal anywhere in the gateway is one `Code` from `CATALOGUE`: the HTTP
problem (RFC 9457), the ledger record, the log line and the conformance report all
read its status, title and requirement id from here. A problem never echoes a value
taken from the refused input; it may name *where* (a JSON Pointer or a header
parameter name), never *what*.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PROBLEM_TYPE_PREFIX = "tag:gba-case-gateway,2026:problem:"


@dataclass(frozen=True, slots=True)
class Code:
    """One catalogue entry: a stable code, its HTTP status, a fixed title, the spec requirement."""

    code: str
    status: int
    title: str
    requirement: str


def _catalogue(*codes: Code) -> dict[str, Code]:
    table: dict[str, Code] = {}
    for entry in codes:
        if entry.code in table:
            raise ValueError(f"duplicate catalogue code {entry.code}")
        table[entry.code] = entry
    return table


CATALOGUE: dict[str, Code] = _catalogue(
    # §3 JWS profile
    Code("message-too-large", 413, "The message exceeds the size limit", "PROTO-4.5-1"),
    Code("jws-malformed", 400, "Not a JWS in compact serialization", "PROTO-3.1-1"),
    Code("jws-base64url-invalid", 400, "A JWS segment is not canonical base64url", "PROTO-3.1-2"),
    Code("alg-refused", 400, "The signature algorithm is not allowed", "PROTO-3.2-1"),
    Code("key-alg-mismatch", 401, "The algorithm is not the one registered for this key", "PROTO-3.2-2"),
    Code("header-invalid", 400, "The protected header is not valid", "PROTO-3.3-1"),
    Code("header-parameter-refused", 400, "The protected header carries a refused parameter", "PROTO-3.3-2"),
    Code("typ-unexpected", 400, "The typ header is not the one expected here", "PROTO-3.4-1"),
    Code("signature-invalid", 401, "The signature does not verify", "PROTO-3.5-1"),
    # §4 JSON
    Code("json-invalid-utf8", 400, "The JSON text is not valid UTF-8", "PROTO-4.1-1"),
    Code("json-syntax", 400, "The JSON text is not well-formed", "PROTO-4.1-2"),
    Code("json-duplicate-key", 400, "An object has a duplicate member name", "PROTO-4.2-1"),
    Code("json-lone-surrogate", 400, "A string contains an unpaired surrogate", "PROTO-4.3-1"),
    Code("json-nul-character", 400, "A string contains U+0000", "PROTO-4.3-2"),
    Code("json-non-finite-number", 400, "NaN and Infinity are not JSON numbers", "PROTO-4.4-1"),
    Code("json-number-out-of-range", 400, "A number is outside the IEEE 754 double range", "PROTO-4.4-2"),
    Code("json-integer-too-large", 400, "An integer is beyond the exact range of ±2^53", "PROTO-4.4-3"),
    Code("json-too-deep", 400, "The JSON nesting is deeper than the limit", "PROTO-4.5-2"),
    # §5 envelope, §6 types, §2 jurisdictions
    Code("schema-violation", 422, "The message does not match its schema", "PROTO-5.1-1"),
    Code("type-unknown", 422, "The message type is not registered", "PROTO-5.1-2"),
    Code("sender-mismatch", 403, "The sender is not the owner of the signing key", "PROTO-5.1-3"),
    Code("self-addressed", 422, "A message cannot be addressed to its sender", "PROTO-5.1-4"),
    Code("jurisdiction-unknown", 422, "A jurisdiction code is not registered", "PROTO-2.1-1"),
    Code("version-unsupported", 400, "The protocol version is not supported", "PROTO-14.1-1"),
    # §9 hub statements, deliveries and request proofs
    Code("identity-check-digit-invalid", 422, "An identity document's check character does not match its number", "PROTO-6.1-3"),
    Code("identity-birth-date-invalid", 422, "An identity document's birth date is not a real past date", "PROTO-6.1-8"),
    Code("scheme-unknown", 422, "The scheme is not in the granting jurisdiction's list", "PROTO-6.1-9"),
    Code("attestation-mismatch", 422, "The attestation does not match the delivery", "PROTO-9.2-2"),
    Code("request-proof-missing", 401, "The request carries no request proof", "PROTO-9.5-1"),
    Code("request-proof-invalid", 401, "The request proof's payload is not valid", "PROTO-9.5-2"),
    Code("request-proof-mismatch", 401, "The request proof does not match the request", "PROTO-9.5-3"),
    Code("request-proof-stale", 401, "The request proof's time is outside the window", "PROTO-9.5-4"),
    # §10 keys and trust list
    Code("jwk-private-member", 400, "A public key carries private key material", "PROTO-10.1-1"),
    Code("jwk-small-order", 400, "An Ed25519 public key is a small-order point", "PROTO-10.1-2"),
    Code("jwk-invalid", 400, "A public key is not a valid key of its type", "PROTO-10.1-3"),
    Code("key-use-mismatch", 401, "The key is registered for another use", "PROTO-10.2-1"),
    Code("trust-list-invalid", 400, "The trust list does not match its format", "PROTO-10.3-1"),
    Code("kid-duplicate", 400, "A key id appears more than once in the trust list", "PROTO-10.3-2"),
    Code("key-unknown", 401, "No key with this key id is registered", "PROTO-10.4-1"),
    Code("key-revoked", 401, "The key is revoked", "PROTO-10.4-2"),
    Code("key-expired", 401, "The key's validity has ended", "PROTO-10.4-3"),
    Code("key-not-yet-valid", 401, "The key's validity has not begun", "PROTO-10.4-4"),
    # §5, §7, §8: the hub's ingress and case checks
    Code("id-conflict", 409, "A message with this id and other bytes was accepted", "PROTO-8.3-1"),
    Code("message-stale", 422, "The message was created too long ago", "PROTO-8.4-1"),
    Code("message-from-future", 422, "The message was created in the future", "PROTO-8.4-2"),
    Code("route-refused", 403, "The route policy does not allow this message", "PROTO-5.4-2"),
    Code("legal-basis-refused", 403, "The legal basis does not meet the route's requirements", "PROTO-5.5-2"),
    Code("reply-to-invalid", 422, "reply_to names no suitable message of the case", "PROTO-5.2-3"),
    Code("case-unknown", 422, "No such case, and this type does not open one", "PROTO-7.3-2"),
    Code("case-party-mismatch", 403, "The message is not between the case's two parties", "PROTO-7.1-1"),
    Code("case-state-conflict", 409, "The case's state does not allow this message from this party", "PROTO-7.3-1"),
    Code("deadline-passed", 409, "The response deadline has passed", "PROTO-7.5-2"),
    Code("receipt-target-invalid", 422, "A receipt must name a message delivered to its sender", "PROTO-9.4-2"),
    Code("receipt-expected", 422, "Only receipts are taken here", "PROTO-12.6-3"),
    Code("query-invalid", 400, "A query parameter is not valid", "PROTO-12.6-4"),
    Code("request-proof-replayed", 401, "The request proof was used before", "PROTO-9.5-5"),
    # §12 HTTP binding
    Code("media-type-unsupported", 415, "The request body has the wrong media type", "PROTO-12.2-1"),
    Code("not-found", 404, "No such resource for this caller", "PROTO-12.1-2"),
    Code("method-not-allowed", 405, "The resource does not allow this method", "PROTO-12.1-3"),
    Code("unavailable", 503, "The hub cannot record anything now; retry the identical request later", "PROTO-12.1-4"),
    Code("internal-error", 500, "The hub failed to answer; retry the identical request", "PROTO-12.1-5"),
    # §12.8 transport security and abuse limits
    Code("client-certificate-required", 401, "This resource needs a client certificate that names a jurisdiction", "PROTO-12.8-2"),
    Code("client-certificate-mismatch", 403, "The client certificate names another jurisdiction than the signer", "PROTO-12.8-3"),
    Code("rate-limited", 429, "Too many requests from this caller; retry after the time given", "PROTO-12.8-4"),
    Code("request-timeout", 408, "The request body did not arrive in time", "PROTO-12.8-5"),
)


class ProtocolError(Exception):
    """A refusal: one catalogue code plus where the fault is (never the offending value).

    `where` is a JSON Pointer into the payload (``/body/person/dob``), a header
    parameter name, or a segment name; `detail` is a fixed sentence written by us,
    never built from input.
    """

    retry_after_seconds: int | None = None
    """Set on refusals the caller should retry later (`rate-limited`, `unavailable`): the `Retry-After` header."""

    def __init__(self, code: str, detail: str | None = None, where: str | None = None, *, retry_after_seconds: int | None = None) -> None:
        self.retry_after_seconds = retry_after_seconds
        if code not in CATALOGUE:
            raise KeyError(f"{code!r} is not in the error catalogue")
        self.entry = CATALOGUE[code]
        self.detail = detail or self.entry.title
        self.where = where
        super().__init__(f"{code}: {self.detail}" + (f" (at {where})" if where else ""))

    @property
    def code(self) -> str:
        return self.entry.code

    def problem(self, instance: str | None = None) -> dict[str, Any]:
        """The RFC 9457 problem details object for this refusal."""
        body: dict[str, Any] = {
            "type": PROBLEM_TYPE_PREFIX + self.entry.code,
            "title": self.entry.title,
            "status": self.entry.status,
            "detail": self.detail,
            "code": self.entry.code,
            "requirement": self.entry.requirement,
        }
        if self.where is not None:
            body["where"] = self.where
        if instance is not None:
            body["instance"] = instance
        return body
