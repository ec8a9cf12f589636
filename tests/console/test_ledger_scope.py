"""Who sees the console's own ledger entries (gateway/ledger/scope.py): a payload view concerns the viewed
message's parties; person searches and account changes concern auditors only."""

from __future__ import annotations

import asyncio

from gateway.ledger import scope
from gateway.ledger.entries import LedgerEntry


class _Messages:
    """An executor that knows one message, CN-GD -> HK."""

    async def fetch(self, sql: str, ids: list) -> list[tuple]:
        assert "FROM messages" in sql
        return [(value, "CN-GD", "HK") for value in ids]


def _parties(entry: LedgerEntry) -> set[str]:
    return asyncio.run(scope.parties_of(_Messages(), [entry.canonical()]))[0]


def test_a_payload_view_is_seen_by_the_messages_parties_and_auditors():
    viewed = LedgerEntry("payload-viewed", "2026-11-28T12:00:00Z", {
        "message_id": "01a2251e-0000-7000-8000-000000000001", "officer": "5f0c3c3e-1111-4222-8333-444455556666", "reason_digest": "00" * 32,
    })
    parties = _parties(viewed)
    assert parties == {"CN-GD", "HK"}
    assert scope.may_see("HK", parties) and scope.may_see(scope.AUDITOR, parties) and not scope.may_see("MO", parties)


def test_person_searches_and_account_changes_are_for_auditors_only():
    for entry in (
        LedgerEntry("person-searched", "2026-11-28T12:00:00Z", {"officer": "p", "reason_digest": "00" * 32, "results": 1}),
        LedgerEntry("officer-changed", "2026-11-28T12:00:00Z", {"officer": "p", "change": "added", "role": "officer",
                                                                 "jurisdictions": ["HK"], "payload_right": False}),
    ):
        parties = _parties(entry)
        assert not any(scope.may_see(code, parties) for code in ("CN-GD", "HK", "MO"))
        assert scope.may_see(scope.AUDITOR, parties)
