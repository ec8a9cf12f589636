"""The one adapter interface (docs/protocol.md §6.1, §9.3; docs/architecture.md "Adapters").

A jurisdiction's adapter is data plus three checks and a view, all pure:

- `check_sent(message, today)`: what the jurisdiction may say as a sender — an award
  names one of its own schemes (the granting jurisdiction is the sender of a
  `referral.close`, PROTO-6.1-9);
- `check_received(message, today)`: what the hub checks before handing a message to the
  jurisdiction — every identity document's check digit and birth date where an
  algorithm is published (PROTO-6.1-3, PROTO-6.1-8);
- `local_view(payload)`: the receiver's view (§9.3): free text converted to the language
  its caseworkers read (never the names), scheme names in that language, timestamps in
  its time zone. Money stays in its original currency, with its code, as signed.

`today` is the calendar date in the adapter's own time zone (`today_at`): a number whose
birth date is today where the person lives is not refused for lying ahead of UTC.

The hub calls the sender's `check_sent` and the receiver's `check_received` in its
pipeline (gateway/hub/acceptance.py) and the receiver's `local_view` at delivery
(gateway/hub/delivery.py). A jurisdiction is one module under gateway/adapters/ (or any
importable module named in the configuration) that defines `ADAPTER`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from gateway.adapters.identity import AREA_CODE_INVALID, check_identity_document
from gateway.adapters.local_view import converted_texts, is_free_text
from gateway.adapters.schemes import SchemeList
from gateway.protocol.errors import ProtocolError
from gateway.protocol.schema import load_message_schemas
from gateway.protocol.statements import LocalTime, LocalView, SchemeName
from gateway.protocol.timestamps import parse_timestamp


_TIMESTAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?Z")


@dataclass(frozen=True)
class JurisdictionAdapter:
    code: str
    """The jurisdiction code (§2.1)."""
    lang: str
    """The language tag its caseworkers read: local views convert free text to it."""
    schemes: SchemeList
    zone: str
    """Its IANA time zone (for the console and local views)."""

    def today_at(self, now: datetime) -> date:
        """The calendar date in this jurisdiction's time zone at the instant `now`."""
        return now.astimezone(ZoneInfo(self.zone)).date()

    def check_sent(self, message: Any, today: date) -> None:
        """Refuse an award that names no scheme of this jurisdiction (PROTO-6.1-9)."""
        for place, award in _awards(message.body, "/body"):
            if self.schemes.get(award["scheme"]) is None:
                raise ProtocolError("scheme-unknown", "The scheme is not in the granting jurisdiction's list", where=f"{_pointer(place)}/scheme")

    def check_received(self, message: Any, today: date) -> None:
        """Refuse an identity document whose number fails a published check (PROTO-6.1-3)."""
        for place, document in _identity_documents(message.body, "/body"):
            fault = check_identity_document(document["kind"], document["number"], today)
            if fault is not None:
                # An area code outside the kind's is the schema's refusal (its patterns fix them); here it
                # can only follow a schema change, and is refused the same way.
                code = "schema-violation" if fault.code == AREA_CODE_INVALID else fault.code
                raise ProtocolError(code, fault.detail, where=f"{_pointer(place)}/number")

    def local_view(self, payload: Mapping[str, Any], sender_schemes: SchemeList | None = None) -> LocalView:
        """Free text converted to this receiver's script; the schemes of an award (the sender's, named in this
        receiver's language) and, for each needed category, this receiver's own schemes of it (§9.3)."""
        found = _ViewParts()
        # One walk for all four, each in document order: every timestamp of the payload as the same instant in
        # this receiver's zone; the free texts; in the body, the schemes of each needed category, then the
        # awards. Pointers are spelled only for what is found.
        _collect_view_parts(payload, ("",), False, False, found)
        zone = ZoneInfo(self.zone)
        # A timestamp is a member the schemas type as one (`/created`, `/body/respond_by`): a note, a reference
        # or a name that merely looks like one is not a time, whatever its shape.
        places = load_message_schemas().timestamp_places(payload.get("type")) if found.timestamps else ()
        times = []
        for place, value in found.timestamps:
            if _shape(place) in places:
                local = _local_time(value, zone)
                if local is not None:
                    times.append(LocalTime(_pointer(place), local, self.zone))
        names = []
        for place, category in found.needs:
            pointer = _pointer(place)
            names += [SchemeName(pointer, scheme.code, self.schemes.name(scheme.code, self.lang), self.lang)
                      for scheme in self.schemes.for_category(category)]
        if sender_schemes is not None:
            for place, award in found.awards:
                if sender_schemes.get(award["scheme"]) is not None:
                    names.append(SchemeName(f"{_pointer(place)}/scheme", award["scheme"], sender_schemes.name(award["scheme"], self.lang), self.lang))
        texts = converted_texts(((_pointer(place), text) for place, text in found.free_texts), self.lang)
        return LocalView(texts, tuple(names), tuple(times))


@dataclass(slots=True)
class _ViewParts:
    """What a local view is made of, each with its place (see `_containers`), in document order."""

    timestamps: list[tuple[tuple[Any, ...], str]] = field(default_factory=list)
    needs: list[tuple[tuple[Any, ...], str]] = field(default_factory=list)
    """The strings of a `needs` member in the body (categories)."""
    awards: list[tuple[tuple[Any, ...], Mapping[str, Any]]] = field(default_factory=list)
    free_texts: list[tuple[tuple[Any, ...], Mapping[str, str]]] = field(default_factory=list)


