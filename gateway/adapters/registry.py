"""Finding a jurisdiction's adapter by the module the configuration names (docs/configuration.md).

`adapter = "hk"` is gateway/adapters/hk.py; a dotted name (`adapter = "example.atlantis"`)
is any importable module. Either way the module defines `ADAPTER`, a
`JurisdictionAdapter` whose `code` is the jurisdiction's: a fourth jurisdiction is one
module and one configuration entry.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping

from gateway.adapters.base import JurisdictionAdapter


class AdapterError(ValueError):
    """The configured module is missing, has no ADAPTER, or speaks for another jurisdiction."""


def load_adapter(code: str, module_name: str) -> JurisdictionAdapter:
    qualified = module_name if "." in module_name else f"gateway.adapters.{module_name}"
    try:
        module = importlib.import_module(qualified)
    except ImportError as error:
        raise AdapterError(f"adapter module {qualified} cannot be imported: {error}") from None
    adapter = getattr(module, "ADAPTER", None)
    if not isinstance(adapter, JurisdictionAdapter):
        raise AdapterError(f"adapter module {qualified} defines no ADAPTER (a JurisdictionAdapter)")
    if adapter.code != code:
        raise AdapterError(f"adapter module {qualified} speaks for {adapter.code}, not {code}")
    return adapter


def load_adapters(modules: Mapping[str, str]) -> dict[str, JurisdictionAdapter]:
    """Jurisdiction code -> its adapter, for every configured jurisdiction."""
    return {code: load_adapter(code, module) for code, module in modules.items()}
