"""Timestamps (docs/protocol.md §5.3): the C-backed reader and writer against the plain ones they replaced."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.protocol.timestamps import format_timestamp, parse_timestamp

_REFERENCE = re.compile(r"((?:19|20|21)[0-9]{2})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-5][0-9]):([0-5][0-9])(?:\.([0-9]{1,6}))?Z")


def reference_parse(text: str) -> datetime:
    """The reader before the change: the pattern's groups into the constructor."""
    match = _REFERENCE.fullmatch(text)
    if match is None:
        raise ValueError("not the protocol's form")
    year, month, day, hour, minute, second, fraction = match.groups()
    micro = int((fraction or "0").ljust(6, "0"))
    return datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), micro, tzinfo=timezone.utc)


def reference_format(moment: datetime) -> str:
    """The writer before the change: `strftime`, then the fraction without trailing zeros."""
    moment = moment.astimezone(timezone.utc)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    return text + "Z"


def _outcome(read, text):
    try:
        return read(text)
    except ValueError:
        return ValueError


moments = st.datetimes(min_value=datetime(1900, 1, 2), max_value=datetime(2199, 12, 30), timezones=st.just(timezone.utc))
zones = st.builds(lambda minutes: timezone(timedelta(minutes=minutes)), st.integers(-23 * 60 - 59, 23 * 60 + 59))


@given(moments, st.one_of(st.just(timezone.utc), zones))
def test_writing_matches_the_reference_in_any_zone(moment, zone):
    local = moment.astimezone(zone)
    assert format_timestamp(local) == reference_format(local)
    assert parse_timestamp(format_timestamp(local)) == moment


@given(moments)
def test_what_is_written_reads_back_as_an_aware_utc_moment(moment):
    read = parse_timestamp(format_timestamp(moment))
    assert read == moment
    assert read.tzinfo is timezone.utc


digits = st.text(alphabet="0123456789", min_size=2, max_size=2)


@given(
    st.sampled_from(["1899", "1900", "2026", "2199", "2200"]),
    digits, digits, digits, digits, digits,
    st.one_of(st.just(""), st.text(alphabet="0123456789", min_size=0, max_size=8).map(lambda f: "." + f)),
    st.sampled_from(["Z", "z", "+00:00", ""]),
)
def test_reading_accepts_and_refuses_what_the_reference_does(year, month, day, hour, minute, second, fraction, zone):
    text = f"{year}-{month}-{day}T{hour}:{minute}:{second}{fraction}{zone}"
    assert _outcome(parse_timestamp, text) == _outcome(reference_parse, text)


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-30T24:00:00Z",  # newer Pythons' fromisoformat reads this as the next day's midnight
        "2026-02-29T00:00:00Z",  # not a leap year
        "2026-11-31T00:00:00Z",
        "2026-13-01T00:00:00Z",
        "2026-11-30T23:59:60Z",
        "2026-11-30T12:00:00.Z",
        "2026-11-30T12:00:00.1234567Z",
        "2026-11-30T12:00:00z",
        "2026-11-30t12:00:00Z",
        "2026-11-30T12:00:00+00:00",
        "2026-11-30 12:00:00Z",
        "2026-11-30T12:00Z",
        "20261130T120000Z",
        "2026-11-30T12:00:00Z\n",
    ],
)
def test_reading_refuses_what_the_form_does_not_allow(text):
    with pytest.raises(ValueError):
        parse_timestamp(text)


def test_examples_of_the_protocol():
    assert parse_timestamp("2026-11-28T09:30:00Z") == datetime(2026, 11, 28, 9, 30, tzinfo=timezone.utc)
    assert parse_timestamp("2026-11-28T09:30:00.125Z") == datetime(2026, 11, 28, 9, 30, 0, 125000, tzinfo=timezone.utc)
    assert format_timestamp(datetime(2026, 11, 28, 9, 30, tzinfo=timezone.utc)) == "2026-11-28T09:30:00Z"
    assert format_timestamp(datetime(2026, 11, 28, 9, 30, 0, 125000, tzinfo=timezone.utc)) == "2026-11-28T09:30:00.125Z"
    assert format_timestamp(datetime(2026, 11, 28, 17, 30, 0, 1, tzinfo=timezone(timedelta(hours=8)))) == "2026-11-28T09:30:00.000001Z"
