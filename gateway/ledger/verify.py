"""`gateway ledger verify`: the whole ledger checked against its own bytes (docs/security.md).

One read-only REPEATABLE READ transaction, so appends running meanwhile are simply not
seen. In index order, chunk by chunk (2**13 entries by default):

1. the entries [lo, hi) must all be there (indexes 0..size-1, no gap), each entry's
   leaf hash is recomputed from its bytes and compared with its `leaf_hash` column and
   with the tree's leaf (level 0 node), and each entry must be canonical: parsing it
   and writing it again as `gateway.ledger.entries.canonical` does must give the same
   bytes (with the C JSON parser and encoder: the pure-Python RFC 8785 package would
   cap verification at ~30,000 entries/s);
2. the tree is rebuilt from the recomputed leaves (`gateway.ledger.tree.Rebuild`) and
   every stored perfect node of the chunk is compared with it;
3. every stored tree head in (lo, hi] must have the rebuilt root, and its stored edge
   nodes must be exactly the rebuilt ones.

Then what lies beyond: entries, nodes, heads and edges past the ledger size or
belonging to no head, and the latest head (there must be one for the size). With a
trusted checkpoint (size, root) obtained earlier out of band: the rebuilt root at that
size must be the checkpoint's, the stored head of that size must hold it, and the
consistency proof from it to the latest head, built from the stored nodes, must verify.

Findings name the first altered, removed, inserted or reordered entry where the
tables allow it (see `Finding.code`), and otherwise the range of entries between the
last tree head that agrees with the entries and the first that does not.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from json.scanner import c_make_scanner  # type: ignore[attr-defined]
from pathlib import Path
from typing import Any

import asyncpg

from gateway.ledger import merkle
from gateway.ledger.entries import canonical
from gateway.ledger.merkle import Perfect
from gateway.ledger.tree import Rebuild, TreeError, consistency_proof, describe_node, hash_leaves

CHUNK_BITS = 13
"""Entries per chunk: 2**13. Memory stays bounded by a chunk, whatever the ledger's size."""

Progress = Callable[[int, int], None]
"""Called with (entries checked, ledger size) after every chunk."""


