"""Logging: structlog, JSON lines on stderr, configured once at start.

What the gateway logs is metadata only — message ids, case ids, routes, codes,
counts. Handlers bind that context; nothing from a payload is ever passed to a log
call, and a processor refuses keys that could carry it, as a second line of defence.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone
from typing import Any

import structlog
from aiohttp.abc import AbstractAccessLogger

from gateway.jsontext import dumps_text

_FORBIDDEN = frozenset({"payload", "body", "name", "names", "person", "text", "detail", "number", "message"})


def _drop_personal_fields(logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
    for key in _FORBIDDEN & event.keys():
        event[key] = "[withheld]"
    return event


class JsonLinesFormatter(logging.Formatter):
    """The libraries' own `logging` records (asyncpg, aiohttp) as JSON lines like structlog's.

    A record's exception is reported by its type only: a traceback, or an exception's text, may quote what a
    statement or a request carried. For the same reason only a message's first line is kept, and asyncio's only up
    to what it formats in: its "Task exception was never retrieved" goes on with the task's repr and the exception's
    text, its "Exception in callback ..." with the callback's arguments."""

    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any] = {
            "event": _fixed_part(record), "logger": record.name, "level": record.levelname.lower(),
            "timestamp": datetime.fromtimestamp(record.created, timezone.utc).isoformat().replace("+00:00", "Z"),
        }
        if record.exc_info and record.exc_info[0] is not None:
            event["error"] = record.exc_info[0].__name__
        return json.dumps(_drop_personal_fields(None, "", event), ensure_ascii=False)


def _fixed_part(record: logging.LogRecord) -> str:
    """The part of a library's message written by its authors, not formatted in from data: the first line; for
    asyncio, the words before the first that is not all letters, bar trailing punctuation (a repr, a callback's
    name, a number)."""
    text = record.getMessage().split("\n", 1)[0]
    if record.name == "asyncio" or record.name.startswith("asyncio."):
        words = text.split(" ")
        kept = words[: next((n for n, word in enumerate(words) if not word.rstrip("!.,;:").isalpha()), len(words))]
        text = " ".join(kept) or "asyncio report (withheld: it begins with formatted data)"
    return text


def write_line(line: str, stream: Any = None) -> None:
    """`line` and its newline in one write, flushed (default stderr). `print` writes the two apart, and where the
    stream is unbuffered (PYTHONUNBUFFERED) each is a system call: another process sharing the stream (a worker of
    `serve --workers N`) could put its line between them, in the middle of a log's JSON lines."""
    stream = stream if stream is not None else sys.stderr
    stream.write(line + "\n")
    stream.flush()


def configure_logging(level: int = logging.INFO, stream: Any = None) -> None:
    """JSON lines to `stream` (default stderr), from structlog and from the libraries' `logging` alike."""
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonLinesFormatter())
    logging.basicConfig(handlers=[handler], level=level, force=True)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _drop_personal_fields,
            structlog.processors.JSONRenderer(serializer=dumps_text),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        # One write a line, the newline included: `print` (PrintLogger) writes the two apart, and where the stream
        # is unbuffered (PYTHONUNBUFFERED, as container images set it) the workers of `serve --workers N`, which
        # share stderr, put lines into each other's (docs/performance.md, "Twenty-first pass").
        logger_factory=structlog.WriteLoggerFactory(file=stream),
        cache_logger_on_first_use=True,
    )


class JsonAccessLog(AbstractAccessLogger):
    """aiohttp's access log as one `http_request` JSON line per request, in the same stream as every other line.

    aiohttp's own access log writes Apache-style text through `logging`, which broke the JSON lines a log shipper
    reads. Only the path is logged, never the query string (console searches carry their terms there), with the
    method, status, body bytes, seconds and the peer address."""

    _log = structlog.get_logger("gateway.access")

    def log(self, request: Any, response: Any, time: float) -> None:
        self._log.info("http_request", method=request.method, path=request.path, status=response.status,
                       bytes=response.body_length, seconds=round(time, 6), remote=request.remote)
