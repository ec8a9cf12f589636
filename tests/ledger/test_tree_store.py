"""The ledger's tree in PostgreSQL: appends extend it, proofs read O(log n) rows and verify (issue 4, items 2-3).

Every test runs on a fresh real database. Trees are compared with the plain recursive
RFC 9162 reference of gateway.ledger.merkle, and proofs with its verifiers.
"""

from __future__ import annotations

import asyncio
import math
import random
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import asyncpg
import pytest

from gateway.ledger import merkle
from gateway.ledger.append import LedgerAppender, append
from gateway.ledger.entries import LedgerEntry
from gateway.ledger.tree import NotAHead, TreeError, consistency_proof, inclusion_proof
from gateway.store.migrate import migrate, migrations

T = TypeVar("T")


def run(database_url: str, scenario: Callable[[asyncpg.Connection], Awaitable[T]], migrated: bool = True) -> T:
    """Run `scenario(connection)` on the test database (migrated first, unless told not to)."""

    async def main() -> T:
        connection = await asyncpg.connect(database_url)
        try:
            if migrated:
                await migrate(connection)
            return await scenario(connection)
        finally:
            await connection.close()

    return asyncio.run(main())


def sample_entry(number: int, kind: str = "accepted", message_id: str | None = None) -> LedgerEntry:
    """A realistic entry: metadata and digests only."""
    return LedgerEntry(kind, f"2026-11-28T12:{number // 60 % 60:02d}:{number % 60:02d}Z", {  # type: ignore[arg-type]
        "message_id": message_id or str(uuid.UUID(int=number + 1)),
        "message_digest": "sha-256:" + format(number, "064x"),
        "type": "referral.submit", "from": "CN-GD", "to": "HK", "case": str(uuid.UUID(int=10**9 + number)),
    })


async def append_batches(connection: asyncpg.Connection, batches: Sequence[int], first: int = 0) -> list[bytes]:
    """Append batches of the given sizes, one transaction each; return the entries' bytes."""
    written = []
    number = first
    for size in batches:
        entries = [sample_entry(number + offset) for offset in range(size)]
        number += size
        async with connection.transaction():
            await append(connection, entries)
        written.extend(entry.canonical() for entry in entries)
    return written


def random_batches(total: int, seed: int, largest: int = 300) -> list[int]:
    chooser = random.Random(seed)
    batches = []
    while sum(batches) < total:
        batches.append(min(chooser.choice([1, 1, 2, 3, 7, 16, 64, largest, chooser.randint(1, largest)]), total - sum(batches)))
    return batches


async def stored_tree(connection: asyncpg.Connection) -> dict[str, Any]:
    return {
        "size": await connection.fetchval("SELECT size FROM ledger_size"),
        "entries": [row["entry"] for row in await connection.fetch("SELECT entry FROM ledger_entries ORDER BY idx")],
        "nodes": {(row["level"], row["idx"]): row["hash"] for row in await connection.fetch("SELECT level, idx, hash FROM ledger_nodes")},
        "heads": {row["size"]: row["root"] for row in await connection.fetch("SELECT size, root FROM ledger_heads")},
        "edges": {(row["size"], row["start"]): row["hash"] for row in await connection.fetch("SELECT size, start, hash FROM ledger_edges")},
    }


def expected_tree(entries: Sequence[bytes], head_sizes: Sequence[int]) -> dict[str, Any]:
    """Nodes, heads and edges as the reference implementation defines them."""
    frontier = merkle.Frontier()
    nodes: dict[tuple[int, int], bytes] = {}
    heads: dict[int, bytes] = {}
    edges: dict[tuple[int, int], bytes] = {}
    wanted = set(head_sizes)
    for entry in entries:
        for ref, value in frontier.append(merkle.leaf_hash(entry)):
            nodes[(ref.level, ref.index)] = value
        if frontier.size in wanted:
            heads[frontier.size] = frontier.root()
            edges.update({(edge.size, edge.start): value for edge, value in frontier.edges()})
    return {"nodes": nodes, "heads": heads, "edges": edges}


