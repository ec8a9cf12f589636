"""Where the language-neutral contract (schemas/, keys/, conformance/) lives at run time.

In a wheel the three folders ship as `gateway/_contract/*`; in a checkout (editable
install or tests) they sit at the repository root, one level above the package.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def contract_dir(name: str) -> Path:
    """The folder `name` (`schemas`, `keys` or `conformance`) of the installed contract."""
    for candidate in (_PACKAGE / "_contract" / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"the contract folder {name!r} is not installed next to {_PACKAGE}")
