"""Prometheus metrics: the hub's counters, plus figures read from the database.

Counters of requests are those of the process, summed over the workers of
`gateway serve --workers N` (gateway/hub/counters.py), so a scrape reads the same totals
whichever worker answers; processes started one by one are scraped one by one, and
Prometheus sums them. The figures that matter across processes — ledger size, messages
accepted, outbox depth — come from PostgreSQL, the one shared engine, so every process
reports the same.
"""

from __future__ import annotations

import asyncio

from collections import Counter
from datetime import datetime

import asyncpg

from gateway.hub import outbox
from gateway.hub.collector import COLLECTOR_PAUSES
from gateway.hub.counters import Board
from gateway.hub.stages import STAGE_TIMES
from gateway.ledger import checkpoints
from gateway.protocol.errors import CATALOGUE

ACCEPTED_KINDS = ("new", "replayed")


def counter_board() -> Board:
    """A board for `Metrics`: messages accepted by kind, refusals by catalogue code."""
    return Board([f"accepted:{kind}" for kind in ACCEPTED_KINDS] + [f"refused:{code}" for code in sorted(CATALOGUE)])


class Metrics:
    """The hub's request counters, on `board` (a private one unless workers share theirs)."""

    def __init__(self, board: Board | None = None) -> None:
        self.board = board if board is not None else counter_board()
        self._other_refusals = Counter[str]()  # a code outside the catalogue would be a bug, but still counted

    def accepted(self, replayed: bool) -> None:
        self.board.add("accepted:replayed" if replayed else "accepted:new")

    def refused(self, code: str) -> None:
        name = f"refused:{code}"
        if name in self.board.index:
            self.board.add(name)
        else:
            self._other_refusals[code] += 1

    def _counts(self, prefix: str) -> list[tuple[str, int]]:
        """(label, count) of every counter under `prefix` that is not zero, by label."""
        found = Counter[str]({name[len(prefix):]: int(self.board.total(name)) for name in self.board.names if name.startswith(prefix)})
        if prefix == "refused:":
            found.update(self._other_refusals)
        return sorted((label, count) for label, count in found.items() if count)

    async def render(self, pool: asyncpg.Pool, now: datetime, origin: str | None = None) -> str:
        row = await pool.fetchrow(
            "SELECT (SELECT size FROM ledger_size) AS ledger_size, (SELECT count(*) FROM messages) AS messages"
        )
        delivery = await outbox.delivery_figures(pool, now)
        lines = [
            "# HELP gateway_messages_accepted_total Messages answered with a hub receipt.",
            "# TYPE gateway_messages_accepted_total counter",
            *(f'gateway_messages_accepted_total{{kind="{kind}"}} {count}' for kind, count in self._counts("accepted:")),
            "# HELP gateway_refusals_total Requests refused, by catalogue code.",
            "# TYPE gateway_refusals_total counter",
            *(f'gateway_refusals_total{{code="{code}"}} {count}' for code, count in self._counts("refused:")),
            *STAGE_TIMES.lines(),
            *COLLECTOR_PAUSES.lines(),
            "# HELP gateway_process_tasks Asyncio tasks alive in the process that answers (with --workers, one worker): a leak grows it.",
            "# TYPE gateway_process_tasks gauge",
            f"gateway_process_tasks {len(asyncio.all_tasks())}",
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
        if origin is not None:
            lines += await _ledger_lines(pool, now, origin)
        return "\n".join(lines) + "\n"


async def _ledger_lines(pool: asyncpg.Pool, now: datetime, origin: str) -> list[str]:
    """Checkpoints, witnesses and continuous verification (docs/protocol.md §13.4-§13.6), from the database."""
    latest = await checkpoints.latest_checkpoint(pool, origin)
    witnesses = await checkpoints.witness_records(pool)
    verified = await checkpoints.latest_verification(pool)
    size = latest.size if latest else 0
    lines = [
        "# HELP gateway_checkpoint_size Entries covered by the latest signed checkpoint (from the database).",
        "# TYPE gateway_checkpoint_size gauge",
        f"gateway_checkpoint_size {size}",
        "# HELP gateway_checkpoint_age_seconds Age of the latest signed checkpoint.",
        "# TYPE gateway_checkpoint_age_seconds gauge",
        f"gateway_checkpoint_age_seconds {(now - latest.signed_at).total_seconds() if latest else 0:.3f}",
        "# HELP gateway_witness_lag_entries Entries between the latest checkpoint and what each witness last cosigned.",
        "# TYPE gateway_witness_lag_entries gauge",
        *(f'gateway_witness_lag_entries{{witness="{w.witness}"}} {max(size - w.size, 0) if w.origin == origin else size}' for w in witnesses),
        "# HELP gateway_checkpoint_signing_stopped 1 if a witness holds a larger tree of this origin: the database was rolled back.",
        "# TYPE gateway_checkpoint_signing_stopped gauge",
        f"gateway_checkpoint_signing_stopped {1 if await checkpoints.rollback_reported(pool, origin) else 0}",
        "# HELP gateway_ledger_verification_intact 1 if the last full verification found the ledger intact, else 0.",
        "# TYPE gateway_ledger_verification_intact gauge",
    ]
    if verified is not None:
        lines += [
            f"gateway_ledger_verification_intact {1 if verified['intact'] else 0}",
            "# HELP gateway_ledger_verification_age_seconds Time since the last full verification started.",
            "# TYPE gateway_ledger_verification_age_seconds gauge",
            f"gateway_ledger_verification_age_seconds {(now - verified['started_at']).total_seconds():.3f}",
            "# HELP gateway_ledger_verification_first_bad_index The first entry the last verification found bad, -1 if none.",
            "# TYPE gateway_ledger_verification_first_bad_index gauge",
            f"gateway_ledger_verification_first_bad_index {verified['first_bad_index'] if verified['first_bad_index'] is not None else -1}",
        ]
    return lines
