"""UUIDv7 identifiers for messages and cases (RFC 9562 §5.7, docs/protocol.md §5.2)."""

from __future__ import annotations

import os
import re
import time
import uuid

UUID7 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
"""A UUIDv7 in the protocol's lowercase text form (PROTO-5.2-1); use with `fullmatch`."""


def new_uuid7() -> str:
    """A fresh UUIDv7 in lowercase text: 48-bit Unix milliseconds, version, variant, 74 random bits."""
    milliseconds = time.time_ns() // 1_000_000
    random = int.from_bytes(os.urandom(10), "big")
    value = (milliseconds & (2**48 - 1)) << 80
    value |= 0x7 << 76
    value |= (random >> 68) << 64  # the top 12 random bits are rand_a
    value |= 0b10 << 62
    value |= random & (2**62 - 1)
    return str(uuid.UUID(int=value))
