"""JSON text that nobody signs: log lines and the HTTP API's answers.

orjson writes it in a tenth of the time of `json.dumps` (docs/performance.md, "Thirteenth pass" for log lines,
"Fourteenth pass" for answers). Its text is compact (no blank after `,` and `:`), non-ASCII text is UTF-8 rather
than `\\u` escapes, UUIDs, dates and enums are written as their values, and a NaN or an infinity as null (json
would write `NaN`, which is not JSON). What orjson refuses (member names that are not strings, integers beyond 64
bits) goes to the standard library's json with the caller's options, so nothing is lost to the writer. What the
gateway signs is written by `gateway.protocol.strict_json.dumps` instead, and ledger entries by
`gateway.protocol.jcs`."""

from __future__ import annotations

import json
from typing import Any

import orjson


def dumps_bytes(value: Any, **options: Any) -> bytes:
    """`value` as UTF-8 JSON; `options` are `json.dumps`'s, and orjson takes `default` of them."""
    try:
        return orjson.dumps(value, default=options.get("default"))
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return json.dumps(value, **options).encode("utf-8")


def dumps_text(value: Any, **options: Any) -> str:
    """`value` as JSON text (for writers that take text, such as structlog's renderer)."""
    return dumps_bytes(value, **options).decode("utf-8")