class CheckpointError(ValueError):
    """A trusted checkpoint file that cannot be read."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A tree head obtained earlier, out of band: `{"size": N, "root": "<base64>"}`, or the size and root of a
    signed checkpoint the CLI verified first (gateway/cli/ledger.py, docs/protocol.md §13.4)."""

    size: int
    root: bytes

    @classmethod
    def load(cls, path: Path) -> Checkpoint:
        try:
            document = json.loads(path.read_bytes())
        except (OSError, ValueError) as error:
            raise CheckpointError(f"cannot read the trusted checkpoint {path}: {error}") from None
        if not isinstance(document, dict) or set(document) != {"size", "root"}:
            raise CheckpointError(f'the trusted checkpoint {path} must be a JSON object {{"size": N, "root": "<base64>"}}')
        size, root = document["size"], document["root"]
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise CheckpointError(f"the trusted checkpoint {path}: size must be an integer of at least 1")
        try:
            digest = base64.b64decode(root, validate=True) if isinstance(root, str) else b""
        except binascii.Error:
            digest = b""
        if len(digest) != 32:
            raise CheckpointError(f"the trusted checkpoint {path}: root must be the base64 of 32 bytes")
        return cls(size, digest)


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing found wrong. `code` is stable; `message` says it for people."""

    code: str
    """entry-missing, entry-beyond-size, entry-altered, entry-rewritten, entries-swapped, entry-removed,
    entry-inserted, entry-copied, leaf-hash-altered, entry-not-canonical, node-altered, nodes-swapped,
    node-missing, node-beyond-size, head-altered, heads-swapped, heads-disagree, head-missing,
    head-beyond-size, edge-altered, edges-swapped, edge-missing, edge-unexpected, edge-orphan,
    size-altered, size-missing, checkpoint-mismatch, checkpoint-beyond-size, checkpoint-head-missing,
    checkpoint-head-altered, checkpoint-inconsistent."""
    message: str
    index: int | None = None
    """The entry named, when the finding names one."""
    other: int | None = None
    """The second entry (or node index, head size) of a swap."""
    entries: tuple[int, int] | None = None
    """[first, end) of the entries concerned, when only a range is knowable."""
    head: int | None = None
    """The tree head (its size) concerned."""

    def as_json(self) -> dict[str, Any]:
        return {key: value for key, value in (
            ("code", self.code), ("message", self.message), ("index", self.index), ("other", self.other),
            ("entries", list(self.entries) if self.entries else None), ("head", self.head),
        ) if value is not None}


@dataclass(slots=True)
class Report:
    size: int = 0
    entries_checked: int = 0
    nodes_checked: int = 0
    heads_checked: int = 0
    edges_checked: int = 0
    root: bytes | None = None
    checkpoint: Checkpoint | None = None
    findings: list[Finding] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def intact(self) -> bool:
        return not self.findings

    def as_json(self) -> dict[str, Any]:
        return {
            "intact": self.intact,
            "size": self.size,
            "root": base64.b64encode(self.root).decode("ascii") if self.root else None,
            "entries_checked": self.entries_checked,
            "nodes_checked": self.nodes_checked,
            "heads_checked": self.heads_checked,
            "edges_checked": self.edges_checked,
            "trusted_checkpoint": {"size": self.checkpoint.size, "root": base64.b64encode(self.checkpoint.root).decode("ascii")}
            if self.checkpoint else None,
            "findings": [finding.as_json() for finding in self.findings],
            "seconds": round(self.seconds, 3),
        }


class _Stop(Exception):
    """The walk cannot go on meaningfully past this finding."""


# --- Canonical form, fast ----------------------------------------------------------------


def _refuse_number(text: str) -> Any:
    raise ValueError(f"{text} is not an integer")


# The C parser and the C encoder that json.dumps(sort_keys=True, separators=(",", ":"),
# ensure_ascii=False) uses, each made once and called directly: the same text as
# gateway.ledger.entries.canonical writes, at about 250,000 entries/s instead of
# 100,000 through json.loads and json.dumps (and 30,000 with the rfc8785 package).
_SCAN = c_make_scanner(json.JSONDecoder(parse_float=_refuse_number, parse_constant=_refuse_number)) if c_make_scanner else None
_ENCODE = (
    c_make_encoder(None, None, encode_basestring, None, ":", ",", True, False, False) if c_make_encoder else None
)


def is_canonical(entry: bytes) -> bool:
    """True when `entry` is exactly what gateway.ledger.entries.canonical writes for its own JSON value.

    That is: UTF-8 JSON of one object, no insignificant whitespace, members sorted,
    ASCII member names, no duplicate members, strings escaped minimally, integers
    only (no float, NaN or Infinity).
    """
    try:
        text = entry.decode("utf-8")
        if _SCAN is None or _ENCODE is None or not entry.isascii():
            value = json.loads(text, parse_float=_refuse_number, parse_constant=_refuse_number)
            return isinstance(value, dict) and canonical(value) == entry  # canonical refuses non-ASCII names
        value, end = _SCAN(text, 0)
        return end == len(text) and type(value) is dict and "".join(_ENCODE(value, 0)) == text
    except (ValueError, UnicodeError, TypeError, RecursionError, StopIteration):
        return False


def first_non_canonical(entries: Sequence[bytes]) -> int | None:
    for position, entry in enumerate(entries):
        if not is_canonical(entry):
            return position
    return None


# --- The walk ----------------------------------------------------------------------------

# A chunk of entries as one row (an array of entries, the leaf hashes concatenated):
# about twice as fast to receive as a row per entry. With count = hi - lo and unique
# indexes in [lo, hi), the chunk has no gap.
_ENTRIES = """
SELECT count(*) AS found, array_agg(entry ORDER BY idx) AS entries, string_agg(leaf_hash, ''::bytea ORDER BY idx) AS leaves
  FROM ledger_entries WHERE idx >= $1 AND idx < $2
