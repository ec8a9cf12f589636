"""The simulator's durable state: one sqlite file in its state folder (docs/simulator.md, "State").

Everything that must survive a restart lives here: each delivered message with the
receipt it was answered with (so that a redelivery gets the same bytes, PROTO-9.4-3),
the cases, the outgoing messages and their hub and receiver receipts, the inbox cursor
(§12.6) and the delivery counts tests read. Each write is one short transaction on the
event loop's thread; the write that records a delivery also records its receipt, the
application's effects and the messages they cause, so a message reaches the
application exactly once.
"""

from __future__ import annotations

import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from gateway.protocol.message import Message
from gateway.simulator.application import CaseChange, Decision, OutgoingMessage

STATE_FILE = "simulator.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    message_id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    sender TEXT NOT NULL,
    case_id TEXT NOT NULL,
    digest TEXT NOT NULL,
    ledger_index INTEGER NOT NULL,
    receipt BLOB,
    application_count INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS wire (
    message_id TEXT PRIMARY KEY,
    count INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS cases (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    peer TEXT NOT NULL,
    role TEXT NOT NULL,
    state TEXT NOT NULL,
    outcome TEXT
);
CREATE TABLE IF NOT EXISTS case_messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT NOT NULL UNIQUE,
    case_id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS outgoing (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    case_id TEXT NOT NULL,
    compact BLOB NOT NULL,
    digest TEXT NOT NULL,
    hub_status TEXT NOT NULL DEFAULT 'queued',
    ledger_index INTEGER,
    hub_receipt BLOB,
    refusal_code TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    receiver_receipt_status TEXT,
    receiver_receipt_code TEXT
);
CREATE TABLE IF NOT EXISTS witness_checkpoints (
    origin TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    root BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS renewal_links (
    old_id TEXT PRIMARY KEY,
    new_id TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS renewal_links_new_id ON renewal_links (new_id);
CREATE TABLE IF NOT EXISTS held_receipts (
    ledger_index INTEGER PRIMARY KEY,
    since REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS inbox (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    cursor INTEGER NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class CaseView:
    """A case as this jurisdiction holds it; `messages` are the ids sent and received, in order."""

    id: str
    kind: str
    peer: str
    role: str
    state: str
    outcome: str | None
    messages: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class OutgoingView:
    """A message this jurisdiction sent: what the hub and the receiver said about it."""

    id: str
    type: str
    case: str
    hub_status: str
    """`queued` (stored, not yet accepted), `accepted` (a verified hub receipt) or `refused` (a final problem)."""
    ledger_index: int | None
    refusal_code: str | None
    receiver_receipt_status: str | None
    receiver_receipt_code: str | None
    attempts: int
    compact: bytes
    """The message exactly as signed and sent (a resend is these bytes again, §8.2)."""


@dataclass(frozen=True, slots=True)
class StoredDelivery:
    """A delivery already taken in: its type, and the receipt it was answered with (None for a receipt)."""

    message_id: str
    type: str
    receipt: bytes | None


@dataclass(frozen=True, slots=True)
class QueuedMessage:
    """The next outgoing message to send: its exact bytes, resent unchanged until the hub answers."""

    id: str
    type: str
    compact: bytes
    digest: str
    attempts: int


def _carry_over_renewals(connection: sqlite3.Connection) -> None:
    """State files from before `renewal_links` kept `renewals` (new_id UNIQUE, which the one-hop links break)."""
    if connection.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'renewals'").fetchone():
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("INSERT OR IGNORE INTO renewal_links (old_id, new_id) SELECT old_id, new_id FROM renewals")
        connection.execute("DROP TABLE renewals")
        connection.execute("COMMIT")


class SimulatorState:
    """The sqlite state of one simulated jurisdiction. Not thread-safe: use it from one event loop."""

    def __init__(self, connection: sqlite3.Connection, on_change: Callable[[], None]) -> None:
        self._db = connection
        self._on_change = on_change

    @classmethod
    def open(cls, state_dir: Path, on_change: Callable[[], None] = lambda: None) -> SimulatorState:
        """Open (or create) the state in `state_dir`."""
        state_dir.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(state_dir / STATE_FILE, isolation_level=None)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        connection.executescript(_SCHEMA)
        _carry_over_renewals(connection)
        return cls(connection, on_change)

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        self._on_change()

    # --- deliveries ---

    def count_wire_delivery(self, message_id: str) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO wire (message_id, count) VALUES (?, 1) ON CONFLICT (message_id) DO UPDATE SET count = count + 1",
                (message_id,),
            )

    def stored_delivery(self, message_id: str) -> StoredDelivery | None:
        row = self._db.execute(
            "SELECT message_id, type, receipt FROM deliveries WHERE message_id = ?", (message_id,)
        ).fetchone()
        return None if row is None else StoredDelivery(*row)

    def record_delivery(self, message: Message, ledger_index: int, receipt: OutgoingMessage, decision: Decision) -> None:
        """One delivered message, its receipt, the application's effects and the messages they cause: one transaction."""
        with self._transaction() as db:
            self._insert_delivery(db, message, ledger_index, receipt.compact)
            self._save_case(db, decision.case)
            self._add_case_message(db, message.id, message.case)
            for outgoing in decision.outgoing:
                self._queue(db, outgoing)

    def record_delivered_receipt(self, receipt: Message, ledger_index: int) -> None:
        """A delivered receipt of a message this jurisdiction sent: recorded against that message (PROTO-9.4-2)."""
        with self._transaction() as db:
            self._insert_delivery(db, receipt, ledger_index, None)
            db.execute(
                "UPDATE outgoing SET receiver_receipt_status = ?, receiver_receipt_code = ? WHERE id = ?",
                (receipt.body["status"], receipt.body.get("code"), receipt.body["message_id"]),
            )

    def wire_deliveries(self, message_id: str) -> int:
        row = self._db.execute("SELECT count FROM wire WHERE message_id = ?", (message_id,)).fetchone()
        return 0 if row is None else row[0]

    def application_deliveries(self, message_id: str) -> int:
        row = self._db.execute("SELECT application_count FROM deliveries WHERE message_id = ?", (message_id,)).fetchone()
        return 0 if row is None else row[0]

    # --- cases and outgoing messages ---

    def open_flow(self, decision: Decision) -> None:
        """A case this jurisdiction opens, with its opening message queued: one transaction."""
        with self._transaction() as db:
            self._save_case(db, decision.case)
            for outgoing in decision.outgoing:
                self._queue(db, outgoing)

    def case_record(self, case_id: str) -> CaseChange | None:
        row = self._db.execute("SELECT id, kind, peer, role, state, outcome FROM cases WHERE id = ?", (case_id,)).fetchone()
        return None if row is None else CaseChange(*row)

    def case(self, case_id: str) -> CaseView | None:
        record = self.case_record(case_id)
        if record is None:
            return None
        messages = tuple(
            row[0] for row in self._db.execute("SELECT message_id FROM case_messages WHERE case_id = ? ORDER BY seq", (case_id,))
        )
        return CaseView(record.id, record.kind, record.peer, record.role, record.state, record.outcome, messages)

    def next_queued(self) -> QueuedMessage | None:
        """The oldest outgoing message the hub has not answered: messages go out in the order they were written."""
        row = self._db.execute(
            "SELECT id, type, compact, digest, attempts FROM outgoing WHERE hub_status = 'queued' ORDER BY seq LIMIT 1"
        ).fetchone()
        return None if row is None else QueuedMessage(*row)

    def note_attempt(self, message_id: str) -> None:
        with self._transaction() as db:
            db.execute("UPDATE outgoing SET attempts = attempts + 1 WHERE id = ?", (message_id,))

    def mark_accepted(self, message_id: str, ledger_index: int, hub_receipt: bytes) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE outgoing SET hub_status = 'accepted', ledger_index = ?, hub_receipt = ?, attempts = attempts + 1 WHERE id = ?",
                (ledger_index, hub_receipt, message_id),
            )

    def renew_unaccepted(self, old_id: str, new_id: str, compact: bytes, digest: str) -> None:
        """Send the content of a message the hub never accepted as a new message, `new_id` (PROTO-8.1-3), in its place
        in the queue and its case; `outgoing(old_id)` finds it under its new id."""
        with self._transaction() as db:
            renewed = db.execute(
                "UPDATE outgoing SET id = ?, compact = ?, digest = ?, attempts = attempts + 1 WHERE id = ? AND hub_status = 'queued'",
                (new_id, compact, digest, old_id),
            ).rowcount
            if renewed:
                db.execute("UPDATE case_messages SET message_id = ? WHERE message_id = ?", (new_id, old_id))
                # Every earlier id points at the newest: a clock that stays behind renews again and again.
                db.execute("UPDATE renewal_links SET new_id = ? WHERE new_id = ?", (new_id, old_id))
                db.execute("INSERT INTO renewal_links (old_id, new_id) VALUES (?, ?)", (old_id, new_id))

    def mark_refused(self, message_id: str, code: str) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE outgoing SET hub_status = 'refused', refusal_code = ?, attempts = attempts + 1 WHERE id = ?",
                (code, message_id),
            )

    def outgoing(self, message_id: str) -> OutgoingView | None:
        """The message sent as `message_id`, or sent again as a new message in its place (`renew_unaccepted`)."""
        while (renewal := self._db.execute("SELECT new_id FROM renewal_links WHERE old_id = ?", (message_id,)).fetchone()):
            message_id = renewal[0]  # one hop, but for links carried over from before they were kept that way
        row = self._db.execute(
            "SELECT id, type, case_id, hub_status, ledger_index, refusal_code, receiver_receipt_status, receiver_receipt_code,"
            " attempts, compact FROM outgoing WHERE id = ?",
            (message_id,),
        ).fetchone()
        return None if row is None else OutgoingView(*row)

    # --- witness (C2SP tlog-witness): the latest checkpoint cosigned per origin ---

    def witnessed(self, origin: str) -> tuple[int, bytes] | None:
        row = self._db.execute("SELECT size, root FROM witness_checkpoints WHERE origin = ?", (origin,)).fetchone()
        return None if row is None else (row[0], bytes(row[1]))

    def witness(self, origin: str, size: int, root: bytes) -> None:
        """Record the checkpoint just cosigned: durable before the cosignature is answered."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO witness_checkpoints (origin, size, root) VALUES (?, ?, ?)"
                " ON CONFLICT (origin) DO UPDATE SET size = excluded.size, root = excluded.root",
                (origin, size, root),
            )

    # --- inbox cursor (§12.6) ---

    def cursor(self) -> int:
        row = self._db.execute("SELECT cursor FROM inbox WHERE id = 1").fetchone()
        return -1 if row is None else row[0]

    def held_receipts(self) -> dict[int, float]:
        """Ledger index -> since when (time.time()) of each delivered receipt answered "later" and not yet taken in."""
        return dict(self._db.execute("SELECT ledger_index, since FROM held_receipts").fetchall())

    def hold_receipt(self, ledger_index: int, since: float) -> None:
        with self._transaction() as db:
            db.execute("INSERT INTO held_receipts (ledger_index, since) VALUES (?, ?) ON CONFLICT DO NOTHING", (ledger_index, since))

    def release_receipt(self, ledger_index: int) -> None:
        if self._db.execute("SELECT 1 FROM held_receipts WHERE ledger_index = ?", (ledger_index,)).fetchone():
            with self._transaction() as db:
                db.execute("DELETE FROM held_receipts WHERE ledger_index = ?", (ledger_index,))

    def set_cursor(self, cursor: int) -> None:
        with self._transaction() as db:
            db.execute("INSERT INTO inbox (id, cursor) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET cursor = excluded.cursor", (cursor,))

    # --- summary ---

    def summary(self) -> dict[str, Any]:
        """Ids, states and counts only: what `GET /v1/simulator/state` shows."""
        cases = [
            {"id": row[0], "kind": row[1], "peer": row[2], "role": row[3], "state": row[4], "outcome": row[5]}
            for row in self._db.execute("SELECT id, kind, peer, role, state, outcome FROM cases ORDER BY rowid")
        ]
        outgoing = dict(self._db.execute("SELECT hub_status, count(*) FROM outgoing GROUP BY hub_status").fetchall())
        wire = self._db.execute("SELECT coalesce(sum(count), 0) FROM wire").fetchone()[0]
        application = self._db.execute("SELECT coalesce(sum(application_count), 0) FROM deliveries").fetchone()[0]
        return {
            "cases": cases,
            "outgoing": {status: outgoing.get(status, 0) for status in ("queued", "accepted", "refused")},
            "deliveries": {"wire": wire, "application": application},
            "cursor": self.cursor(),
        }

    # --- inside transactions ---

    @staticmethod
    def _insert_delivery(db: sqlite3.Connection, message: Message, ledger_index: int, receipt: bytes | None) -> None:
        db.execute(
            "INSERT INTO deliveries (message_id, type, sender, case_id, digest, ledger_index, receipt, application_count)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, 1)",
            (message.id, message.type, message.sender, message.case, message.digest, ledger_index, receipt),
        )

    @staticmethod
    def _save_case(db: sqlite3.Connection, case: CaseChange) -> None:
        db.execute(
            "INSERT INTO cases (id, kind, peer, role, state, outcome) VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET state = excluded.state, outcome = excluded.outcome",
            (case.id, case.kind, case.peer, case.role, case.state, case.outcome),
        )

    @staticmethod
    def _add_case_message(db: sqlite3.Connection, message_id: str, case_id: str) -> None:
        db.execute("INSERT OR IGNORE INTO case_messages (message_id, case_id) VALUES (?, ?)", (message_id, case_id))

    @classmethod
    def _queue(cls, db: sqlite3.Connection, message: OutgoingMessage) -> None:
        db.execute(
            "INSERT INTO outgoing (id, type, case_id, compact, digest) VALUES (?, ?, ?, ?, ?)",
            (message.id, message.type, message.case, message.compact, message.digest),
        )
        cls._add_case_message(db, message.id, message.case)
