"""Prometheus metrics: this process's counters, plus figures read from the database.

Counters of requests are per process (Prometheus sums them across processes); the
figures that matter across processes — ledger size, messages accepted, outbox depth —
come from PostgreSQL, the one shared engine, so every process reports the same.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime

import asyncpg

from gateway.hub import outbox


class Metrics:
    def __init__(self) -> None:
        self._accepted = Counter[str]()
        self._refused = Counter[str]()

    def accepted(self, replayed: bool) -> None:
        self._accepted["replayed" if replayed else "new"] += 1

    def refused(self, code: str) -> None:
        self._refused[code] += 1

    async def render(self, pool: asyncpg.Pool, now: datetime) -> str:
        row = await pool.fetchrow(
            "SELECT (SELECT size FROM ledger_size) AS ledger_size, (SELECT count(*) FROM messages) AS messages"
        )
        delivery = await outbox.delivery_figures(pool, now)
        lines = [
            "# HELP gateway_messages_accepted_total Messages answered with a hub receipt by this process.",
            "# TYPE gateway_messages_accepted_total counter",
            *(f'gateway_messages_accepted_total{{kind="{kind}"}} {count}' for kind, count in sorted(self._accepted.items())),
            "# HELP gateway_refusals_total Requests refused by this process, by catalogue code.",
            "# TYPE gateway_refusals_total counter",
            *(f'gateway_refusals_total{{code="{code}"}} {count}' for code, count in sorted(self._refused.items())),
            "# HELP gateway_ledger_size Entries in the audit ledger (from the database).",
            "# TYPE gateway_ledger_size gauge",
            f"gateway_ledger_size {row['ledger_size']}",
            "# HELP gateway_messages_stored Accepted messages stored (from the database).",
            "# TYPE gateway_messages_stored gauge",
            f"gateway_messages_stored {row['messages']}",
            "# HELP gateway_outbox_depth Messages queued for delivery, not yet acknowledged (from the database).",
            "# TYPE gateway_outbox_depth gauge",
            f"gateway_outbox_depth {delivery['depth']}",
            "# HELP gateway_outbox_oldest_undelivered_seconds Age of the oldest queued delivery, 0 when none (from the database).",
            "# TYPE gateway_outbox_oldest_undelivered_seconds gauge",
            f"gateway_outbox_oldest_undelivered_seconds {float(delivery['oldest_seconds']):.3f}",
            "# HELP gateway_dead_letters Deliveries in the dead letters, waiting for an operator's retry (from the database).",
            "# TYPE gateway_dead_letters gauge",
            f"gateway_dead_letters {delivery['dead']}",
            "# HELP gateway_key_expiry_seconds Seconds until each unrevoked key's validity ends (from the database).",
            "# TYPE gateway_key_expiry_seconds gauge",
            *(
                f'gateway_key_expiry_seconds{{kid="{key["kid"]}",owner="{key["owner"]}",use="{key["use"]}"}} {key["seconds"]:.0f}'
                for key in await pool.fetch(
                    "SELECT kid, owner, use, extract(epoch FROM not_after - now()) AS seconds FROM keys"
                    " WHERE revoked_at IS NULL ORDER BY kid"
                )
            ),
        ]
        return "\n".join(lines) + "\n"
