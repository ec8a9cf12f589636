"""The requirements and the error catalogue of docs/protocol.md, as the suite ships them (conformance/*.json).

docs/protocol.md is not in the wheel, yet a report must quote the requirement a failed
case checks, and the suite must know the catalogue (§11.2) without importing the
hub's code. So both are extracted from the spec into data files under `conformance/`
(`requirements.json`, `catalogue.json`); a test keeps them in step with the spec.

Regenerate after editing the spec:

    python -m gateway.conformance.requirements docs/protocol.md conformance/
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

from gateway.contract import contract_dir

REQUIREMENTS_FORMAT = "gba-conformance-requirements/v1"
CATALOGUE_FORMAT = "gba-conformance-catalogue/v1"

_DEFINITION = re.compile(r"\*\*\[(PROTO-(\d+)\.(\d+)-\d+)\]\*\*")
_CATALOGUE_ROW = re.compile(r"^\| `([a-z0-9-]+)` \| (\d{3}) \| (.+?) \| (PROTO-[\d.]+-\d+) \|$", re.MULTILINE)


@dataclass(frozen=True)
class Requirement:
    """One requirement of docs/protocol.md: its id, section, keyword level and text (one paragraph)."""

    id: str
    section: str
    level: str
    text: str


@dataclass(frozen=True)
class CatalogueCode:
    """One row of docs/protocol.md §11.2."""

    code: str
    status: int
    title: str
    requirement: str


def level_of(text: str) -> str:
    """MUST for a requirement that says MUST, MUST NOT, SHALL or REQUIRED (BCP 14, §1.1); else SHOULD, MAY or informative."""
    if re.search(r"\b(MUST|SHALL|REQUIRED)\b", text):
        return "MUST"
    if re.search(r"\b(SHOULD|RECOMMENDED)\b", text):
        return "SHOULD"
    if re.search(r"\b(MAY|OPTIONAL)\b", text):
        return "MAY"
    return "informative"


def extract_requirements(markdown: str) -> list[Requirement]:
    """Every requirement defined in `markdown` (§1.2: `**[PROTO-x.y-n]**` opens its paragraph), in document order."""
    requirements = []
    for match in _DEFINITION.finditer(markdown):
        end = markdown.find("\n\n", match.end())
        paragraph = " ".join(markdown[match.end(): end if end >= 0 else len(markdown)].split())
        requirements.append(Requirement(match.group(1), f"{match.group(2)}.{match.group(3)}", level_of(paragraph), paragraph))
    return requirements


def extract_catalogue(markdown: str) -> list[CatalogueCode]:
    """The rows of the table in §11.2 (between its heading and §11.3)."""
    section = markdown.split("### 11.2 Catalogue", 1)[1].split("### 11.3", 1)[0]
    return [CatalogueCode(code, int(status), title, requirement) for code, status, title, requirement in _CATALOGUE_ROW.findall(section)]


def documents(markdown: str) -> dict[str, dict[str, object]]:
    """The two data files for `markdown`: file name -> document."""
    return {
        "requirements.json": {"format": REQUIREMENTS_FORMAT, "source": "docs/protocol.md",
                              "requirements": [asdict(r) for r in extract_requirements(markdown)]},
        "catalogue.json": {"format": CATALOGUE_FORMAT, "source": "docs/protocol.md §11.2",
                           "codes": [asdict(c) for c in extract_catalogue(markdown)]},
    }


def render(document: dict[str, object]) -> str:
    return json.dumps(document, indent=1, ensure_ascii=False) + "\n"


@cache
def requirements() -> dict[str, Requirement]:
    """The shipped requirements by id."""
    document = json.loads((contract_dir("conformance") / "requirements.json").read_text("utf-8"))
    return {item["id"]: Requirement(**item) for item in document["requirements"]}


@cache
def catalogue() -> dict[str, CatalogueCode]:
    """The shipped catalogue by code."""
    document = json.loads((contract_dir("conformance") / "catalogue.json").read_text("utf-8"))
    return {item["code"]: CatalogueCode(**item) for item in document["codes"]}


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m gateway.conformance.requirements docs/protocol.md conformance/", file=sys.stderr)
        return 2
    markdown = Path(argv[0]).read_text("utf-8")
    for name, document in documents(markdown).items():
        (Path(argv[1]) / name).write_text(render(document), "utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