def assert_tree_matches_reference(stored: dict[str, Any], batches: Sequence[int]) -> None:
    entries = stored["entries"]
    sizes = [sum(batches[: position + 1]) for position in range(len(batches))]
    assert stored["size"] == len(entries) == sizes[-1]
    expected = expected_tree(entries, sizes)
    assert sorted(stored["heads"]) == sizes, "one head per committed batch"
    assert stored["nodes"] == expected["nodes"]
    assert len(stored["nodes"]) == 2 * len(entries) - len(entries).bit_count()
    assert stored["heads"] == expected["heads"]
    assert stored["edges"] == expected["edges"]
    for size in sizes[:: max(1, len(sizes) // 25)] + sizes[-1:]:  # the recursive reference is slow: a sample
        assert stored["heads"][size] == merkle.reference_root(entries[:size]), f"head {size}"


def test_appends_in_many_batches_build_the_rfc_9162_tree(database_url):
    batches = random_batches(1500, seed=4)

    async def scenario(connection):
        await append_batches(connection, batches)
        return await stored_tree(connection)

    assert_tree_matches_reference(run(database_url, scenario), batches)


def test_rewound_savepoints_leave_no_gap_and_no_stray_node(database_url):
    async def scenario(connection):
        async with connection.transaction():
            appender = LedgerAppender(connection)
            await appender.reserve()
            await appender.add(sample_entry(0))
            mark = appender.next_index
            try:
                async with connection.transaction():  # a savepoint, as the group commit makes one per message
                    await appender.add(sample_entry(1))
                    await appender.add(sample_entry(2))
                    raise RuntimeError("this message fails")
            except RuntimeError:
                appender.rewind(mark)
            assert await appender.add(sample_entry(3)) == 1
            await appender.finish()
            assert appender.head is not None and appender.head.size == 2
        return await stored_tree(connection)

    stored = run(database_url, scenario)
    assert stored["entries"] == [sample_entry(0).canonical(), sample_entry(3).canonical()]
    assert_tree_matches_reference(stored, [2])


def test_inclusion_proofs_read_at_most_ceil_log2_n_plus_2_rows_and_verify(database_url):
    batches = random_batches(3000, seed=7)

    async def scenario(connection):
        entries = await append_batches(connection, batches)
        heads = [row["size"] for row in await connection.fetch("SELECT size FROM ledger_heads ORDER BY size")]
        chooser = random.Random(1)
        checked = 0
        for size in heads:
            indexes = range(size) if size <= 64 else sorted({0, size - 1, *chooser.sample(range(size), 24)})
            for index in indexes:
                proof = await inclusion_proof(connection, index, size)
                leaf = merkle.leaf_hash(entries[index])
                merkle.verify_inclusion(leaf, index, size, proof.hashes, proof.root)
                assert proof.rows_read == len(proof.hashes) + 1
                assert proof.rows_read <= math.ceil(math.log2(size)) + 2, (index, size, proof.rows_read)
                checked += 1
        # and they are exactly RFC 9162's audit paths
        for size, index in ((heads[-1], 0), (heads[-1], heads[-1] - 1), (heads[len(heads) // 2], 5)):
            proof = await inclusion_proof(connection, index, size)
            assert proof.hashes == merkle.reference_inclusion(index, entries[:size])
        return checked

    assert run(database_url, scenario) > 1000


def test_consistency_proofs_between_heads_read_o_log_n_rows_and_verify(database_url):
    batches = random_batches(2500, seed=11)

    async def scenario(connection):
        entries = await append_batches(connection, batches)
        heads = [row["size"] for row in await connection.fetch("SELECT size FROM ledger_heads ORDER BY size")]
        chooser = random.Random(2)
        pairs = {(heads[0], heads[-1]), (heads[-1], heads[-1])} | {tuple(sorted(chooser.sample(heads, 2))) for _ in range(150)}
        for size1, size2 in sorted(pairs):
            proof = await consistency_proof(connection, size1, size2)
            merkle.verify_consistency(size1, size2, proof.hashes, proof.root1, proof.root2)
            heads_read = 1 if size1 == size2 else 2
            assert proof.rows_read == len(proof.hashes) + heads_read
            # RFC 9162 consistency proofs have up to ceil(log2 n) + 1 hashes (3 -> 4 needs three), plus two heads
            assert proof.rows_read <= math.ceil(math.log2(size2)) + 3, (size1, size2, proof.rows_read)
        for size1, size2 in sorted(pairs)[:10]:
            proof = await consistency_proof(connection, size1, size2)
            assert proof.hashes == merkle.reference_consistency(size1, entries[:size2])
        return len(pairs)

    assert run(database_url, scenario) > 100


def test_proofs_are_against_stored_heads_only(database_url):
    async def scenario(connection):
        await append_batches(connection, [4, 4])  # heads 4 and 8
        with pytest.raises(NotAHead, match=r"tree size 6 is not a stored tree head .*before is 4.*after is 8"):
            await inclusion_proof(connection, 1, 6)
        with pytest.raises(NotAHead, match=r"tree size 5 is not a stored tree head"):
            await consistency_proof(connection, 5, 8)
        with pytest.raises(ValueError, match="entry 8 is not in a tree of 8 entries"):
            await inclusion_proof(connection, 8, 8)
        await connection.execute("DELETE FROM ledger_nodes WHERE level = 2 AND idx = 1")
        with pytest.raises(TreeError, match=r"lacks tree node \(level 2, index 1\) over entries 4..7"):
            await inclusion_proof(connection, 0, 8)

    run(database_url, scenario)


def test_the_appender_refuses_to_extend_a_right_edge_that_disagrees_with_its_head(database_url):
    async def scenario(connection):
        await append_batches(connection, [6])  # right edge: Perfect(2, 0), Perfect(1, 2)
        await connection.execute("UPDATE ledger_nodes SET hash = sha256(hash) WHERE level = 1 AND idx = 2")
        with pytest.raises(TreeError, match="right edge of tree size 6 does not give its head's root"):
            async with connection.transaction():
                await append(connection, [sample_entry(6)])
        assert await connection.fetchval("SELECT size FROM ledger_size") == 6, "nothing was appended"

    run(database_url, scenario)


def test_the_message_id_lookup_is_derived_from_the_entry_bytes(database_url):
    async def scenario(connection):
        message = str(uuid.uuid4())
        async with connection.transaction():
            await append(connection, [sample_entry(0, message_id=message), LedgerEntry("refused", "2026-11-28T12:00:00Z",
                                      {"message_digest": "sha-256:" + "0" * 64, "code": "bad-signature"})])
        rows = await connection.fetch("SELECT idx, message_id FROM ledger_entries ORDER BY idx")
        assert [(row["idx"], row["message_id"]) for row in rows] == [(0, message), (1, None)]
        async with connection.transaction():
            await connection.execute("SET LOCAL enable_seqscan = off")  # a tiny table: make the planner show its index
            plan = "\n".join(row[0] for row in await connection.fetch(
                "EXPLAIN SELECT idx FROM ledger_entries WHERE message_id = 'x'"))
        assert "ledger_entries_message_id" in plan

    run(database_url, scenario)


def test_migration_0002_builds_the_tree_of_a_ledger_written_before_it(database_url):
    """A ledger from before the tree existed gets every node and one head for its size."""
    entries = [sample_entry(number).canonical() for number in range(23)]

    async def scenario(connection):
        first = migrations()[0]
        await connection.execute(first.sql)
        await connection.execute(
            "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        await connection.execute("INSERT INTO schema_migrations (version, name) VALUES (1, $1)", first.name)
        await connection.executemany(
            "INSERT INTO ledger_entries (idx, entry, leaf_hash) VALUES ($1, $2, $3)",
            [(index, entry, merkle.leaf_hash(entry)) for index, entry in enumerate(entries)],
        )
        await connection.execute("UPDATE ledger_size SET size = $1", len(entries))
        assert "0002_ledger_tree.sql" in await migrate(connection)
        await append_batches(connection, [5], first=len(entries))  # and appending goes on from there
        return await stored_tree(connection)

    stored = run(database_url, scenario, migrated=False)
    assert_tree_matches_reference(stored, [23, 5])


def test_migration_0002_refuses_a_damaged_older_ledger(database_url):
    async def scenario(connection):
        first = migrations()[0]
        await connection.execute(first.sql)
        entry = sample_entry(0).canonical()
        await connection.execute("INSERT INTO ledger_entries (idx, entry, leaf_hash) VALUES (0, $1, $2)", entry, bytes(32))
        await connection.execute("UPDATE ledger_size SET size = 1")
        with pytest.raises(asyncpg.RaiseError, match="ledger entry 0: its leaf hash does not match its bytes"):
            await connection.execute(migrations()[1].sql)

    run(database_url, scenario, migrated=False)