def _collect_view_parts(value: Any, place: tuple[Any, ...], in_body: bool, in_needs: bool, found: _ViewParts) -> None:
    """Pre-order walk of `value` for `local_view`. `in_body`: `value` is the body or under it; `in_needs`: `value` is
    a `needs` member below the body, so its strings are categories. Recursive: the payload's depth is bounded
    (§4.5). Strings are judged where they are met, without a call each for most: most values are strings."""
    kind = type(value)
    if kind is list:
        for index, member in enumerate(value):
            if type(member) is str:
                if in_needs or len(member) >= 20:
                    _view_string(member, (place, index), in_needs, found)
            elif type(member) not in _LEAVES:
                _collect_view_parts(member, (place, index), in_body, False, found)
    elif kind is dict or (kind not in _LEAVES and kind is not str and isinstance(value, Mapping)):
        if in_body and _is_award(value):
            found.awards.append((place, value))
        if is_free_text(value):
            found.free_texts.append((place, value))
        top = len(place) == 1
        for key, member in value.items():
            if type(member) is str:
                if in_needs or len(member) >= 20:
                    _view_string(member, (place, key), in_needs, found)
            elif type(member) not in _LEAVES:
                _collect_view_parts(member, (place, key), in_body or (top and key == "body"), in_body and key == "needs", found)
    elif kind is str:
        _view_string(value, place, False, found)


def _local_time(value: str, zone: ZoneInfo) -> str | None:
    """`value` (§5.3) as the same instant in `zone`, an RFC 3339 date-time with that zone's offset; None where
    RFC 3339 cannot say it: an instant whose offset there is not a whole number of minutes (a zone's local
    mean time before standard time, 1904 in Hong Kong) has no `±hh:mm`, and rounding would name another
    instant."""
    try:
        local = parse_timestamp(value).astimezone(zone)
    except ValueError:
        return None
    offset = local.utcoffset()
    return local.isoformat() if offset is not None and offset.seconds % 60 == 0 and offset.microseconds == 0 else None


def _shape(place: tuple[Any, ...]) -> tuple[str, ...]:
    """A `_containers` place as the member names from the root, `*` for an array item (see
    `MessageSchemas.timestamp_places`)."""
    keys: list[str] = []
    while len(place) == 2:
        place, key = place
        keys.append(key if type(key) is str else "*")
    return tuple(reversed(keys))


def _view_string(value: str, place: tuple[Any, ...], in_needs: bool, found: _ViewParts) -> None:
    # A cheap look before the pattern: a §5.3 timestamp ends in Z and has at least 20 characters. Which of these
    # are timestamps is the schemas' to say (`local_view`).
    if len(value) >= 20 and value[-1] == "Z" and _TIMESTAMP.fullmatch(value):
        found.timestamps.append((place, value))
    elif in_needs:
        found.needs.append((place, value))


_LEAVES = frozenset({str, int, float, bool, type(None)})
"""JSON values with nothing inside: no further look (an ABC check of each would cost more than the walk)."""


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1") if "~" in key or "/" in key else key


_AWARD_MEMBERS = frozenset({"scheme", "category", "amount"})


def _is_award(value: Any) -> bool:
    """An award (§6.1 *award*): an object with a scheme, a category and an amount."""
    return type(value) not in _LEAVES and (type(value) is dict or isinstance(value, Mapping)) and _AWARD_MEMBERS <= value.keys()


def _containers(value: Any, root: str) -> list[tuple[tuple[Any, ...], Any]]:
    """Every object and array under `value` (itself included), in document order, with
    its place as a linked path (`(root,)` for `value`, `(parent, key)` below it; `_pointer` spells it). The checks
    made at acceptance look only for objects and arrays, most values are leaves, and a pointer is needed only for a
    refusal, so none is spelled on the way. Recursive into a list, not a generator: the payload's depth is bounded
    (§4.5), and this runs twice for every message accepted."""
    found: list[tuple[tuple[Any, ...], Any]] = []
    _collect(value, (root,), found)
    return found


def _collect(value: Any, place: tuple[Any, ...], found: list[tuple[tuple[Any, ...], Any]]) -> None:
    kind = type(value)
    if kind is list:
        found.append((place, value))
        for index, member in enumerate(value):
            if type(member) not in _LEAVES:
                _collect(member, (place, index), found)
    elif kind is dict or (kind not in _LEAVES and isinstance(value, Mapping)):
        found.append((place, value))
        for key, member in value.items():
            if type(member) not in _LEAVES:
                _collect(member, (place, key), found)


def _pointer(place: tuple[Any, ...]) -> str:
    """The JSON Pointer of a `_containers` place."""
    keys = []
    while len(place) == 2:
        place, key = place
        keys.append(_escape(key) if type(key) is str else str(key))
    return place[0] + "".join(f"/{key}" for key in reversed(keys))


def _awards(body: Any, root: str) -> Iterator[tuple[tuple[Any, ...], Mapping[str, Any]]]:
    """Every award (§6.1 *award*) in the body, with its place."""
    for place, value in _containers(body, root):
        if _is_award(value):
            yield place, value


def _identity_documents(body: Any, root: str) -> Iterator[tuple[tuple[Any, ...], Mapping[str, Any]]]:
    """Every identity document with a number in the body, with its place."""
    for place, value in _containers(body, root):
        if type(value) is list and len(place) == 2 and place[1] == "identity_documents":
            for index, document in enumerate(value):
                if isinstance(document, Mapping) and isinstance(document.get("number"), str):
                    yield (place, index), document
