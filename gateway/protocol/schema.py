"""Schema validation of message payloads (docs/protocol.md §5 envelope, §6 types).

The JSON Schemas in `schemas/` (Draft 2020-12) are the contract; this module only
loads them and runs them. Every `$ref` resolves from a local registry built from the
installed files: nothing is ever fetched.

Two validators read the same files:

- jsonschema-rs, compiled once per message type, is the hot path (`MessageSchemas.validate`);
- python-jsonschema, with `FormatChecker()`, is the reference implementation
  (`MessageSchemas.reference_errors`) the tests hold the fast path against.

JSON Schema gives `pattern` the meaning of an ECMA 262 regular expression. Stock
python-jsonschema runs it through Python's `re.search`, where `$` also matches before a
final newline, so it would accept ``"HK\n"`` where jsonschema-rs (and ECMA) refuse it.
The reference validator therefore runs `pattern` through `_ecma_regex` (see there).

Both run the `format` checks (`date-time`, `date`): the patterns alone let impossible
dates such as ``2026-02-30`` through. Email addresses are checked by a pattern only,
because the two libraries (and Java/.NET validators) give `format: email` different
meanings.

A refusal names the first failing instance location as a JSON Pointer: of all the
locations the validator reports, the one that comes first in the message's member
order (a parent before its children). For a missing or unexpected member that is the
object holding it. The detail is a fixed sentence; validator messages are never passed
on, because they quote the refused value.

Finding every failing location costs time per fault, and a crafted message can hold
tens of thousands. Before looking for them the fast path cuts every array to one item
more than the largest `maxItems` of the schemas: an array that long already fails at
its own location, which comes before anything inside it, so the first location is
unchanged while the work stays bounded.
"""

from __future__ import annotations

import functools
import json
import re
import string
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import jsonschema.validators
import jsonschema_rs
import referencing
import referencing.jsonschema

from gateway.contract import contract_dir
from gateway.protocol.errors import ProtocolError

SCHEMA_BASE = "https://gba-case-gateway.example/schemas/v1/"
PROTOCOL_VERSION = 1

_SCHEMA_VIOLATION = "The message does not match the schema of its type."
_IDENTITY_NUMBER = re.compile(r"/identity_documents/[0-9]+/number$")
_IDENTITY_FORMAT = (
    "The identity document number does not have the format of its kind (docs/protocol.md §6.1); for the Macao "
    "resident ID, the Home Return Permit, the Exit-Entry Permit and foreign travel documents only the format is "
    "checked: no check algorithm is published for them."
)
_TYPE_UNKNOWN = "The message type is not one of the registered types."
_VERSION_UNSUPPORTED = "Only protocol version 1 is supported."
_NOT_AN_OBJECT = "The message payload is not a JSON object."
_FORMATS_NEEDED = ("date-time", "date")


