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

import orjson

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
_SUSPECT_ESCAPE = re.compile(rb"\\u(?:[dD][89a-fA-F][0-9a-fA-F]{2}|0000)")
_SURROGATE = re.compile("[\ud800-\udfff]")
_SPACED_SEPARATOR = re.compile(rb'"[ \t\n\r]+:')
_ORJSON_FLOATS_FROM_INTEGERS = 2.0**63
"""orjson reads an integer literal beyond the 64-bit range as a float; such a float sends the text to `_loads_exactly`."""


def loads(data: bytes, part: str = "payload") -> Any:
    """Parse `data` under the I-JSON rules; `part` names the input in errors.

    Texts that pass are parsed by orjson (Rust, several times faster than the standard library's scanner with hooks)
    and then checked for what orjson lets through: depth, duplicate names, integers beyond 2^53, U+0000 and
    surrogates by escape. Any text orjson refuses, or that may hold a number orjson reads differently, is parsed
    again by `_loads_exactly`, the reference, which finds the refusal's own code: the fast path decides only
    what it can decide exactly (tests/protocol/test_strict_json.py compares the two)."""
    if type(data) is not bytes:
        data = bytes(data)
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return _loads_exactly(data, part)
    members, depth, exact = _shape(value)
    if not exact:
        return _loads_exactly(data, part)
    if depth > MAX_DEPTH:
        raise ProtocolError("json-too-deep", where=part)
    if _may_have_duplicates(data, members):
        return _loads_exactly(data, part)  # a repeated name, or a '":' inside a string: the reference decides
    if _SUSPECT_ESCAPE.search(data) is not None:
        _check_strings(value, part)
    return value


def _loads_exactly(data: bytes, part: str) -> Any:
    """The reference parser: the standard library's scanner with hooks that refuse, each with its code."""
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
    members, depth, _ = _shape(value)
    if depth > MAX_DEPTH:
        raise ProtocolError("json-too-deep", where=part)
    if _may_have_duplicates(data, members):
        json.loads(text, object_pairs_hook=hooks.object, parse_int=hooks.integer, parse_float=hooks.number)
    if _SUSPECT_ESCAPE.search(data) is not None:
        _check_strings(value, part)
    return value


def _shape(value: Any) -> tuple[int, int, bool]:
    """(number of object members, nesting depth, whether its numbers were read exactly) of a parsed value.

    One level at a time. A number was read exactly unless it is an integer beyond ±2^53 (which `_loads_exactly`
    refuses; orjson reads up to 64 bits as integers) or a float of an integer's size beyond the 64-bit range (how
    orjson reads a longer integer literal); either sends the text to the reference parser."""
    if type(value) is not dict and type(value) is not list:
        return 0, 0, _exact_number(value)
    level = [value]
    depth = members = 0
    exact = True
    while level:
        depth += 1
        deeper: list[Any] = []
        for container in level:
            if type(container) is dict:
                members += len(container)
                children: Any = container.values()
            else:
                children = container
            for child in children:
                kind = type(child)
                if kind is dict or kind is list:
                    deeper.append(child)
                elif (kind is int or kind is float) and not _exact_number(child):
                    exact = False
        level = deeper
    return members, depth, exact


def _exact_number(value: Any) -> bool:
    """False for a number the fast path cannot vouch for: an integer beyond ±2^53, or a float beyond ±2^63 (module
    notes); True for anything else."""
    if type(value) is int:
        return -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER
    if type(value) is float:
        return -_ORJSON_FLOATS_FROM_INTEGERS < value < _ORJSON_FLOATS_FROM_INTEGERS
    return True


def _may_have_duplicates(text: bytes, members: int) -> bool:
    """False only if no object in `text` repeats a member name.

    Every member name is a string followed by optional whitespace and a colon, so the
    text has at least as many `"` `:` pairs as members were written, and exactly as
    many when no string contains such a pair. Parsing keeps one member per repeated
    name; if the parsed count equals the written one, nothing was repeated.
    """
    return text.count(b'":') != members or _SPACED_SEPARATOR.search(text) is not None


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
    """Compact UTF-8 JSON for what we sign ourselves (not canonical: see RFC 8785 for that).

    The standard library's `json.dumps` (no blanks, no ASCII escaping, NaN and Infinity refused) is the reference;
    orjson writes the same text in about a fifteenth of the time. Its text is taken when it reads back as `value`
    itself: so a NaN or an Infinity (which orjson writes as null), a tuple, a UUID, a date or any other value it
    writes differently goes to json, which writes it or refuses it as before; so do member names that are not
    strings, integers beyond 64 bits and lone surrogates, which orjson refuses. The one difference left is the
    exponent of a small float, which orjson writes without a leading zero (`1e-7` where json writes `1e-07`):
    the same number, and no message the gateway signs holds a float (tests/protocol/test_strict_json.py)."""
    try:
        text = orjson.dumps(value)
    except orjson.JSONEncodeError:
        pass
    else:
        if orjson.loads(text) == value:
            return text
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")
