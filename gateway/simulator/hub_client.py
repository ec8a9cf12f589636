"""The simulator's HTTP client of the hub (docs/protocol.md §12): messages, receipts, inbox, trust list.

Every answer is sorted into three outcomes: an acceptance (`202` with a hub receipt,
or the inbox page), a final refusal (`HubRefused`, a 4xx problem: its catalogue code
is recorded and the request is not retried), or `HubUnavailable` (no answer, a
network error, `5xx`: the caller retries the identical bytes later, §8.1).
Non-public requests carry a request proof (§9.5) whose `htu` is the hub URL plus the
path, without the query.
"""

from __future__ import annotations

import json
import re
import ssl
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable

import aiohttp

from gateway.protocol import strict_json
from gateway.protocol.errors import ProtocolError
from gateway.protocol.keys import PrivateKey
from gateway.protocol.request_proof import make_request_proof

JOSE = "application/jose"


class HubUnavailable(Exception):
    """The hub gave no usable answer now; retry the identical request later (not before `retry_after` seconds,
    when the hub said so with `Retry-After`)."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class HubRefused(Exception):
    """The hub refused the request for good (a 4xx problem); `code` is its catalogue code."""

    def __init__(self, status: int, code: str) -> None:
        super().__init__(f"hub refused with {status} {code}")
        self.status = status
        self.code = code


@dataclass(frozen=True, slots=True)
class HubAcceptance:
    """A `202` answer to a message or receipt (PROTO-12.1-1)."""

    message_id: str
    hub_receipt: bytes
    replayed: bool


@dataclass(frozen=True, slots=True)
class InboxPage:
    """One answer of `GET /v1/inbox` (§12.6): its deliveries as read from it (JSON values, each still to be checked
    by `Reception`), and the new cursor."""

    deliveries: tuple[Any, ...]
    cursor: int


class HubClient:
    """Talks to one hub at `base_url` (its public base URL) as `key`'s jurisdiction."""

    def __init__(self, base_url: str, key: PrivateKey, clock: Callable[[], datetime], ssl_context: ssl.SSLContext | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._key = key
        self._clock = clock
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=ssl_context if ssl_context is not None else True),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
        )

    async def close(self) -> None:
        await self._session.close()

    async def trust_list(self) -> bytes:
        """The hub's signed trust list (`GET /v1/trust-list`, public); the caller verifies it."""
        status, retry_after, body = await self._request("GET", "/v1/trust-list", timeout=30)
        if status != 200:
            raise _failure(status, body, retry_after)
        return body

    async def post_message(self, compact: bytes) -> HubAcceptance:
        """`POST /v1/messages` (public: the message is its own authentication)."""
        return await self._submit("/v1/messages", compact, proof=False)

    async def post_receipt(self, compact: bytes) -> HubAcceptance:
        """`POST /v1/receipts` with a request proof over the body (PROTO-12.6-3)."""
        return await self._submit("/v1/receipts", compact, proof=True)

    async def sent_message(self, message_id: str) -> HubAcceptance | None:
        """`GET /v1/messages/{id}` with a request proof: the hub receipt of a message this jurisdiction sent, or None
        when the hub accepted none under that id (404, §12)."""
        status, retry_after, body = await self._request("GET", f"/v1/messages/{message_id}", proof=True, timeout=30)
        if status == 404:
            return None
        if status != 200:
            raise _failure(status, body, retry_after)
        try:
            document = json.loads(body)
            return HubAcceptance(document["message_id"], document["hub_receipt"].encode("ascii"), True)
        except (ValueError, KeyError, TypeError, AttributeError):
            raise HubUnavailable("the hub's answer is not a message status with its hub_receipt") from None

    async def inbox(self, after: int, wait: int, limit: int) -> InboxPage:
        """`GET /v1/inbox?after=&wait=&limit=` with a request proof; waits up to `wait` seconds (§12.6)."""
        query = {"after": str(after), "wait": str(wait), "limit": str(limit)}
        status, retry_after, body = await self._request("GET", "/v1/inbox", query=query, proof=True, timeout=wait + 30)
        if status != 200:
            raise _failure(status, body, retry_after)
        try:  # the answer is read strictly, once (§4); each delivery in it is checked by `Reception` as a push is
            document = strict_json.loads(body, part="inbox answer")
            if not isinstance(document["deliveries"], list):
                raise TypeError("deliveries is an array")
            deliveries = tuple(document["deliveries"])
            cursor = document["cursor"]
            if isinstance(cursor, bool) or not isinstance(cursor, int):
                raise TypeError("cursor is an integer")
        except (ProtocolError, KeyError, TypeError) as error:
            raise HubUnavailable(f"the hub's inbox answer is not {{deliveries, cursor}}: {type(error).__name__}") from None
        return InboxPage(deliveries, cursor)

    async def _submit(self, path: str, compact: bytes, proof: bool) -> HubAcceptance:
        status, retry_after, body = await self._request("POST", path, body=compact, proof=proof, timeout=60)
        if status != 202:
            raise _failure(status, body, retry_after)
        try:
            document = json.loads(body)
            return HubAcceptance(document["message_id"], document["hub_receipt"].encode("ascii"), bool(document["replayed"]))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise HubUnavailable("the hub's 202 answer is not {message_id, hub_receipt, replayed}") from None

    async def _request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        query: dict[str, str] | None = None,
        proof: bool = False,
        timeout: float,
    ) -> tuple[int, float | None, bytes]:
        """(status, the Retry-After seconds if the hub sent that header, body)."""
        url = self.base_url + path
        headers: dict[str, str] = {}
        if body is not None:
            headers["Content-Type"] = JOSE
        if proof:
            headers["GBA-Request-Proof"] = make_request_proof(self._key, method, url, body, self._clock()).decode("ascii")
        try:
            async with self._session.request(
                method, url, params=query, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout)
            ) as response:
                return response.status, _seconds(response.headers.get("Retry-After")), await response.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            raise HubUnavailable(f"no answer from the hub: {type(error).__name__}") from None


def _failure(status: int, body: bytes, retry_after: float | None = None) -> Exception:
    """A 4xx problem is final (its code recorded); anything else, 408 and 429 included, is worth retrying."""
    if 400 <= status < 500 and status not in (408, 429):
        return HubRefused(status, _problem_code(body))
    return HubUnavailable(f"the hub answered {status}", retry_after)


RETRY_AFTER_MAX_SECONDS = 300.0
"""A longer Retry-After is taken as this: a hub's mistake must not park the simulator for hours."""


def _seconds(header: str | None) -> float | None:
    """A Retry-After of delay-seconds (RFC 9110 §10.2.3; the hub sends no HTTP-date), else None."""
    if header is None or _DELAY_SECONDS.fullmatch(header.strip()) is None:
        return None  # str.isdigit would take "²", which float() refuses
    return min(float(header.strip()), RETRY_AFTER_MAX_SECONDS)


_DELAY_SECONDS = re.compile(r"[0-9]+")


def _problem_code(body: bytes) -> str:
    try:
        code: Any = json.loads(body).get("code")
    except (ValueError, AttributeError):
        code = None
    return code if isinstance(code, str) else "unknown"