class MessageSchemas:
    """The v1 message schemas, compiled once; validate whole messages against them.

    `directory` defaults to the installed schemas (`contract_dir("schemas")`). Compiling
    takes milliseconds: build it once per process (`load_message_schemas()` does) and
    share it; it holds nothing but the compiled validators.
    """

    def __init__(self, directory: Path | None = None) -> None:
        self._documents = _read_documents(directory or contract_dir("schemas"))
        self._types = _message_types(self._documents["envelope.json"])
        self._registry = jsonschema_rs.Registry(
            [(SCHEMA_BASE + name, document) for name, document in self._documents.items()],
            draft=jsonschema_rs.Draft202012,
            retriever=_refuse_retrieval,
        )
        self._fast = {name: self._compile_fast(f"{name}.json") for name in self._types}
        self._array_cut = 1 + max(_max_items(self._documents.values()))
        _check_reference_patterns(self._documents)
        self._reference_registry = _reference_registry(self._documents)
        self._reference = self._compile_reference("message.json")
        self._timestamp_places = {name: _timestamp_places(self._documents, f"{name}.json") for name in self._types}

    @property
    def types(self) -> tuple[str, ...]:
        """The registered message types, in the order of envelope.json."""
        return self._types

    @property
    def documents(self) -> Mapping[str, Mapping[str, Any]]:
        """The schema documents by file name (`defs.json`, `referral.submit.json`, ...)."""
        return self._documents

    def timestamp_places(self, message_type: str) -> frozenset[tuple[str, ...]]:
        """Where a message of `message_type` holds a timestamp (`defs.json#/$defs/timestamp`, §5.3), each place
        the member names from the payload's root with `*` for any array item: `("created",)`,
        `("body", "respond_by")`. Empty for an unregistered type. The local view (§9.3) converts these and no
        other string, whatever its shape."""
        return self._timestamp_places.get(message_type, frozenset())

    def validate(self, message: Any) -> None:
        """Accept a payload that is a valid v1 message of a registered type, or raise.

        Raises `ProtocolError` with code `version-unsupported` (where ``/v``) when `v` is
        present and not the number 1, `type-unknown` (where ``/type``) when `type` is
        present and not a registered type, and `schema-violation` (where: the first
        failing location) for anything else the schema of the type refuses.
        """
        if not isinstance(message, dict):
            raise ProtocolError("schema-violation", _NOT_AN_OBJECT, where="")
        if "v" in message and not _is_version_one(message["v"]):
            raise ProtocolError("version-unsupported", _VERSION_UNSUPPORTED, where="/v")
        if "type" not in message:
            raise ProtocolError("schema-violation", _SCHEMA_VIOLATION, where="")
        validator = self._fast.get(message["type"]) if isinstance(message["type"], str) else None
        if validator is None:
            raise ProtocolError("type-unknown", _TYPE_UNKNOWN, where="/type")
        if validator.is_valid(message):
            return
        where = self._first_failure(validator, message)
        detail = _IDENTITY_FORMAT if _IDENTITY_NUMBER.search(where) else _SCHEMA_VIOLATION
        raise ProtocolError("schema-violation", detail, where=where)

    def reference_errors(self, message: Any) -> list[str]:
        """Every location python-jsonschema refuses under message.json, first location first.

        The reference for the fast path: `validate` must refuse exactly when this list is
        non-empty, naming its first entry (tests hold the two together).
        """
        pointers = {_pointer(error.absolute_path) for error in self._reference.iter_errors(message)}
        return _in_document_order(message, pointers)

    def fragment_errors(self, schema_ref: str, instance: Any) -> tuple[list[str], list[str]]:
        """Locations refused under one (sub)schema, by (jsonschema-rs, python-jsonschema).

        `schema_ref` is relative to the schemas base, e.g. ``defs.json#/$defs/money``.
        Compiles on every call: for tests and tools, not for the message path.
        """
        fast = _failing_locations(self._compile_fast(schema_ref), instance)
        reference = {_pointer(error.absolute_path) for error in self._compile_reference(schema_ref).iter_errors(instance)}
        return _in_document_order(instance, fast), _in_document_order(instance, reference)

    def _first_failure(self, validator: jsonschema_rs.Validator, message: dict[str, Any]) -> str:
        """The first failing location of an invalid message (see the module docstring)."""
        cut = _cut_arrays(message, self._array_cut)
        locations = _failing_locations(validator, cut)
        if not locations:  # is_valid and evaluate disagree: trust the error list of the whole message
            locations = {_pointer(error.instance_path) for error in validator.iter_errors(message)} or {""}
            return _first_in_document_order(message, locations)
        return _first_in_document_order(cut, locations)

    def _compile_fast(self, schema_ref: str) -> jsonschema_rs.Validator:
        return jsonschema_rs.Draft202012Validator(
            {"$ref": SCHEMA_BASE + schema_ref},
            registry=self._registry,
            validate_formats=True,
            ignore_unknown_formats=False,
            offline=True,
        )

    def _compile_reference(self, schema_ref: str) -> jsonschema.Draft202012Validator:
        return _ReferenceValidator(
            {"$ref": SCHEMA_BASE + schema_ref},
            registry=self._reference_registry,
            format_checker=_format_checker(),
        )


