"""`gateway ledger verify` and `gateway ledger proof` on a real database (issue 4, items 4-5 and Must show).

Each tamper test changes rows of one ledger table the way someone with database access
could — update, delete, insert, swap — and asserts the finding's code and the entry,
node, head or range it names. Most tests verify with chunks of 2**5 entries so that
the tampered rows lie inside, at the edge of and across chunks.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import asyncpg
import pytest

from gateway.cli import ledger as ledger_cli_module
from gateway.ledger import merkle
from gateway.ledger.entries import LedgerEntry
from gateway.ledger.verify import Checkpoint, Report, is_canonical, verify_ledger
from tests.cli_runner import CliResult, run_cli
from tests.ledger.test_tree_store import append_batches, run, sample_entry

BATCHES = [1, 3, 7, 16, 5, 30, 2, 64, 9, 11, 40, 1, 1, 25, 33, 17, 8, 100]  # 373 entries, 18 heads
HEADS = [sum(BATCHES[: position + 1]) for position in range(len(BATCHES))]
SIZE = HEADS[-1]


def ledger_cli(*arguments: str) -> CliResult:
    """`gateway ledger ...` in-process, as the `gateway` command runs it."""
    return run_cli("ledger", *arguments)


def tamper(database_url: str, *statements: str, chunk_bits: int = 5, checkpoint: Checkpoint | None = None) -> Report:
    """Build the standard ledger, run `statements`, verify."""

    async def scenario(connection: asyncpg.Connection) -> Report:
        await append_batches(connection, BATCHES)
        intact = await verify_ledger(connection, chunk_bits=chunk_bits)
        assert intact.intact, intact.findings
        for statement in statements:
            await connection.execute(statement)
        return await verify_ledger(connection, checkpoint, chunk_bits=chunk_bits)

    return run(database_url, scenario)


def first(report: Report):
    assert not report.intact, "the tampering went unnoticed"
    return report.findings[0]


async def rewrite_consistently(connection: asyncpg.Connection, changes: dict[int, bytes], heads: bool = True) -> None:
    """Rewrite entries and recompute their leaf hashes and every node — and the heads and edges, if `heads`."""
    entries = [row["entry"] for row in await connection.fetch("SELECT entry FROM ledger_entries ORDER BY idx")]
    for index, entry in changes.items():
        entries[index] = entry
    head_sizes = {row["size"] for row in await connection.fetch("SELECT size FROM ledger_heads")}
    frontier = merkle.Frontier()
    async with connection.transaction():
        for index, entry in enumerate(entries):
            leaf = merkle.leaf_hash(entry)
            await connection.execute("UPDATE ledger_entries SET entry = $2, leaf_hash = $3 WHERE idx = $1", index, entry, leaf)
            for ref, value in frontier.append(leaf):
                await connection.execute("UPDATE ledger_nodes SET hash = $3 WHERE level = $1 AND idx = $2",
                                         ref.level, ref.index, value)
            if heads and frontier.size in head_sizes:
                await connection.execute("UPDATE ledger_heads SET root = $2 WHERE size = $1", frontier.size, frontier.root())
                for edge, value in frontier.edges():
                    await connection.execute("UPDATE ledger_edges SET hash = $3 WHERE size = $1 AND start = $2",
                                             edge.size, edge.start, value)


def other_entry(number: int) -> bytes:
    return LedgerEntry("payload-viewed", "2026-11-28T13:00:00Z", {"message_id": "00000000-0000-0000-0000-00000000beef",
                                                                   "officer": f"officer-{number}"}).canonical()


# --- intact ----------------------------------------------------------------------------


@pytest.mark.parametrize("chunk_bits", [0, 1, 5, 13])
def test_an_untouched_ledger_verifies_whatever_the_chunk_size(database_url, chunk_bits):
    report = tamper(database_url, chunk_bits=chunk_bits)
    assert report.intact
    assert (report.size, report.entries_checked, report.heads_checked) == (SIZE, SIZE, len(HEADS))
    assert report.nodes_checked == 2 * SIZE - SIZE.bit_count()
    assert report.edges_checked == sum(max(size.bit_count() - 2, 0) for size in HEADS)


def test_an_empty_ledger_verifies(database_url):
    report = run(database_url, verify_ledger)
    assert report.intact and report.size == 0


def test_canonical_form_is_what_the_gateway_writes():
    entry = sample_entry(3).canonical()
    assert is_canonical(entry)
    assert is_canonical(LedgerEntry("refused", "t", {"where": "/a/ü", "n": 2**70, "x": None, "l": [True, {"b": 1}]}).canonical())
    for variant in (
        entry.replace(b",", b", ", 1),                         # whitespace
        b'{"v":1,"kind":"accepted"}',                          # member order
        b'{"kind":"accepted","v":1.0}',                        # a float
        b'{"kind":"accepted","kind":"accepted"}',              # duplicate member
        b'{"kind":"\\u0061"}',                                 # needless escape
        b'{"k\xc3\xbc":1}',                                   # a non-ASCII member name
        b'{"kind":"\\ud800"}',                                 # lone surrogate
        b'["accepted"]',                                       # not an object
        b'{"kind":"\xff"}',                                    # not UTF-8
        b'{"v":NaN}',
    ):
        assert not is_canonical(variant), variant


# --- ledger_entries ----------------------------------------------------------------------


def test_an_updated_entry_is_named(database_url):
    finding = first(tamper(database_url, "UPDATE ledger_entries SET entry = entry || ' '::bytea WHERE idx = 17"))
    assert (finding.code, finding.index) == ("entry-altered", 17)
    assert "entry 17: leaf hash does not match its bytes" in finding.message


def test_an_updated_leaf_hash_is_named(database_url):
    finding = first(tamper(database_url, "UPDATE ledger_entries SET leaf_hash = sha256(leaf_hash) WHERE idx = 100"))
    assert (finding.code, finding.index) == ("leaf-hash-altered", 100)


def test_a_deleted_entry_is_named_as_a_gap(database_url):
    finding = first(tamper(database_url, "DELETE FROM ledger_entries WHERE idx = 64"))
    assert (finding.code, finding.index) == ("entry-missing", 64)
    assert "entry 64 is missing (gap)" in finding.message


def test_the_deleted_last_entry_is_named(database_url):
    finding = first(tamper(database_url, f"DELETE FROM ledger_entries WHERE idx = {SIZE - 1}"))
    assert (finding.code, finding.index) == ("entry-missing", SIZE - 1)


def test_an_inserted_entry_beyond_the_size_is_named(database_url):
    report = tamper(database_url, f"INSERT INTO ledger_entries (idx, entry, leaf_hash) SELECT {SIZE}, entry, leaf_hash "
                                  "FROM ledger_entries WHERE idx = 3")
    finding = first(report)
    assert (finding.code, finding.index) == ("entry-beyond-size", SIZE)
    assert f"an entry beyond the ledger size at {SIZE}" in finding.message


@pytest.mark.parametrize("a, b", [(17, 18), (31, 32), (5, 300)])
def test_swapped_entry_bytes_are_named(database_url, a, b):
    finding = first(tamper(
        database_url,
        f"UPDATE ledger_entries AS t SET entry = (SELECT s.entry FROM ledger_entries s WHERE s.idx = {a + b} - t.idx)"
        f" WHERE t.idx IN ({a}, {b})",
    ))
    assert (finding.code, finding.index, finding.other) == ("entries-swapped", a, b)
    assert f"entries {a} and {b} are swapped" in finding.message


def test_swapped_entry_rows_are_named(database_url):
    finding = first(tamper(
        database_url,
        "UPDATE ledger_entries SET idx = 1000000 WHERE idx = 40",
        "UPDATE ledger_entries SET idx = 40 WHERE idx = 41",
        "UPDATE ledger_entries SET idx = 41 WHERE idx = 1000000",
    ))
    assert (finding.code, finding.index, finding.other) == ("entries-swapped", 40, 41)


def test_a_removed_entry_with_the_later_ones_moved_down_is_named(database_url):
    finding = first(tamper(
        database_url,
        "DELETE FROM ledger_entries WHERE idx = 50",
        "UPDATE ledger_entries SET idx = idx - 1 WHERE idx > 50",
        "UPDATE ledger_size SET size = size - 1",
    ))
    assert (finding.code, finding.index) == ("entry-removed", 50)


def test_an_entry_inserted_with_the_later_ones_moved_up_is_named(database_url):
    forged = other_entry(1)
    finding = first(tamper(
        database_url,
        "UPDATE ledger_entries SET idx = idx + 1000000 WHERE idx >= 50",
        "UPDATE ledger_entries SET idx = idx - 1000000 + 1 WHERE idx >= 1000000",
        f"INSERT INTO ledger_entries (idx, entry, leaf_hash) VALUES (50, '\\x{forged.hex()}', "
        f"'\\x{merkle.leaf_hash(forged).hex()}')",
        "UPDATE ledger_size SET size = size + 1",
    ))
    assert (finding.code, finding.index) == ("entry-inserted", 50)


def test_an_entry_replaced_with_its_leaf_hash_is_named(database_url):
    forged = other_entry(2)
    finding = first(tamper(
        database_url,
        f"UPDATE ledger_entries SET entry = '\\x{forged.hex()}', leaf_hash = '\\x{merkle.leaf_hash(forged).hex()}' WHERE idx = 9",
    ))
    assert (finding.code, finding.index) == ("entry-rewritten", 9)


def test_a_non_canonical_entry_is_named_even_when_its_tree_was_rewritten_to_match(database_url):
    async def scenario(connection):
        await append_batches(connection, BATCHES)
        entry = await connection.fetchval("SELECT entry FROM ledger_entries WHERE idx = 200")
        await rewrite_consistently(connection, {200: entry.replace(b'","', b'", "', 1)})
        return await verify_ledger(connection, chunk_bits=5)

    finding = first(run(database_url, scenario))
    assert (finding.code, finding.index) == ("entry-not-canonical", 200)


# --- ledger_nodes ------------------------------------------------------------------------


def test_an_updated_node_is_named(database_url):
    finding = first(tamper(database_url, "UPDATE ledger_nodes SET hash = sha256(hash) WHERE level = 3 AND idx = 2"))
    assert (finding.code, finding.entries) == ("node-altered", (16, 24))
    assert "tree node (level 3, index 2) over entries 16..23 does not match" in finding.message


def test_an_updated_node_above_the_chunk_level_is_named(database_url):
    finding = first(tamper(database_url, "UPDATE ledger_nodes SET hash = sha256(hash) WHERE level = 7 AND idx = 1"))
    assert (finding.code, finding.entries) == ("node-altered", (128, 256))


def test_an_updated_leaf_node_is_named_with_its_entry(database_url):
    finding = first(tamper(database_url, "UPDATE ledger_nodes SET hash = sha256(hash) WHERE level = 0 AND idx = 77"))
    assert (finding.code, finding.index) == ("node-altered", 77)


def test_a_deleted_node_is_named(database_url):
    finding = first(tamper(database_url, "DELETE FROM ledger_nodes WHERE level = 2 AND idx = 30"))
    assert (finding.code, finding.entries) == ("node-missing", (120, 124))


def test_an_inserted_node_beyond_the_size_is_named(database_url):
    finding = first(tamper(database_url, "INSERT INTO ledger_nodes VALUES (4, 23, sha256('x'::bytea))"))
    assert finding.code == "node-beyond-size"
    assert "tree node (level 4, index 23)" in finding.message


def test_swapped_nodes_are_named(database_url):
    finding = first(tamper(
        database_url,
        "UPDATE ledger_nodes SET hash = (SELECT hash FROM ledger_nodes n WHERE n.level = 1 AND n.idx = 20 - ledger_nodes.idx)"
        " WHERE level = 1 AND idx IN (9, 11)",
    ))
    assert (finding.code, finding.entries, finding.other) == ("nodes-swapped", (18, 20), 11)


# --- ledger_heads ------------------------------------------------------------------------


def test_an_updated_head_root_is_named(database_url):
    head = HEADS[5]
    finding = first(tamper(database_url, f"UPDATE ledger_heads SET root = sha256(root) WHERE size = {head}"))
    assert (finding.code, finding.head) == ("head-altered", head)


def test_an_updated_latest_head_gives_the_range_after_the_last_good_head(database_url):
    finding = first(tamper(database_url, f"UPDATE ledger_heads SET root = sha256(root) WHERE size = {SIZE}"))
    assert (finding.code, finding.head, finding.entries) == ("heads-disagree", SIZE, (HEADS[-2], SIZE))


def test_a_deleted_head_is_named_by_the_edges_it_leaves(database_url):
    head = next(size for size in HEADS[:-1] if size.bit_count() >= 3)
    finding = first(tamper(database_url, f"DELETE FROM ledger_heads WHERE size = {head}"))
    assert (finding.code, finding.head) == ("head-missing", head)


def test_a_deleted_latest_head_is_named(database_url):
    finding = first(tamper(database_url, f"DELETE FROM ledger_heads WHERE size = {SIZE}", f"DELETE FROM ledger_edges WHERE size = {SIZE}"))
    assert (finding.code, finding.head) == ("head-missing", SIZE)


def test_an_inserted_head_with_a_false_root_is_named(database_url):
    finding = first(tamper(database_url, "INSERT INTO ledger_heads (size, root) VALUES (200, sha256('forged'::bytea))"))
    assert (finding.code, finding.head) == ("head-altered", 200)


def test_an_inserted_head_beyond_the_size_is_named(database_url):
    finding = first(tamper(database_url, f"INSERT INTO ledger_heads (size, root) VALUES ({SIZE + 5}, sha256('x'::bytea))"))
    assert (finding.code, finding.head) == ("head-beyond-size", SIZE + 5)


def test_swapped_head_roots_are_named(database_url):
    a, b = HEADS[3], HEADS[8]
    finding = first(tamper(
        database_url,
        f"UPDATE ledger_heads SET root = (SELECT root FROM ledger_heads h WHERE h.size = {a + b} - ledger_heads.size)"
        f" WHERE size IN ({a}, {b})",
    ))
    assert (finding.code, finding.head, finding.other) == ("heads-swapped", a, b)


# --- ledger_edges ------------------------------------------------------------------------


def _head_with_edges(count: int) -> int:
    return next(size for size in HEADS if size.bit_count() - 2 >= count)


def test_an_updated_edge_is_named(database_url):
    head = _head_with_edges(1)
    finding = first(tamper(database_url, f"UPDATE ledger_edges SET hash = sha256(hash) WHERE size = {head}"))
    assert (finding.code, finding.head) == ("edge-altered", head)


def test_a_deleted_edge_is_named(database_url):
    head = _head_with_edges(1)
    finding = first(tamper(database_url, f"DELETE FROM ledger_edges WHERE size = {head}"))
    assert (finding.code, finding.head) == ("edge-missing", head)


def test_an_inserted_edge_is_named(database_url):
    head = HEADS[2]  # 11 = 8 + 2 + 1: one edge, at 8; 4 is no edge of it
    finding = first(tamper(database_url, f"INSERT INTO ledger_edges VALUES ({head}, 4, sha256('x'::bytea))"))
    assert (finding.code, finding.head) == ("edge-unexpected", head)


def test_an_inserted_orphan_edge_is_named(database_url):
    finding = first(tamper(database_url, f"INSERT INTO ledger_edges VALUES ({SIZE + 10}, 4, sha256('x'::bytea))"))
    assert (finding.code, finding.head) == ("edge-orphan", SIZE + 10)


def test_swapped_edges_are_named(database_url):
    head = _head_with_edges(2)
    finding = first(_swap_edges(database_url, head))
    assert (finding.code, finding.head) == ("edges-swapped", head)


def _swap_edges(database_url: str, head: int) -> Report:
    async def scenario(connection):
        await append_batches(connection, BATCHES)
        rows = await connection.fetch("SELECT start, hash FROM ledger_edges WHERE size = $1 ORDER BY start LIMIT 2", head)
        (a, ha), (b, hb) = [(row["start"], row["hash"]) for row in rows]
        await connection.execute("UPDATE ledger_edges SET hash = $3 WHERE size = $1 AND start = $2", head, a, hb)
        await connection.execute("UPDATE ledger_edges SET hash = $3 WHERE size = $1 AND start = $2", head, b, ha)
        return await verify_ledger(connection, chunk_bits=5)

    return run(database_url, scenario)


# --- ledger_size -------------------------------------------------------------------------


def test_a_size_row_set_back_is_named(database_url):
    finding = first(tamper(database_url, "UPDATE ledger_size SET size = 300"))
    assert (finding.code, finding.entries) == ("size-altered", (300, SIZE))


def test_a_size_row_raised_is_named_as_missing_entries(database_url):
    finding = first(tamper(database_url, f"UPDATE ledger_size SET size = {SIZE + 4}"))
    assert (finding.code, finding.index, finding.entries) == ("entry-missing", SIZE, (SIZE, SIZE + 4))
    assert "the size row was raised or the last entries deleted" in finding.message


# --- consistent rewrites and trusted checkpoints -------------------------------------------


def _rewrite(database_url: str, index: int, heads: bool, checkpoint_size: int | None) -> tuple[Report, Report | None]:
    """Rewrite entry `index` consistently; verify without, and with a checkpoint of `checkpoint_size` taken before."""

    async def scenario(connection):
        await append_batches(connection, BATCHES)
        checkpoint = None
        if checkpoint_size is not None:
            checkpoint = Checkpoint(checkpoint_size, await connection.fetchval("SELECT root FROM ledger_heads WHERE size = $1", checkpoint_size))
        await rewrite_consistently(connection, {index: other_entry(3)}, heads=heads)
        plain = await verify_ledger(connection, chunk_bits=5)
        return plain, (await verify_ledger(connection, checkpoint, chunk_bits=5) if checkpoint else None)

    return run(database_url, scenario)


def test_a_rewrite_of_entries_and_nodes_but_not_heads_gives_the_range_between_heads(database_url):
    plain, _ = _rewrite(database_url, 150, heads=False, checkpoint_size=None)
    finding = first(plain)
    first_bad = next(size for size in HEADS if size > 150)
    last_good = max(size for size in HEADS if size <= 150)
    assert (finding.code, finding.entries, finding.head) == ("heads-disagree", (last_good, first_bad), first_bad)
    assert f"entries {last_good}..{first_bad - 1}" in finding.message


def test_a_consistent_rewrite_is_invisible_without_a_trusted_checkpoint_and_seen_with_one(database_url):
    checkpoint_size = HEADS[-3]
    plain, checked = _rewrite(database_url, 150, heads=True, checkpoint_size=checkpoint_size)
    assert plain.intact, "the documented limit: a self-consistent rewrite cannot be seen from the database alone"
    finding = first(checked)
    assert (finding.code, finding.entries) == ("checkpoint-mismatch", (0, checkpoint_size))


def test_a_consistent_rewrite_after_the_trusted_checkpoint_is_invisible(database_url):
    checkpoint_size = max(size for size in HEADS if size <= 150)
    _, checked = _rewrite(database_url, 150, heads=True, checkpoint_size=checkpoint_size)
    assert checked is not None and checked.intact, "the documented limit: nothing after the last trusted checkpoint"


def test_a_trusted_checkpoint_beyond_the_ledger_means_entries_were_removed(database_url):
    finding = first(tamper(database_url, checkpoint=Checkpoint(SIZE + 10, bytes(32))))
    assert (finding.code, finding.entries) == ("checkpoint-beyond-size", (SIZE, SIZE + 10))


def test_a_trusted_checkpoint_whose_head_was_deleted_is_named(database_url):
    async def scenario(connection):
        await append_batches(connection, BATCHES)
        size = HEADS[4]
        checkpoint = Checkpoint(size, await connection.fetchval("SELECT root FROM ledger_heads WHERE size = $1", size))
        await connection.execute("DELETE FROM ledger_edges WHERE size = $1", size)
        await connection.execute("DELETE FROM ledger_heads WHERE size = $1", size)
        return await verify_ledger(connection, checkpoint, chunk_bits=5)

    finding = first(run(database_url, scenario))
    assert (finding.code, finding.head) == ("checkpoint-head-missing", HEADS[4])


# --- the command -------------------------------------------------------------------------


def _checkpoint_file(tmp_path: Path, size: int, root: bytes) -> Path:
    path = tmp_path / "checkpoint.json"
    path.write_text(json.dumps({"size": size, "root": base64.b64encode(root).decode()}), "utf-8")
    return path


def test_the_command_exit_codes_and_reports(database_url, tmp_path, monkeypatch):
    monkeypatch.setattr(ledger_cli_module, "PROGRESS_EVERY", 100)

    async def build(connection):
        await append_batches(connection, BATCHES)
        return await connection.fetchval("SELECT root FROM ledger_heads WHERE size = $1", HEADS[-2])

    root = run(database_url, build)
    intact = ledger_cli("verify", "--database-url", database_url)
    assert intact.status == 0, intact.stderr
    assert intact.stdout.startswith(f"ledger intact: {SIZE} entries, {len(HEADS)} tree heads")
    assert f"gateway: verified {SIZE} of {SIZE} entries" in intact.stderr  # progress on stderr

    good = ledger_cli("verify", "--database-url", database_url, "--trusted-checkpoint", str(_checkpoint_file(tmp_path, HEADS[-2], root)))
    assert good.status == 0 and f"extends the trusted checkpoint of size {HEADS[-2]}" in good.stdout

    as_json = json.loads(ledger_cli("verify", "--database-url", database_url, "--json").stdout)
    assert as_json["intact"] is True and as_json["size"] == SIZE and as_json["findings"] == []

    bad_file = tmp_path / "bad.json"
    bad_file.write_text('{"size": 3}', "utf-8")
    usage = ledger_cli("verify", "--database-url", database_url, "--trusted-checkpoint", str(bad_file))
    assert usage.status == 2 and "must be a JSON object" in usage.stderr
    assert ledger_cli("verify", "--no-such-option").status == 2

    run(database_url, lambda connection: connection.execute("UPDATE ledger_entries SET entry = entry || ' '::bytea WHERE idx = 17"))
    found = ledger_cli("verify", "--database-url", database_url)
    assert found.status == 1
    assert "entry-altered: entry 17: leaf hash does not match its bytes" in found.stdout
    found_json = json.loads(ledger_cli("verify", "--database-url", database_url, "--json").stdout)
    assert found_json["findings"][0]["index"] == 17


def test_the_command_says_3_when_the_database_cannot_be_read(database_url, tmp_path):
    unreachable = ledger_cli("verify", "--database-url", "postgresql://nobody@127.0.0.1:1/none")
    assert unreachable.status == 3 and "cannot read the database" in unreachable.stderr
    not_migrated = ledger_cli("verify", "--database-url", database_url)  # a fresh database: no tables at all
    assert not_migrated.status == 3 and "no ledger tree tables" in not_migrated.stderr
    no_data_dir = ledger_cli("verify", "--data-dir", str(tmp_path / "nothing-here"))
    assert no_data_dir.status == 3 and "there is no gateway database" in no_data_dir.stderr
    assert ledger_cli("proof", "not-a-uuid", "--database-url", database_url).status == 2


def test_proof_prints_verifiable_inclusion_proofs_of_a_messages_entries(database_url):
    message = "0190f5c4-8b7e-7cc1-9a2b-3c4d5e6f7a8b"

    async def build(connection):
        await append_batches(connection, [10, 20])
        async with connection.transaction():
            from gateway.ledger.append import append
            await append(connection, [sample_entry(900, message_id=message), sample_entry(901)])
        await append_batches(connection, [5], first=1000)
        async with connection.transaction():
            from gateway.ledger.append import append
            await append(connection, [sample_entry(902, kind="delivered", message_id=message)])
        await append_batches(connection, [7], first=2000)

    run(database_url, build)
    latest = 10 + 20 + 2 + 5 + 1 + 7
    result = ledger_cli("proof", message.upper(), "--database-url", database_url)
    assert result.status == 0, result.stderr
    document = json.loads(result.stdout)
    assert (document["message_id"], document["size"]) == (message, latest)
    assert [(entry["index"], entry["kind"]) for entry in document["entries"]] == [(30, "accepted"), (37, "delivered")]
    for entry in document["entries"]:
        leaf = merkle.leaf_hash(entry["entry"].encode())
        assert base64.b64decode(entry["leaf_hash"]) == leaf
        merkle.verify_inclusion(leaf, entry["index"], entry["size"], [base64.b64decode(h) for h in entry["proof"]],
                                base64.b64decode(entry["root"]))
        assert json.loads(entry["entry"])["message_id"] == message

    delivered = json.loads(ledger_cli("proof", message, "--kind", "delivered", "--database-url", database_url).stdout)
    assert [entry["index"] for entry in delivered["entries"]] == [37]
    older = json.loads(ledger_cli("proof", message, "--size", "32", "--database-url", database_url).stdout)
    assert [(entry["index"], entry["size"]) for entry in older["entries"]] == [(30, 32)]

    not_head = ledger_cli("proof", message, "--size", "33", "--database-url", database_url)
    assert not_head.status == 1 and "tree size 33 is not a stored tree head" in not_head.stderr
    none = ledger_cli("proof", message, "--kind", "withdrawn", "--database-url", database_url)
    assert none.status == 1 and "no entry of kind withdrawn" in none.stderr
    assert ledger_cli("proof", message, "--kind", "nonsense", "--database-url", database_url).status == 2


def test_a_hubs_ledger_verifies_and_proves_an_accepted_message(database_url, example, test_key):
    from gateway.protocol.ids import new_uuid7
    from gateway.protocol.message import sign_message
    from gateway.protocol.timestamps import format_timestamp, utc_now
    from tests.hub.harness import running_hub

    payload = dict(example("referral.submit"), id=new_uuid7(), case=new_uuid7(),
                   created=format_timestamp(utc_now().replace(microsecond=0)))
    payload["from"], payload["to"] = "CN-GD", "HK"
    with running_hub(database_url) as hub:
        assert hub.post_message(sign_message(payload, test_key("test-cn-gd-message-1"))).status == 202
    verified = ledger_cli("verify", "--database-url", database_url)
    assert verified.status == 0, verified.stdout + verified.stderr
    proof = ledger_cli("proof", payload["id"], "--kind", "accepted", "--database-url", database_url)
    assert proof.status == 0, proof.stderr
    assert [entry["kind"] for entry in json.loads(proof.stdout)["entries"]] == ["accepted"]
