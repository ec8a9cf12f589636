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

The hub calls the sender's `check_sent` and the receiver's `check_received` in its
pipeline (gateway/hub/acceptance.py) and the receiver's `local_view` at delivery
(gateway/hub/delivery.py). A jurisdiction is one module under gateway/adapters/ (or any
importable module named in the configuration) that defines `ADAPTER`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

from gateway.adapters.identity import AREA_CODE_INVALID, check_identity_document
from gateway.adapters.local_view import local_view_texts
from gateway.adapters.schemes import SchemeList
from gateway.protocol.errors import ProtocolError
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

    def check_sent(self, message: Any, today: date) -> None:
        """Refuse an award that names no scheme of this jurisdiction (PROTO-6.1-9)."""
        for pointer, award in _awards(message.body, "/body"):
            if self.schemes.get(award["scheme"]) is None:
                raise ProtocolError("scheme-unknown", "The scheme is not in the granting jurisdiction's list", where=f"{pointer}/scheme")

    def check_received(self, message: Any, today: date) -> None:
        """Refuse an identity document whose number fails a published check (PROTO-6.1-3)."""
        for pointer, document in _identity_documents(message.body, "/body"):
            fault = check_identity_document(document["kind"], document["number"], today)
            if fault is not None:
                # An area code outside the kind's is the schema's refusal (its patterns fix them); here it
                # can only follow a schema change, and is refused the same way.
                code = "schema-violation" if fault.code == AREA_CODE_INVALID else fault.code
                raise ProtocolError(code, fault.detail, where=f"{pointer}/number")

    def local_view(self, payload: Mapping[str, Any], sender_schemes: SchemeList | None = None) -> LocalView:
        """Free text converted to this receiver's script; the schemes of an award (the sender's, named in this
        receiver's language) and, for each needed category, this receiver's own schemes of it (§9.3)."""
        names = []
        awards = []
        times = []
        zone = ZoneInfo(self.zone)
        # One walk for all three, each in document order: every timestamp of the payload (§5.3 form) as the same
        # instant in this receiver's zone; in the body, the schemes of each needed category, then the awards.
        for pointer, value in _walk(payload, ""):
            if type(value) is str:
                if _TIMESTAMP.fullmatch(value):
                    try:
                        times.append(LocalTime(pointer, parse_timestamp(value).astimezone(zone).isoformat(), self.zone))
                    except ValueError:
                        pass
                elif pointer.startswith("/body/") and pointer.rsplit("/", 2)[-2:-1] == ["needs"]:
                    names += [SchemeName(pointer, scheme.code, self.schemes.name(scheme.code, self.lang), self.lang)
                              for scheme in self.schemes.for_category(value)]
            elif sender_schemes is not None and pointer.startswith("/body") and _is_award(value):
                awards.append((pointer, value))
        for pointer, award in awards:
            if sender_schemes is not None and sender_schemes.get(award["scheme"]) is not None:
                names.append(SchemeName(f"{pointer}/scheme", award["scheme"], sender_schemes.name(award["scheme"], self.lang), self.lang))
        return LocalView(local_view_texts(payload, self.lang), tuple(names), tuple(times))


def _walk(value: Any, pointer: str) -> Iterator[tuple[str, Any]]:
    """Every value under `value` with its JSON Pointer, in document order (pre-order), `value` first.

    Iterative: a recursive generator pays for every level of nesting on every value it passes up, and this runs
    several times for each message accepted and each delivery (docs/performance.md)."""
    stack = [(pointer, value)]
    while stack:
        pointer, value = stack.pop()
        yield pointer, value
        kind = type(value)
        if kind in _LEAVES:
            continue
        if kind is dict or isinstance(value, Mapping):
            stack += reversed([(f"{pointer}/{_escape(key)}", member) for key, member in value.items()])
        elif kind is list:
            stack += reversed([(f"{pointer}/{index}", member) for index, member in enumerate(value)])


_LEAVES = frozenset({str, int, float, bool, type(None)})
"""JSON values with nothing inside: no further look (an ABC check of each would cost more than the walk)."""


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1") if "~" in key or "/" in key else key


_AWARD_MEMBERS = frozenset({"scheme", "category", "amount"})


def _is_award(value: Any) -> bool:
    """An award (§6.1 *award*): an object with a scheme, a category and an amount."""
    return type(value) not in _LEAVES and (type(value) is dict or isinstance(value, Mapping)) and _AWARD_MEMBERS <= value.keys()


def _containers(value: Any, pointer: str) -> Iterator[tuple[str, Any]]:
    """`_walk` without the leaves: every object and array under `value` (itself included) with its JSON Pointer,
    in document order. The checks made at acceptance look only for objects and arrays, and most values are leaves."""
    stack = [(pointer, value)]
    while stack:
        pointer, value = stack.pop()
        kind = type(value)
        if kind is dict or (kind not in _LEAVES and kind is not list and isinstance(value, Mapping)):
            yield pointer, value
            stack += reversed([(f"{pointer}/{_escape(key)}", member) for key, member in value.items() if type(member) not in _LEAVES])
        elif kind is list:
            yield pointer, value
            stack += reversed([(f"{pointer}/{index}", member) for index, member in enumerate(value) if type(member) not in _LEAVES])


def _awards(body: Any, root: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every award (§6.1 *award*) in the body."""
    for pointer, value in _containers(body, root):
        if _is_award(value):
            yield pointer, value


def _identity_documents(body: Any, root: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for pointer, value in _containers(body, root):
        if type(value) is list and pointer.endswith("/identity_documents"):
            for index, document in enumerate(value):
                if isinstance(document, Mapping) and isinstance(document.get("number"), str):
                    yield f"{pointer}/{index}", document
