"""What the console needs from the configuration, resolved once (docs/console.md, docs/configuration.md `[console]`).

Kept apart from the handlers so that `gateway.hub.http.settings_for` can build it
without importing the console's pages.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.config import GatewayConfig

BLIND_INDEX_KEY_FILE = "console-blind-index.key"


@dataclass(frozen=True, slots=True)
class ConsoleRuntime:
    """The console's settings as the app uses them."""

    session_idle_seconds: int = 15 * 60
    session_max_seconds: int = 8 * 3600
    blind_index_key: Path | None = None
    """The file holding the person blind index's key; None: find by person is off."""
    create_blind_index_key: bool = False
    """Test mode without a configured key: make DATA_DIR/console-blind-index.key if the data directory exists."""


def console_settings(config: GatewayConfig) -> ConsoleRuntime | None:
    """The console's runtime settings from a checked configuration, or None when the console is disabled."""
    console = config.console
    if not console.enabled:
        return None
    key = console.blind_index_key
    create = False
    if key is None and config.mode == "test":
        key, create = config.data_dir / BLIND_INDEX_KEY_FILE, True
    return ConsoleRuntime(
        session_idle_seconds=console.session_idle_minutes * 60,
        session_max_seconds=console.session_max_hours * 3600,
        blind_index_key=key,
        create_blind_index_key=create,
    )
