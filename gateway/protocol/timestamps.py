"""RFC 3339 timestamps in the one form the protocol allows (docs/protocol.md §5.3).

UTC only, years 1900-2199, written with an uppercase `T` and `Z`, seconds 00-59, up to six fractional
digits: `2026-11-28T09:30:00Z`, `2026-11-28T09:30:00.125Z`.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

_TIMESTAMP = re.compile(r"((?:19|20|21)[0-9]{2})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-5][0-9]):([0-5][0-9])(?:\.([0-9]{1,6}))?Z")


def parse_timestamp(text: str) -> datetime:
    """An aware UTC datetime; ValueError if `text` is not in the protocol's form."""
    match = _TIMESTAMP.fullmatch(text)
    if match is None:
        raise ValueError("not an RFC 3339 UTC timestamp of the form YYYY-MM-DDTHH:MM:SS[.ffffff]Z")
    year, month, day, hour, minute, second, fraction = match.groups()
    micro = int((fraction or "0").ljust(6, "0"))
    return datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), micro, tzinfo=timezone.utc)


def format_timestamp(moment: datetime) -> str:
    """`moment` in UTC, with milliseconds only when it has a fraction of a second."""
    moment = moment.astimezone(timezone.utc)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    return text + "Z"


def utc_now() -> datetime:
    return datetime.now(timezone.utc)
