"""The gateway's log lines (gateway/logs.py): JSON lines written by orjson, with the standard library's json for what
orjson refuses, so no event is ever lost to its serializer."""

from __future__ import annotations

import asyncio
import gc
import io
import json
import logging
import uuid

import pytest
import structlog

from gateway.logs import JsonLinesFormatter, configure_logging, write_line


@pytest.fixture(autouse=True)
def _logging_as_it_was():
    """Each test configures logging its own way; afterwards structlog's configuration and the root logger's handlers
    are put back as they were (the session's privacy check listens through both, tests/privacy.py)."""
    config = structlog.get_config()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    structlog.configure(**config)
    root.handlers[:] = handlers
    root.setLevel(level)


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


def _asyncio_lines(scenario) -> str:
    """What asyncio's own exception handler writes through the gateway's formatter while `scenario` runs."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonLinesFormatter())
    logger = logging.getLogger("asyncio")
    logger.addHandler(handler)
    try:
        asyncio.run(scenario())
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


def test_asyncio_reports_of_failures_keep_neither_the_exception_text_nor_the_arguments():
    # Its default handler writes the task's repr and the exception's text, or the callback's arguments, into the
    # message itself, where the formatter's rule (an exception by its type only) would not reach.
    async def task_never_awaited() -> None:
        async def fail() -> None:
            raise ValueError("A1234567 陳大文")

        task = asyncio.get_running_loop().create_task(fail())
        await asyncio.wait([task])  # done, its exception never retrieved
        del task
        gc.collect()

    async def failing_callback() -> None:
        def handle(data: bytes) -> None:
            raise ValueError("bad")

        done = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_soon(handle, b"A1234567")
        asyncio.get_running_loop().call_soon(done.set_result, None)  # runs after the failing callback
        await done

    for scenario, event in ((task_never_awaited, "Task exception was never retrieved"), (failing_callback, "Exception in callback")):
        text = _asyncio_lines(scenario)
        [line] = text.splitlines()
        assert json.loads(line)["event"] == event and json.loads(line)["error"] == "ValueError"
        assert "A1234567" not in text and "陳大文" not in text


def test_asyncio_messages_keep_their_fixed_words_and_never_an_empty_event():
    def event_of(message: str) -> str:
        record = logging.LogRecord("asyncio", logging.ERROR, __file__, 1, message, (), None)
        return json.loads(JsonLinesFormatter().format(record))["event"]

    pending = "Task was destroyed but it is pending!\ntask: <Task pending coro=<f()>>"
    assert event_of(pending) == "Task was destroyed but it is pending!"
    assert event_of("socket.send() raised exception.") == "asyncio report (withheld: it begins with formatted data)"


class _Writes(io.StringIO):
    """A stream that keeps each `write` call apart."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def write(self, text: str) -> int:
        self.calls.append(text)
        return super().write(text)


def test_each_line_is_written_in_one_call_with_its_newline():
    """Processes that share a stream (the workers of `serve --workers N` share stderr) keep their lines whole only if
    each line, its newline included, is one write: where the stream is unbuffered (PYTHONUNBUFFERED), each write is
    a system call, and a line written in two could have another process's line between its parts."""
    stream = _Writes()
    configure_logging(stream=stream)
    structlog.get_logger("gateway.test").info("logged", count=1)
    logging.getLogger("asyncpg").warning("a library's line")
    write_line("gateway: draining in-flight requests", stream)  # the command's own lines, as a worker writes them
    assert len(stream.calls) == 3, stream.calls
    for call in stream.calls:
        assert call.endswith("\n") and call.count("\n") == 1, call
    for call in stream.calls[:2]:
        json.loads(call)


_WORKER = """
import os, sys
import structlog
from gateway.logs import configure_logging
configure_logging()
log = structlog.get_logger("gateway.test")
for number in range(int(sys.argv[1])):
    log.info("logged", worker=os.getpid(), seq=number, padding="x" * 200)
"""


def test_two_unbuffered_processes_sharing_stderr_keep_every_line_whole(tmp_path):
    """The real case: two processes, PYTHONUNBUFFERED=1, one stderr file; every line of both is one JSON object."""
    import os
    import subprocess
    import sys

    count = 20000
    log = tmp_path / "shared.log"
    environment = dict(os.environ, PYTHONUNBUFFERED="1")
    with log.open("wb") as shared:
        workers = [subprocess.Popen([sys.executable, "-c", _WORKER, str(count)], stderr=shared, env=environment)
                   for _ in range(2)]
        assert [worker.wait(120) for worker in workers] == [0, 0]
    lines = log.read_text("utf-8").splitlines()
    events = [json.loads(line) for line in lines]
    assert len(events) == 2 * count
    for worker in workers:
        assert sorted(event["seq"] for event in events if event["worker"] == worker.pid) == list(range(count))
