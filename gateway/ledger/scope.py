"""Who may see which ledger entry (docs/protocol.md §13.6): the parties of each entry, and auditors.

An entry holds ids and codes, never personal data, but which case talks to whom is
itself the parties' business. A jurisdiction sees an entry when it is a party to it:

| kind | parties |
| --- | --- |
| `accepted` | `from`, `to` |
| `refused` | `from` (the owner of the signing key) |
| `delivered`, `receipt-received`, `dead-lettered`, `retried` | the sender and receiver of the message the entry names |
| `withdrawn`, `cancelled`, `deadline-passed` | the case's two parties |
| `key-added`, `key-rotated`, `key-revoked` | the key's owner; a hub key's entries concern every jurisdiction |
| `trust-list-imported` | every jurisdiction |
| `payload-viewed`, `payload-purged` | the sender and receiver of the message whose payload an officer viewed, or that was purged |
| `person-searched`, `officer-changed`, `subject-exported` | nobody but auditors (the console's and operators' own oversight) |

Auditors see every entry. Checkpoints and consistency proofs are public.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

EVERYONE = "*"
AUDITOR = "auditor"

_MESSAGE_KINDS = frozenset({"delivered", "receipt-received", "dead-lettered", "retried", "payload-viewed", "payload-purged"})
_AUDITOR_KINDS = frozenset({"person-searched", "officer-changed", "subject-exported"})
_CASE_KINDS = frozenset({"withdrawn", "cancelled", "deadline-passed"})
_KEY_KINDS = frozenset({"key-added", "key-rotated", "key-revoked"})


def _direct_parties(entry: dict[str, Any]) -> set[str] | None:
    """The parties readable from the entry itself, or None when the message or case tables must say."""
    kind = entry.get("kind")
    if kind == "accepted":
        return {entry["from"], entry["to"]}
    if kind == "refused":
        return {entry["from"]}
    if kind in _KEY_KINDS:
        return {EVERYONE} if entry.get("owner") == "hub" else {entry["owner"]}
    if kind == "trust-list-imported":
        return {EVERYONE}
    if kind in _AUDITOR_KINDS:
        return set()
    return None


async def parties_of(executor: Any, entries: Sequence[bytes]) -> list[set[str]]:
    """The parties of each entry (canonical bytes), with at most two lookups for the lot."""
    parsed = [json.loads(entry) for entry in entries]
    direct = [_direct_parties(entry) for entry in parsed]
    message_ids = {entry["message_id"] for entry, found in zip(parsed, direct) if found is None and entry.get("kind") in _MESSAGE_KINDS}
    case_ids = {entry["case"] for entry, found in zip(parsed, direct) if found is None and entry.get("kind") in _CASE_KINDS}
    messages = await _pairs(executor, "SELECT id, sender, receiver FROM messages WHERE id = ANY($1::uuid[])", message_ids)
    cases = await _pairs(executor, "SELECT id, opener, responder FROM cases WHERE id = ANY($1::uuid[])", case_ids)
    result = []
    for entry, found in zip(parsed, direct):
        if found is not None:
            result.append(found)
        elif entry.get("kind") in _MESSAGE_KINDS:
            result.append(set(messages.get(entry["message_id"], ())))
        elif entry.get("kind") in _CASE_KINDS:
            result.append(set(cases.get(entry["case"], ())))
        else:
            result.append(set())
    return result


async def _pairs(executor: Any, sql: str, ids: Iterable[str]) -> dict[str, tuple[str, str]]:
    ids = list(ids)
    if not ids:
        return {}
    rows = await executor.fetch(sql, [uuid.UUID(value) for value in ids])
    return {str(row[0]): (row[1], row[2]) for row in rows}


def may_see(viewer: str, parties: set[str]) -> bool:
    """Whether `viewer` (a jurisdiction code or AUDITOR) may see an entry with these parties."""
    return viewer == AUDITOR or EVERYONE in parties or viewer in parties