"""
_NODE_RUNS = """
SELECT want.level, n.found, n.first, n.hashes
  FROM unnest($1::smallint[], $2::bigint[], $3::bigint[]) AS want(level, lo, hi)
  CROSS JOIN LATERAL (
      SELECT count(*) AS found, min(idx) AS first, string_agg(hash, ''::bytea ORDER BY idx) AS hashes
        FROM ledger_nodes WHERE level = want.level AND idx >= want.lo AND idx < want.hi
  ) AS n
 WHERE n.found > 0
"""
_HEADS = """
SELECT h.size, h.root,
       coalesce(array_agg(e.start ORDER BY e.start) FILTER (WHERE e.start IS NOT NULL), '{}') AS starts,
       coalesce(array_agg(e.hash ORDER BY e.start) FILTER (WHERE e.start IS NOT NULL), '{}') AS hashes
  FROM ledger_heads h LEFT JOIN ledger_edges e ON e.size = h.size
 WHERE h.size > $1 AND h.size <= $2
 GROUP BY h.size, h.root ORDER BY h.size
"""


async def verify_ledger(
    connection: asyncpg.Connection,
    checkpoint: Checkpoint | None = None,
    progress: Progress | None = None,
    chunk_bits: int = CHUNK_BITS,
) -> Report:
    """Verify the whole ledger (see the module docstring); the findings are in the report."""
    started = time.perf_counter()
    report = Report(checkpoint=checkpoint)
    async with connection.transaction(isolation="repeatable_read", readonly=True):
        walk = _Walk(connection, report, checkpoint, progress, chunk_bits)
        await walk.run()
    report.seconds = time.perf_counter() - started
    return report


class _Walk:
    def __init__(self, connection: asyncpg.Connection, report: Report, checkpoint: Checkpoint | None,
                 progress: Progress | None, chunk_bits: int) -> None:
        self.db = connection
        self.report = report
        self.checkpoint = checkpoint
        self.progress = progress
        self.bits = chunk_bits
        self.rebuild = Rebuild(chunk_bits)
        self.last_good_head = 0
        self.bad_heads: list[tuple[int, bytes, bytes]] = []  # (size, stored root, rebuilt root)
        self.head_findings: list[Finding] = []
        self.altered_heads: list[tuple[int, bytes, bytes, int]] = []  # (size, stored, rebuilt, next good head)
        self.checkpoint_root_ok: bool | None = None

    def find(self, finding: Finding) -> None:
        self.report.findings.append(finding)

    async def run(self) -> None:
        size = await self.db.fetchval("SELECT size FROM ledger_size")
        if size is None:
            self.find(Finding("size-missing", "the ledger_size row is missing"))
            return
        self.report.size = size
        try:
            width = 1 << self.bits
            lo = 0
            while lo < size:
                hi = min(lo + width, size)
                await self._chunk(lo, hi, size)
                if self.progress is not None:
                    self.progress(hi, size)
                lo = hi
            self._settle_heads(final=True)
            await self._beyond(size)
            await self._checkpoint(size)
        except _Stop:
            self._settle_heads(final=False)
        self.report.findings[:0] = self._altered_head_findings() + self.head_findings

    def _altered_head_findings(self) -> list[Finding]:
        """Heads that disagree with the entries while a later head agrees: altered rows of ledger_heads."""
        stored = {size: root for size, root, _, _ in self.altered_heads}
        rebuilt = {size: root for size, _, root, _ in self.altered_heads}
        findings, reported = [], set()
        for size, _, _, good in self.altered_heads:
            if size in reported:
                continue
            partner = next((other for other in rebuilt if other != size and other not in reported
                            and rebuilt[other] == stored[size] and stored[other] == rebuilt[size]), None)
            if partner is not None:
                findings.append(Finding("heads-swapped", f"the roots of tree heads {size} and {partner} were swapped",
                                        head=size, other=partner))
                reported |= {size, partner}
            else:
                findings.append(Finding("head-altered", f"tree head {size}: its root was altered (the entries, and "
                                                        f"tree head {good} after it, agree)", head=size))
                reported.add(size)
        return findings

    # --- one chunk ---

    async def _chunk(self, lo: int, hi: int, size: int) -> None:
        found, entries, columns = await self.db.fetchrow(_ENTRIES, lo, hi)
        if found != hi - lo:
            await self._gap(lo, hi, size)
        leaves = hash_leaves(entries)
        chunk = self.rebuild.add_chunk(leaves)
        runs = await self._node_runs(chunk)
        expected_leaves = b"".join(leaves)
        leaf_bad = None
        if columns != expected_leaves or runs.get(0) != (lo, hi - lo, expected_leaves):
            leaf_bad = await self._first_bad_leaf(lo, leaves)
        canonical_bad = first_non_canonical(entries)
        if canonical_bad is not None and (leaf_bad is None or lo + canonical_bad < leaf_bad):
            index = lo + canonical_bad
            self.find(Finding("entry-not-canonical", f"entry {index} is not in canonical form (RFC 8785 as the gateway "
                                                     "writes it): it was not written by the gateway", index=index))
            raise _Stop
        if leaf_bad is not None:
            self.find(await self._diagnose_entry(leaf_bad, lo, leaves, size))
            raise _Stop
        self.report.entries_checked = hi
        await self._compare_nodes(chunk, runs)
        await self._heads(lo, hi)
        if self.checkpoint is not None and lo < self.checkpoint.size <= hi:
            root, _ = self.rebuild.head(self.checkpoint.size)
            self.checkpoint_root_ok = root == self.checkpoint.root
            if not self.checkpoint_root_ok:
                n = self.checkpoint.size
                self.find(Finding(
                    "checkpoint-mismatch",
                    f"the entries 0..{n - 1} do not give the trusted checkpoint's root for size {n}: the ledger was "
                    f"rewritten before entry {n} (consistently: its own tree and heads agree with the new entries)",
                    entries=(0, n), head=n,
                ))
                raise _Stop

    async def _gap(self, lo: int, hi: int, size: int) -> None:
        present = [row[0] for row in await self.db.fetch(
            "SELECT idx FROM ledger_entries WHERE idx >= $1 AND idx < $2 ORDER BY idx", lo, hi)]
        missing = next(index for index, found in zip(range(lo, hi), [*present, None]) if index != found)
        later = await self.db.fetchval("SELECT min(idx) FROM ledger_entries WHERE idx > $1", missing)
        if later is None:
            latest = await self.db.fetchval("SELECT max(size) FROM ledger_heads")
            detail = (f"; no entry follows, and the latest tree head is {latest}: the size row was raised or the last "
                      f"entries deleted" if latest == missing else "; no entry follows it")
            self.find(Finding("entry-missing", f"entry {missing} is missing (gap): the ledger size is {size}{detail}",
                              index=missing, entries=(missing, size)))
        else:
            self.find(Finding("entry-missing", f"entry {missing} is missing (gap): the next entry is {later}",
                              index=missing, entries=(missing, later)))
        raise _Stop

    async def _node_runs(self, chunk: Any) -> dict[int, tuple[int, int, bytes]]:
        levels, los, his = [], [], []
        for level, hashes in enumerate(chunk.levels):
            first = chunk.start >> level
            levels.append(level)
            los.append(first)
            his.append(first + len(hashes))
        for ref, _ in chunk.above:
            levels.append(ref.level)
            los.append(ref.index)
            his.append(ref.index + 1)
        rows = await self.db.fetch(_NODE_RUNS, levels, los, his)
        return {row["level"]: (row["first"], row["found"], row["hashes"]) for row in rows}

    async def _first_bad_leaf(self, lo: int, leaves: list[bytes]) -> int | None:
        columns = await self._leaf_columns(lo, lo + len(leaves))
        tree = await self._tree_leaves(lo, lo + len(leaves))
        for position, leaf in enumerate(leaves):
            if columns.get(lo + position) != leaf or tree.get(lo + position) != leaf:
                return lo + position
        return None

    async def _leaf_columns(self, lo: int, hi: int) -> dict[int, bytes]:
        rows = await self.db.fetch("SELECT idx, leaf_hash FROM ledger_entries WHERE idx >= $1 AND idx < $2", lo, hi)
        return {row["idx"]: row["leaf_hash"] for row in rows}

    async def _tree_leaves(self, lo: int, hi: int) -> dict[int, bytes]:
        rows = await self.db.fetch("SELECT idx, hash FROM ledger_nodes WHERE level = 0 AND idx >= $1 AND idx < $2", lo, hi)
        return {row["idx"]: row["hash"] for row in rows}

    async def _entry_leaf(self, index: int) -> bytes | None:
        entry = await self.db.fetchval("SELECT entry FROM ledger_entries WHERE idx = $1", index)
        return None if entry is None else merkle.leaf_hash(entry)

    async def _diagnose_entry(self, index: int, lo: int, leaves: list[bytes], size: int) -> Finding:
        """Name what happened to entry `index`, the first whose hashes disagree, as precisely as the tables allow."""
        recomputed = leaves[index - lo]
        column = await self.db.fetchval("SELECT leaf_hash FROM ledger_entries WHERE idx = $1", index)
        tree = await self.db.fetchval("SELECT hash FROM ledger_nodes WHERE level = 0 AND idx = $1", index)
        # Whose leaf are these bytes? The tree's record (level 0) first, then the leaf_hash column.
        other = await self.db.fetchval(
            "SELECT idx FROM ledger_nodes WHERE level = 0 AND hash = $1 AND idx <> $2 ORDER BY idx LIMIT 1", recomputed, index)
        if other is None:
            other = await self.db.fetchval(
                "SELECT idx FROM ledger_entries WHERE leaf_hash = $1 AND idx <> $2 ORDER BY idx LIMIT 1", recomputed, index)
        if other is not None:
            other_leaf = await self._entry_leaf(other)
            if other_leaf is not None and other_leaf in (tree, column):
                first, second = sorted((index, other))
                return Finding("entries-swapped", f"entries {first} and {second} are swapped: each holds the bytes the "
                                                  "tree records for the other", index=first, other=second)
            if other == index + 1:
                return Finding("entry-removed", f"entry {index} was removed: the entries after it moved down by one "
                                                f"(entry {index} now holds the bytes the tree records for entry {index + 1})",
                               index=index)
            return Finding("entry-copied", f"entry {index} was altered: it holds a copy of entry {other}'s bytes",
                           index=index, other=other)
        if index + 1 < size:
            next_leaf = await self._entry_leaf(index + 1)
            if next_leaf is not None and next_leaf == tree and next_leaf != column:
                return Finding("entry-inserted", f"an entry was inserted at {index}: the entries from {index} on moved up "
                                                 f"by one (entry {index + 1} holds the bytes the tree records for {index})",
                               index=index)
        if recomputed == tree and recomputed != column:
            return Finding("leaf-hash-altered", f"entry {index}: its leaf_hash column was altered (its bytes and the "
                                                "tree agree)", index=index)
        if recomputed == column and tree is None:
            return Finding("node-missing", f"entry {index}: its leaf in the tree (level 0 node {index}) is missing",
                           index=index)
        if recomputed == column:
            if await self._leaf_fits_parent(index, recomputed):
                return Finding("node-altered", f"entry {index}: its leaf in the tree (level 0 node {index}) was altered "
                                               "(the entry, its leaf hash and the tree above agree)", index=index)
            return Finding("entry-rewritten", f"entry {index} was rewritten together with its leaf_hash column: the "
                                              "tree still records other bytes", index=index)
        if column == tree:
            return Finding("entry-altered", f"entry {index}: leaf hash does not match its bytes (the entry was "
                                            "altered; its leaf hash and the tree agree)", index=index)
        return Finding("entry-altered", f"entry {index}: its bytes, its leaf_hash column and the tree's leaf all "
                                        "disagree", index=index)

    async def _leaf_fits_parent(self, index: int, leaf: bytes) -> bool:
        rows = await self.db.fetch(
            "SELECT level, idx, hash FROM ledger_nodes WHERE (level = 0 AND idx = $1) OR (level = 1 AND idx = $2)",
            index ^ 1, index >> 1)
        found = {(row["level"], row["idx"]): row["hash"] for row in rows}
        sibling, parent = found.get((0, index ^ 1)), found.get((1, index >> 1))
        if sibling is None or parent is None:
            return False
        pair = (sibling, leaf) if index & 1 else (leaf, sibling)
        return merkle.node_hash(*pair) == parent

    async def _compare_nodes(self, chunk: Any, runs: dict[int, tuple[int, int, bytes]]) -> None:
        expected: list[tuple[int, int, list[bytes]]] = [
            (level, chunk.start >> level, hashes) for level, hashes in enumerate(chunk.levels)
        ] + [(ref.level, ref.index, [value]) for ref, value in chunk.above]
        for level, first, hashes in expected:
            self.report.nodes_checked += len(hashes)
            if runs.get(level) == (first, len(hashes), b"".join(hashes)):
                continue
            rows = await self.db.fetch(
                "SELECT idx, hash FROM ledger_nodes WHERE level = $1 AND idx >= $2 AND idx < $3 ORDER BY idx",
                level, first, first + len(hashes))
            stored = {row["idx"]: row["hash"] for row in rows}
            for offset, value in enumerate(hashes):
                index = first + offset
                ref = Perfect(level, index)
                if index not in stored:
                    self.find(Finding("node-missing", f"{describe_node(ref)} is missing", entries=_covers(ref)))
                    raise _Stop
                if stored[index] != value:
                    try:
                        swapped = hashes.index(stored[index]) + first
                    except ValueError:
                        swapped = None
                    if swapped is not None and stored.get(swapped) == value:
                        self.find(Finding("nodes-swapped", f"{describe_node(ref)} and {describe_node(Perfect(level, swapped))}"
                                                           " were swapped", entries=_covers(ref), other=swapped))
                    else:
                        self.find(Finding("node-altered", f"{describe_node(ref)} does not match the entries below it",
                                          entries=_covers(ref)))
                    raise _Stop

    async def _heads(self, lo: int, hi: int) -> None:
        for head in await self.db.fetch(_HEADS, lo, hi):
            size = head["size"]
            root, edges = self.rebuild.head(size)
            self.report.heads_checked += 1
            if head["root"] != root:
                self.bad_heads.append((size, head["root"], root))
                continue
            self._settle_heads(final=False, good=size)
            self.report.root = root
            self.last_good_head = size
            stored = dict(zip(head["starts"], head["hashes"]))
            wanted = dict(edges)
            self.report.edges_checked += len(wanted)
            if stored == wanted:
                continue
            for start in sorted(set(stored) | set(wanted)):
                if start not in stored:
                    self.find(Finding("edge-missing", f"tree head {size}: its edge node (start {start}) is missing", head=size))
                elif start not in wanted:
                    self.find(Finding("edge-unexpected", f"tree head {size}: an edge node (start {start}) that this tree "
                                                         "does not have was inserted", head=size))
                elif stored[start] != wanted[start]:
                    partner = next((other for other, value in wanted.items() if value == stored[start] and other != start), None)
                    if partner is not None and stored.get(partner) == wanted[start]:
                        self.find(Finding("edges-swapped", f"tree head {size}: its edge nodes (start {start}) and (start "
                                                           f"{partner}) were swapped", head=size))
                    else:
                        self.find(Finding("edge-altered", f"tree head {size}: its edge node (start {start}) does not "
                                                          "match the entries", head=size))
                else:
                    continue
                raise _Stop

    def _settle_heads(self, final: bool, good: int | None = None) -> None:
        """Turn the run of heads that disagree with the entries into findings.

        A run followed by a head that agrees was altered in the heads table (entries
        changed would change every later root). A run that lasts to the end means the
        entries after the last good head were rewritten with their nodes — or, for the
        latest head alone, that head was altered: only a range can be named.
        """
        if not self.bad_heads:
            return
        run, self.bad_heads = self.bad_heads, []
        if good is not None:
            self.altered_heads.extend((size, stored, rebuilt, good) for size, stored, rebuilt in run)
            return
        first_bad = run[0][0]
        start = self.last_good_head
        if final and len(run) == 1:
            message = (f"tree head {first_bad} (the latest) does not match the tree rebuilt from the entries: that "
                       f"head was altered, or entries {start}..{first_bad - 1} (after the last good head, {start}) "
                       "were rewritten together with their tree nodes")
        else:
            message = (f"tree heads from {first_bad} on do not match the tree rebuilt from the entries: entries "
                       f"{start}..{first_bad - 1} (between the last good head, {start}, and the first bad one) were "
                       "rewritten together with their tree nodes")
        self.head_findings.append(Finding("heads-disagree", message, entries=(start, first_bad), head=first_bad))

    # --- beyond the walk ---

    async def _beyond(self, size: int) -> None:
        facts = await self.db.fetchrow(
            "SELECT (SELECT min(idx) FROM ledger_entries WHERE idx >= $1::bigint) AS entry,"
            " (SELECT max(size) FROM ledger_heads) AS latest,"
            " (SELECT root FROM ledger_heads WHERE size = $1::bigint) AS root,"
            " (SELECT min(size) FROM ledger_edges e WHERE NOT EXISTS"
            "   (SELECT 1 FROM ledger_heads h WHERE h.size = e.size)) AS orphan,"
            " (SELECT array[level, idx] FROM ledger_nodes WHERE level > 62 OR idx >= ($1::bigint >> level::int)"
            "   ORDER BY level, idx LIMIT 1) AS node",
            size,
        )
        latest = facts["latest"]
        if latest is not None and latest > size:
            if facts["entry"] == size:
                self.find(Finding("size-altered", f"the ledger size row says {size}, but entries go on from {size} and "
                                                  f"tree heads up to {latest}: the size row was set back",
                                  entries=(size, latest)))
                return
            beyond = await self.db.fetchval("SELECT min(size) FROM ledger_heads WHERE size > $1", size)
            self.find(Finding("head-beyond-size", f"a tree head of {beyond} entries, beyond the ledger size {size}, was "
                                                  "inserted", head=beyond))
        if facts["entry"] is not None:
            self.find(Finding("entry-beyond-size", f"an entry beyond the ledger size at {facts['entry']} (the ledger has "
                                                   f"{size} entries): it was inserted", index=facts["entry"]))
        if size > 0 and facts["root"] is None:
            self.find(Finding("head-missing", f"the ledger has {size} entries but no tree head of that size: the latest "
                                              "head was deleted, or entries were appended without the tree",
                              head=size, entries=(self.last_good_head, size)))
        if facts["node"] is not None:
            level, index = facts["node"]
            self.find(Finding("node-beyond-size", f"{describe_node(Perfect(level, index))} lies beyond the ledger size "
                                                  f"{size}: it was inserted"))
        if facts["orphan"] is not None:
            orphan = facts["orphan"]
            if orphan <= size:
                self.find(Finding("head-missing", f"tree head {orphan} is missing: its edge nodes remain (the head was "
                                                  "deleted)", head=orphan))
            else:
                self.find(Finding("edge-orphan", f"edge nodes for a tree of {orphan} entries, beyond the ledger size "
                                                 f"{size}, were inserted", head=orphan))

    async def _checkpoint(self, size: int) -> None:
        checkpoint = self.checkpoint
        if checkpoint is None or self.report.findings or self.head_findings or self.altered_heads:
            return
        n = checkpoint.size
        if n > size:
            self.find(Finding("checkpoint-beyond-size", f"the trusted checkpoint has {n} entries but the ledger only "
                                                        f"{size}: entries were removed", entries=(size, n), head=n))
            return
        stored = await self.db.fetchval("SELECT root FROM ledger_heads WHERE size = $1", n)
        if stored is None:
            self.find(Finding("checkpoint-head-missing", f"the entries still give the trusted checkpoint's root, but the "
                                                         f"tree head of size {n} was deleted", head=n))
            return
        if stored != checkpoint.root:
            self.find(Finding("checkpoint-head-altered", f"tree head {n} does not hold the trusted checkpoint's root",
                              head=n))
            return
        try:
            proof = await consistency_proof(self.db, n, size)
            merkle.verify_consistency(n, size, proof.hashes, proof.root1, proof.root2)
        except (TreeError, merkle.ProofError, ValueError) as error:
            self.find(Finding("checkpoint-inconsistent", f"the latest tree head {size} does not prove that it extends "
                                                         f"the trusted checkpoint of size {n}: {error}", head=size))


def _covers(ref: Perfect) -> tuple[int, int]:
    first = ref.index << ref.level
    return first, first + (1 << ref.level)
