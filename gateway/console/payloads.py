"""The one place the console reads a message's payload (docs/console.md, "Payloads").

Stored messages may be sealed at rest (gateway/store/payloads.py: the row names its
payload key; a row without one is in clear). Whatever the storage does next, only
`read_payload` and `payload_of` change. Callers must have checked the officer's right and ledgered the
view first (the person indexer reads only to index, and shows nothing).
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from gateway.protocol import base64url


async def read_payload(executor: Any, message_id: str, keys: Any = None) -> dict[str, Any] | None:
    """The decoded payload of an accepted message (its JWS payload as JSON), or None if there is none
    (no such message, or its payload was purged: gateway/hub/retention.py).

    `keys` opens a sealed row (an object with `open(message_id, key_id, sealed)`, the hub's payload key ring).
    """
    row = await executor.fetchrow("SELECT id, compact, payload_key FROM messages WHERE id = $1", uuid.UUID(message_id))
    return None if row is None else payload_of(row, keys)


def payload_of(row: Any, keys: Any = None) -> dict[str, Any] | None:
    """The decoded payload of a `messages` row read with its `id`, `compact` and `payload_key` columns (a caller
    that reads many rows in one query, such as the person indexer, opens each with this); None when purged."""
    if row["compact"] is None:
        return None
    message_id = str(row["id"])
    compact = bytes(row["compact"])
    key_id = row["payload_key"]
    if key_id is not None:
        if keys is None:
            raise LookupError(f"message {message_id} is sealed under payload key {key_id} and no key ring was given")
        compact = keys.open(message_id, key_id, compact)
    # Plain JSON: an accepted payload passed the strict rules (§4), and parses to the same value.
    return orjson.loads(base64url.decode(compact.split(b".")[1]))
