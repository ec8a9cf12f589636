"""Personal data never reaches a log: watched over the whole test session (issue 3, "Operability").

Loaded as a pytest plugin. At the start of the session every log record — the
gateway's structlog lines and every standard-library logger (aiohttp's access log
included) — is also written to one session file. At the end, that file and the
embedded PostgreSQL server's log are searched for every person's name, identity
number, phone and email that the shipped examples (which the tests send) contain.
Finding one fails the session; the report names the kind of datum and the file,
never the datum.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from gateway.contract import contract_dir
from gateway.store.embedded import PGDATA_NAME, SERVER_LOG_NAME

_PERSONAL_MEMBERS = {"family": "name", "given": "name", "number": "identity number", "phone": "phone", "email": "email"}


def personal_data() -> dict[str, str]:
    """Every personal datum of the shipped schema examples, mapped to its kind."""
    found: dict[str, str] = {}

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, member in value.items():
                if key in _PERSONAL_MEMBERS and isinstance(member, str) and len(member) >= 2:
                    found[member] = _PERSONAL_MEMBERS[key]
                walk(member)
        elif isinstance(value, list):
            for member in value:
                walk(member)

    for schema in sorted(contract_dir("schemas").glob("*.json")):
        walk(json.loads(schema.read_text("utf-8")).get("examples", []))
    return found


@pytest.fixture(scope="session", autouse=True)
def logs_hold_no_personal_data(database_server) -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="gba-session-logs-"))
    session_log = folder / "session.log"
    handler = logging.FileHandler(session_log, encoding="utf-8")
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(min(root.level, logging.INFO))
    sink = session_log.open("a", encoding="utf-8")

    def tee(logger: Any, method: str, event: dict[str, Any]) -> str:
        line = json.dumps(event, default=str, ensure_ascii=False)
        sink.write(line + "\n")
        return line

    structlog.configure(
        processors=[structlog.processors.add_log_level, tee],
        logger_factory=structlog.PrintLoggerFactory(),
        cache_logger_on_first_use=False,
    )
    yield session_log
    sink.close()
    root.removeHandler(handler)
    handler.close()
    sources = [session_log]
    if database_server.data_dir is not None:
        sources.append(database_server.data_dir / PGDATA_NAME / SERVER_LOG_NAME)
    leaks = [f"{kind} in {source.name}" for source in sources if source.exists() for kind in leaks_in(source.read_text("utf-8", errors="replace"))]
    assert not leaks, "personal data reached a log: " + "; ".join(leaks)


def leaks_in(text: str) -> list[str]:
    """The kinds of personal datum (never the datum) that `text` contains."""
    data = personal_data()
    assert data, "no personal data found in the examples: the watch would prove nothing"
    return sorted({kind for datum, kind in data.items() if _appears(datum, text)})


def _appears(datum: str, text: str) -> bool:
    """`datum` in `text`; a Latin-script datum only as a whole word ("CHAN" is not in "CHANGED")."""
    if not datum.isascii():
        return datum in text
    return re.search(rf"(?<![A-Za-z0-9]){re.escape(datum)}(?![A-Za-z0-9])", text) is not None
