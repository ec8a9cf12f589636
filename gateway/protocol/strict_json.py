"""Strict JSON: the I-JSON profile (RFC 7493) of docs/protocol.md §4.

`loads` accepts exactly the JSON texts the protocol allows and refuses every other
with its own catalogue code: invalid UTF-8 or a byte-order mark, syntax errors,
duplicate member names, unpaired surrogates, U+0000, NaN and Infinity, numbers
beyond the IEEE 754 double range, integers beyond ±2^53, and nesting deeper than
`MAX_DEPTH`. It never raises anything but `ProtocolError`.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from gateway.protocol.errors import ProtocolError

MAX_DEPTH = 32
"""Deepest allowed nesting; the top-level object or array is depth 1 (PROTO-4.5-2)."""

MAX_SAFE_INTEGER = 2**53
"""Largest integer magnitude a double represents exactly (RFC 7493 §2.2, PROTO-4.4-3)."""

_BOM = b"\xef\xbb\xbf"
_SAFE_DIGITS = len(str(MAX_SAFE_INTEGER))
# Only an escape can put U+0000 or a surrogate into a decoded string: raw control
# characters are syntax errors and raw surrogates are invalid UTF-8. So texts
# without such an escape skip the string walk (the common case, and the fast one).
_SUSPECT_ESCAPE = re.compile(r"\\u(?:[dD][89a-fA-F][0-9a-fA-F]{2}|0000)")
_SURROGATE = re.compile("[\ud800-\udfff]")
_SPACED_SEPARATOR = re.compile(r'"[ \t\n\r]+:')


def loads(data: bytes, part: str = "payload") -> Any:
    """Parse `data` under the I-JSON rules; `part` names the input in errors."""
    if data.startswith(_BOM):
        raise ProtocolError("json-invalid-utf8", "A byte-order mark is not allowed", where=part)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("json-invalid-utf8", where=part) from None
    hooks = _Hooks(part)
    try:
        # The C scanner builds objects fastest without an object hook; duplicate names
        # are then found by counting (see _may_have_duplicates) and confirmed exactly.
        value = json.loads(text, parse_int=hooks.integer, parse_float=hooks.number, parse_constant=hooks.constant)
    except RecursionError:
        raise ProtocolError("json-too-deep", where=part) from None
    except json.JSONDecodeError:
        raise ProtocolError("json-syntax", where=part) from None
    members, depth = _shape(value)
    if depth > MAX_DEPTH:
        raise ProtocolError("json-too-deep", where=part)
    if _may_have_duplicates(text, members):
        json.loads(text, object_pairs_hook=hooks.object, parse_int=hooks.integer, parse_float=hooks.number)
    if _SUSPECT_ESCAPE.search(text) is not None:
        _check_strings(value, part)
    return value


def _shape(value: Any) -> tuple[int, int]:
    """(number of object members, nesting depth) of a parsed value, one level at a time."""
    level = [value] if type(value) is dict or type(value) is list else []
    depth = members = 0
    while level:
        depth += 1
        deeper: list[Any] = []
        for container in level:
            if type(container) is dict:
                members += len(container)
                children: Any = container.values()
            else:
                children = container
            deeper += [child for child in children if type(child) is dict or type(child) is list]
        level = deeper
    return members, depth


def _may_have_duplicates(text: str, members: int) -> bool:
    """False only if no object in `text` repeats a member name.

    Every member name is a string followed by optional whitespace and a colon, so the
    text has at least as many `"` `:` pairs as members were written, and exactly as
    many when no string contains such a pair. Parsing keeps one member per repeated
    name; if the parsed count equals the written one, nothing was repeated.
    """
    return text.count('":') != members or _SPACED_SEPARATOR.search(text) is not None


class _Hooks:
    """Callbacks of `json.loads` that refuse what plain JSON parsing would let through."""

    def __init__(self, part: str) -> None:
        self.part = part

    def object(self, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result = dict(pairs)
        if len(result) != len(pairs):
            raise ProtocolError("json-duplicate-key", where=self.part)
        return result

    def integer(self, digits: str) -> int:
        # Compare lengths first: int() of a huge digit string is slow (and capped).
        if len(digits.lstrip("-")) > _SAFE_DIGITS:
            raise ProtocolError("json-integer-too-large", where=self.part)
        value = int(digits)
        if abs(value) > MAX_SAFE_INTEGER:
            raise ProtocolError("json-integer-too-large", where=self.part)
        return value

    def number(self, literal: str) -> float:
        value = float(literal)
        if math.isinf(value):
            raise ProtocolError("json-number-out-of-range", where=self.part)
        return value

    def constant(self, name: str) -> float:
        raise ProtocolError("json-non-finite-number", where=self.part)


def _check_strings(value: Any, part: str) -> None:
    """Refuse U+0000 and unpaired surrogates in any string or member name."""
    stack = [value]
    while stack:
        item = stack.pop()
        if type(item) is str:
            _check_string(item, part)
        elif type(item) is dict:
            for key, member in item.items():
                _check_string(key, part)
                stack.append(member)
        elif type(item) is list:
            stack.extend(item)


def _check_string(text: str, part: str) -> None:
    if "\x00" in text:
        raise ProtocolError("json-nul-character", where=part)
    if _SURROGATE.search(text):
        raise ProtocolError("json-lone-surrogate", where=part)


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON for what we sign ourselves (not canonical: see RFC 8785 for that)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")
