"""The session-wide log watch (tests/privacy.py) really finds personal data."""

from tests.privacy import leaks_in, personal_data


def test_the_watch_knows_names_and_identity_numbers_from_the_examples():
    kinds = set(personal_data().values())
    assert {"name", "identity number"} <= kinds


def test_the_watch_finds_a_name_and_a_number_in_a_log_line():
    data = personal_data()
    name = next(datum for datum, kind in data.items() if kind == "name")
    number = next(datum for datum, kind in data.items() if kind == "identity number")
    line = '{"event": "accepted", "x": "' + name + '", "y": "' + number + '"}'
    assert leaks_in(line) == ["identity number", "name"]
    assert leaks_in('{"event": "accepted", "message_id": "01a2"}') == []


def test_a_latin_name_inside_a_longer_word_is_not_a_leak():
    data = personal_data()
    name = next(datum for datum, kind in data.items() if kind == "name" and datum.isascii() and datum.isalpha())
    assert leaks_in(f"registry listener {name.upper()}ED and {name}X") == []
    assert leaks_in(f"a log line about {name}.") == ["name"]


def test_the_libraries_log_records_are_json_lines_with_exceptions_by_type_only():
    """asyncpg and aiohttp log through `logging`: their records come out as JSON lines like the gateway's own, and an
    exception is named by its type, never its text or traceback (which may quote a statement's values)."""
    import json
    import logging
    import sys

    from gateway.logs import JsonLinesFormatter

    try:
        raise ValueError("A1234567 in a statement")
    except ValueError:
        record = logging.LogRecord("asyncpg.pool", logging.ERROR, __file__, 1, "pool %s", ("failed",), sys.exc_info())
    line = JsonLinesFormatter().format(record)
    event = json.loads(line)
    assert event["event"] == "pool failed" and event["logger"] == "asyncpg.pool" and event["level"] == "error"
    assert event["error"] == "ValueError" and "A1234567" not in line and "Traceback" not in line
    assert event["timestamp"].endswith("Z")
