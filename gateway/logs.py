"""Logging: structlog, JSON lines on stderr, configured once at start.

What the gateway logs is metadata only — message ids, case ids, routes, codes,
counts. Handlers bind that context; nothing from a payload is ever passed to a log
call, and a processor refuses keys that could carry it, as a second line of defence.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog
from aiohttp.abc import AbstractAccessLogger

_FORBIDDEN = frozenset({"payload", "body", "name", "names", "person", "text", "detail", "number", "message"})


def _drop_personal_fields(logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
    for key in _FORBIDDEN & event.keys():
        event[key] = "[withheld]"
    return event


def configure_logging(level: int = logging.INFO, stream: Any = None) -> None:
    """JSON lines to `stream` (default stderr)."""
    stream = stream or sys.stderr
    logging.basicConfig(format="%(message)s", stream=stream, level=level, force=True)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _drop_personal_fields,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
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
