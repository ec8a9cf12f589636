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
