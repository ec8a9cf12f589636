"""Conformance cases as data (docs/conformance.md): loading, selecting, and the verdict of one case.

Cases live in `conformance/cases/*.json` (`gba-conformance-cases/v1`), one file per role and
area; each cites the requirement ids of docs/protocol.md it checks and is a list of steps
(gateway/conformance/recipes.py says what a step may hold).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from fnmatch import fnmatch
from typing import Any

from gateway.contract import contract_dir


@dataclass(frozen=True)
class Case:
    """One case of `role` (hub or endpoint): the requirements it checks and its steps, as the JSON gives them."""

    id: str
    title: str
    requirements: tuple[str, ...]
    level: str
    role: str
    tags: tuple[str, ...]
    steps: tuple[dict[str, Any], ...]
    profile: str = ""
    """The set-up the case needs of the target (`mutual-tls`, `rate-limit`, `body-deadline`); skipped without it."""

    @property
    def expect(self) -> dict[str, Any]:
        """The expectation of the judged (last expecting) step, for reports."""
        return next((step["expect"] for step in reversed(self.steps) if "expect" in step), {})


@dataclass
class Result:
    """The verdict of one case: pass, fail (expected and actual differ), skip (with why) or error; and the wire evidence."""

    case: str
    title: str
    requirements: list[str]
    verdict: str
    expected: dict[str, Any]
    actual: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    evidence: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    tags: list[str] = field(default_factory=list)


def _steps_of(item: dict[str, Any]) -> tuple[dict[str, Any], ...]:
    if "steps" in item:
        return tuple(item["steps"])
    step = {name: item[name] for name in ("template", "mutation", "splice", "expect") if name in item}
    return (step,)


def load_cases(role: str = "hub") -> list[Case]:
    """The shipped cases of `role` (`hub` or `endpoint`), in file and list order."""
    cases = []
    for path in sorted((contract_dir("conformance") / "cases").glob("*.json")):
        document = json.loads(path.read_text("utf-8"))
        if document.get("role") != role:
            continue
        for item in document["cases"]:
            cases.append(Case(item["id"], item["title"], tuple(item["requirements"]), item["level"], role,
                              tuple(item["tags"]), _steps_of(item), item.get("profile", "")))
    return cases


def select(cases: list[Case], ids: list[str], pattern: str | None) -> list[Case]:
    """The cases named by `ids` (all when none) whose id, title or tags match `pattern` (fnmatch, case-insensitive)."""
    chosen = [case for case in cases if not ids or case.id in ids]
    if pattern:
        wanted = pattern.lower() if any(c in pattern for c in "*?[") else f"*{pattern.lower()}*"
        chosen = [case for case in chosen if any(fnmatch(text.lower(), wanted) for text in (case.id, case.title, *case.tags))]
    return chosen
