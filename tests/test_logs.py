"""The gateway's log lines (gateway/logs.py): JSON lines written by orjson, with the standard library's json for what
orjson refuses, so no event is ever lost to its serializer."""

from __future__ import annotations

import io
import json
import uuid

import structlog

from gateway.logs import configure_logging


def _lines(**fields: object) -> tuple[str, dict[str, object]]:
    stream = io.StringIO()
    configure_logging(stream=stream)
    try:
        structlog.get_logger("gateway.test").info("logged", **fields)
    finally:
        structlog.reset_defaults()
    [line] = stream.getvalue().splitlines()
    return line, json.loads(line)


def test_a_line_is_one_json_object_with_the_event_its_level_and_a_utc_timestamp():
    line, event = _lines(message_id="01a2", count=3, seconds=0.25, codes=["a", "b"], missing=None)
    assert {key: event[key] for key in ("event", "level", "message_id", "count", "seconds", "codes", "missing")} == {
        "event": "logged", "level": "info", "message_id": "01a2", "count": 3, "seconds": 0.25, "codes": ["a", "b"],
        "missing": None,
    }
    assert event["timestamp"].endswith("Z")
    assert line.startswith("{") and "\n" not in line


def test_non_ascii_text_is_written_as_utf8_so_a_search_of_the_log_finds_it():
    line, event = _lines(route="廣東 -> 香港")
    assert "廣東 -> 香港" in line and event["route"] == "廣東 -> 香港"


def test_a_uuid_is_written_as_its_value():
    _, event = _lines(case=uuid.UUID(int=5))
    assert event["case"] == "00000000-0000-0000-0000-000000000005"


def test_what_orjson_refuses_is_written_by_json_instead_of_being_lost():
    # orjson takes neither member names that are not strings nor integers beyond 64 bits.
    _, event = _lines(by_status={202: 3, 409: 1}, size=2**70)
    assert event["by_status"] == {"202": 3, "409": 1} and event["size"] == 2**70
    assert event["event"] == "logged"


def test_personal_fields_are_still_withheld():
    line, event = _lines(payload="A1234567", body="x")
    assert event["payload"] == event["body"] == "[withheld]" and "A1234567" not in line