@functools.cache
def load_message_schemas() -> MessageSchemas:
    """The installed v1 schemas (`gateway.contract.contract_dir("schemas")`), built once per process."""
    return MessageSchemas()


def _read_documents(directory: Path) -> dict[str, dict[str, Any]]:
    documents: dict[str, dict[str, Any]] = {}
    for path in sorted(directory.glob("*.json")):
        document = json.loads(path.read_text(encoding="utf-8"))
        if document.get("$id") != SCHEMA_BASE + path.name:
            raise ValueError(f"{path}: $id must be {SCHEMA_BASE + path.name}")
        documents[path.name] = document
    for required in ("defs.json", "envelope.json", "message.json"):
        if required not in documents:
            raise FileNotFoundError(f"{directory / required} is missing")
    return documents


def _message_types(envelope: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(envelope["properties"]["type"]["enum"])


_TIMESTAMP_DEF = SCHEMA_BASE + "defs.json#/$defs/timestamp"


def _timestamp_places(documents: Mapping[str, Mapping[str, Any]], name: str) -> frozenset[tuple[str, ...]]:
    """Every place under the schema `name` whose subschema is the timestamp definition (see
    `MessageSchemas.timestamp_places`). Follows `$ref` (within and across the documents), `properties`,
    `items`, `prefixItems` and the applicators that judge the same instance (`allOf`, `anyOf`, `oneOf`, `then`,
    `else`); each reference once a place, so a recursive definition ends."""
    found: set[tuple[str, ...]] = set()

    def walk(node: Any, base: str, place: tuple[str, ...], seen: frozenset[str]) -> None:
        if not isinstance(node, dict):
            return
        reference = node.get("$ref")
        if isinstance(reference, str):
            # The schemas' references are within a document (`#/$defs/body`) or name a sibling document
            # (`envelope.json`, `defs.json#/$defs/timestamp`); every document shares SCHEMA_BASE.
            target = base + reference if reference.startswith("#") else SCHEMA_BASE + reference
            if target == _TIMESTAMP_DEF:
                found.add(place)
            elif target not in seen:
                document_name, _, fragment = target[len(SCHEMA_BASE):].partition("#")
                walk(_resolve(documents[document_name], fragment), SCHEMA_BASE + document_name, place, seen | {target})
        for key, member in (node.get("properties") or {}).items():
            walk(member, base, (*place, key), seen)
        for member in node.get("prefixItems") or ():
            walk(member, base, (*place, "*"), seen)
        walk(node.get("items"), base, (*place, "*"), seen)
        for keyword in ("allOf", "anyOf", "oneOf"):
            for member in node.get(keyword) or ():
                walk(member, base, place, seen)
        walk(node.get("then"), base, place, seen)
        walk(node.get("else"), base, place, seen)

    walk(documents[name], SCHEMA_BASE + name, (), frozenset())
    return frozenset(found)


def _resolve(document: Mapping[str, Any], fragment: str) -> Any:
    """The subschema a JSON Pointer fragment (`/$defs/body`, or empty for the document) names."""
    node: Any = document
    for token in fragment.split("/")[1:]:
        node = node[token.replace("~1", "/").replace("~0", "~")]
    return node


def _refuse_retrieval(uri: str) -> Any:
    raise LookupError(f"{uri} is not one of the installed schemas; schemas are never fetched")


def _reference_registry(documents: Mapping[str, Mapping[str, Any]]) -> referencing.Registry:
    # Each resource is registered without its top-level `$schema` (the dialect is given
    # explicitly). With it, python-jsonschema would drop `_ReferenceValidator` at every
    # `$ref` to a whole file: `evolve` picks the class registered for the `$schema` URI,
    # the stock Draft202012Validator, whose `pattern` is Python's `re.search`.
    resources = [
        (
            SCHEMA_BASE + name,
            referencing.Resource.from_contents(
                {keyword: value for keyword, value in document.items() if keyword != "$schema"},
                referencing.jsonschema.DRAFT202012,
            ),
        )
        for name, document in documents.items()
    ]
    return referencing.Registry().with_resources(resources).crawl()


# Escapes that mean the same literal character in ECMA 262 and in Python's `re`.
_SAME_ESCAPES = frozenset(string.punctuation)
_BOUNDED_REPEAT = re.compile(r"\{[0-9]+(,[0-9]*)?\}")
# Members whose values are instances, not schemas: a `pattern` member there is data.
_DATA_KEYWORDS = frozenset({"const", "default", "enum", "examples"})


@functools.cache
def _ecma_regex(pattern: str) -> re.Pattern[str]:
    r"""`pattern`, an ECMA 262 regular expression, compiled (once) for Python's `re` with ECMA's meaning.

    On the constructs the schemas use, the two languages differ in one place: `$`. In
    ECMA (no `m` flag) it matches only at the end of the input; in Python it also matches
    before a final "\n", so ``re.search("^[A-Z]{2}$", "HK\n")`` succeeds. Every `$` that
    is an anchor (not escaped, not inside a character class) therefore becomes `\Z`,
    which in Python matches only at the very end. `^` needs nothing: without MULTILINE
    both languages match it only at the start.

    Constructs that mean something else in Python, in ECMA or in the Rust engine of
    jsonschema-rs (`.`, `\d`, `\w`, `\s`, `\b` and every other escaped letter or digit,
    an empty class `[]` or `[^]`, a `{` that does not open an `{n}`, `{n,}` or `{n,m}`
    repeat) are refused with ValueError rather than translated: the schemas avoid them
    (write `[0-9]`, not `\d`), and a schema that starts using one fails at load instead
    of letting the two validators drift apart.
    """
    python: list[str] = []
    in_class = False
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\\":
            escaped = pattern[index + 1 : index + 2]
            if not escaped or escaped not in _SAME_ESCAPES:
                raise ValueError(f"pattern {pattern!r}: the escape \\{escaped} is not portable; write a class")
            python.append(char + escaped)
            index += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            if pattern.startswith(("[]", "[^]"), index):
                raise ValueError(f"pattern {pattern!r}: an empty class [] or [^] is not portable")
            in_class = True
        elif char == "$":
            char = r"\Z"
        elif char == ".":
            raise ValueError(f"pattern {pattern!r}: `.` is not portable (line terminators); write a class")
        elif char == "{" and not _BOUNDED_REPEAT.match(pattern, index):
            raise ValueError(f"pattern {pattern!r}: a `{{` that is not an {{n}}, {{n,}} or {{n,m}} repeat")
        python.append(char)
        index += 1
    return re.compile("".join(python))


def _ecma_pattern(
    validator: jsonschema.Draft202012Validator, pattern: str, instance: Any, schema: Mapping[str, Any]
) -> Iterator[jsonschema.ValidationError]:
    """The `pattern` keyword with ECMA 262 semantics (replaces python-jsonschema's `re.search`)."""
    if validator.is_type(instance, "string") and not _ecma_regex(pattern).search(instance):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


# The reference validator: Draft 2020-12 as python-jsonschema implements it, but for `pattern`.
_ReferenceValidator = jsonschema.validators.extend(jsonschema.Draft202012Validator, {"pattern": _ecma_pattern})


def _check_reference_patterns(documents: Mapping[str, Mapping[str, Any]]) -> None:
    """Compile every `pattern` for the reference validator now; refuse `patternProperties`.

    `_ReferenceValidator` follows ECMA for the `pattern` keyword only (which also covers
    `propertyNames`, whose subschema uses `pattern`). `patternProperties` would still go
    through `re.search`, also inside python-jsonschema's `additionalProperties` and
    `unevaluatedProperties`, so the schemas must not use it.
    """
    for name, document in documents.items():
        for keyword, value in _regex_keywords(document):
            if keyword == "patternProperties":
                raise ValueError(f"{name}: patternProperties would not follow ECMA 262 in the reference validator")
            try:
                _ecma_regex(value)
            except ValueError as error:
                raise ValueError(f"{name}: {error}") from None


def _regex_keywords(node: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for keyword, value in node.items():
            if keyword in _DATA_KEYWORDS:
                continue
            if (keyword == "pattern" and isinstance(value, str)) or (
                keyword == "patternProperties" and isinstance(value, dict)
            ):
                yield keyword, value
            yield from _regex_keywords(value)
    elif isinstance(node, list):
        for item in node:
            yield from _regex_keywords(item)


def _format_checker() -> jsonschema.FormatChecker:
    checker = jsonschema.FormatChecker()
    missing = [name for name in _FORMATS_NEEDED if name not in checker.checkers]
    if missing:
        # python-jsonschema silently skips a format whose optional checker is not installed.
        raise RuntimeError(f"python-jsonschema cannot check the formats {missing}; install rfc3339-validator")
    return checker


def _is_version_one(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and value == PROTOCOL_VERSION


def _max_items(documents: Iterable[Any]) -> Iterator[int]:
    for node in documents:
        if isinstance(node, dict):
            if isinstance(node.get("maxItems"), int):
                yield node["maxItems"]
            yield from _max_items(node.values())
        elif isinstance(node, list):
            yield from _max_items(node)


def _cut_arrays(instance: Any, length: int) -> Any:
    if isinstance(instance, dict):
        return {name: _cut_arrays(value, length) for name, value in instance.items()}
    if isinstance(instance, list):
        return [_cut_arrays(item, length) for item in instance[:length]]
    return instance


def _failing_locations(validator: jsonschema_rs.Validator, instance: Any) -> set[str]:
    """The instance locations (RFC 6901 pointers) of the failing keywords."""
    return {error["instanceLocation"] for error in validator.evaluate(instance).errors()}


def _first_in_document_order(instance: Any, pointers: set[str]) -> str:
    """The pointer that comes first in `instance`'s member order, a parent before its children.

    Requires a non-empty set. Descends one level at a time, keeping only the pointers
    under the earliest child, so a large set costs little more than one pass.
    """
    paths = [pointer.split("/")[1:] for pointer in pointers]
    chosen: list[str] = []
    node = instance
    while all(len(path) > len(chosen) for path in paths):
        depth = len(chosen)
        children = {token: _child(node, token) for token in {path[depth] for path in paths}}
        first = min(children, key=lambda token: children[token][0])
        paths = [path for path in paths if path[depth] == first]
        chosen.append(first)
        node = children[first][1]
    return "".join("/" + token for token in chosen)


def _in_document_order(instance: Any, pointers: set[str]) -> list[str]:
    return sorted(pointers, key=lambda pointer: _order_key(instance, pointer))


def _order_key(instance: Any, pointer: str) -> tuple[int, ...]:
    positions: list[int] = []
    node = instance
    for token in pointer.split("/")[1:]:
        position, node = _child(node, token)
        positions.append(position)
    return tuple(positions)


def _child(node: Any, token: str) -> tuple[int, Any]:
    """The position of the member or item that `token` (one escaped pointer step) names, and its value."""
    name = token.replace("~1", "/").replace("~0", "~")
    if isinstance(node, dict) and name in node:
        return list(node).index(name), node[name]
    if isinstance(node, list) and token.isdigit() and int(token) < len(node):
        return int(token), node[int(token)]
    return -1, None


def _pointer(path: Iterable[str | int]) -> str:
    return "".join("/" + str(step).replace("~", "~0").replace("/", "~1") for step in path)
