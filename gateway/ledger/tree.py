"""The ledger's Merkle tree in PostgreSQL: nodes, heads, edges, proofs (docs/protocol.md §13).

Storage (migration 0002): `ledger_nodes(level, idx, hash)` holds every perfect subtree
`Perfect(level, idx)`, level 0 (the leaf hashes) included, written once when its last
leaf is appended; `ledger_heads(size, root)` one tree head per committed append;
`ledger_edges(size, start, hash)` the imperfect right-edge subtrees `Edge(start, size)`
of each head. A proof for a stored head of size n is therefore ONE query that fetches
exactly the nodes RFC 9162 names (`gateway.ledger.merkle.inclusion_nodes` /
`consistency_nodes`) plus the head row(s): at most ceil(log2 n) + 1 rows for an
inclusion proof, ceil(log2 n) + 3 for a consistency proof — never a rebuild.

`Rebuild` recomputes the tree from leaf hashes in aligned chunks, streaming, for
`gateway ledger verify` (gateway/ledger/verify.py); it hashes level by level inside a
chunk (list comprehensions, no per-leaf object) and keeps only the perfect
decomposition of what came before, so memory stays bounded by the chunk.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from gateway.ledger import merkle
from gateway.ledger.merkle import Edge, Frontier, NodeRef, Perfect


class Executor(Protocol):
    """An asyncpg Connection or Pool."""

    async def fetch(self, query: str, *args: Any) -> list[Any]: ...


class TreeError(RuntimeError):
    """The stored tree cannot give what was asked: a node or head is missing or disagrees."""


class NotAHead(TreeError):
    """Proofs are given against stored tree heads, and this size is not one."""

    def __init__(self, size: int, before: int | None, after: int | None) -> None:
        self.size, self.before, self.after = size, before, after
        near = ", ".join(f"{name} {value}" for name, value in (("the head before is", before), ("the head after is", after))
                         if value is not None)
        super().__init__(
            f"tree size {size} is not a stored tree head (proofs are against heads){': ' + near if near else ''}"
        )


@dataclass(frozen=True, slots=True)
class Head:
    size: int
    root: bytes


class InclusionProof(NamedTuple):
    hashes: list[bytes]
    """The RFC 9162 §2.1.3.1 audit path, nearest the leaf first."""
    root: bytes
    """The root of the head the proof is against."""
    rows_read: int
    """Rows the database returned for this proof (nodes, edges and the head)."""


class ConsistencyProof(NamedTuple):
    hashes: list[bytes]
    """The RFC 9162 §2.1.4.1 consistency proof."""
    root1: bytes
    root2: bytes
    rows_read: int


# --- Reading ----------------------------------------------------------------------------

# One index lookup per wanted node, whatever the plan: a prepared statement may be given a
# generic plan while the table is small (a hash join over a scan of ledger_nodes) and keep
# it as the table grows; the LATERAL subquery with LIMIT cannot be turned into that.
_NODES_AND_HEADS = """
SELECT 0 AS kind, want.level::bigint AS a, want.idx AS b, n.hash
  FROM unnest($1::smallint[], $2::bigint[]) AS want(level, idx)
  CROSS JOIN LATERAL (SELECT hash FROM ledger_nodes WHERE level = want.level AND idx = want.idx LIMIT 1) AS n
UNION ALL
SELECT 1, e.start, e.size, e.hash FROM ledger_edges e WHERE e.size = $3 AND e.start = ANY($4::bigint[])
UNION ALL
SELECT 2, h.size, 0, h.root FROM ledger_heads h WHERE h.size = ANY($5::bigint[])
"""


async def _fetch(
    executor: Executor, refs: Sequence[NodeRef], edge_size: int, head_sizes: Sequence[int]
) -> tuple[dict[NodeRef, bytes], dict[int, bytes], int]:
    """One query: the nodes `refs` (Edge nodes of tree `edge_size` only) and the heads; (nodes, heads, rows)."""
    perfect = [ref for ref in refs if isinstance(ref, Perfect)]
    edges = [ref.start for ref in refs if isinstance(ref, Edge)]
    if any(ref.size != edge_size for ref in refs if isinstance(ref, Edge)):
        raise ValueError(f"a proof for tree size {edge_size} needs only Edge(start, {edge_size}) nodes")
    rows = await executor.fetch(
        _NODES_AND_HEADS,
        [ref.level for ref in perfect], [ref.index for ref in perfect], edge_size, edges, list(head_sizes),
    )
    nodes: dict[NodeRef, bytes] = {}
    heads: dict[int, bytes] = {}
    for kind, a, b, value in rows:
        if kind == 0:
            nodes[Perfect(a, b)] = value
        elif kind == 1:
            nodes[Edge(a, b)] = value
        else:
            heads[a] = value
    return nodes, heads, len(rows)


async def _require_heads(executor: Executor, heads: dict[int, bytes], sizes: Sequence[int]) -> None:
    for size in sizes:
        if size not in heads:
            before, after = await heads_around(executor, size)
            raise NotAHead(size, before, after)


def _resolve(nodes: dict[NodeRef, bytes], refs: Sequence[NodeRef], what: str) -> list[bytes]:
    missing = [ref for ref in refs if ref not in nodes]
    if missing:
        raise TreeError(f"the stored tree lacks {describe_node(missing[0])} needed by {what}: run `gateway ledger verify`")
    return [nodes[ref] for ref in refs]


async def inclusion_proof(executor: Executor, index: int, size: int) -> InclusionProof:
    """The inclusion proof of entry `index` in the stored head of `size` entries, in one query.

    Requires 0 <= index < size. Raises NotAHead when no head of that size is stored,
    TreeError when a node the proof needs is missing.
    """
    if not 0 <= index < size:
        raise ValueError(f"entry {index} is not in a tree of {size} entries")
    refs = merkle.inclusion_nodes(index, size)
    nodes, heads, rows = await _fetch(executor, refs, size, [size])
    await _require_heads(executor, heads, [size])
    return InclusionProof(_resolve(nodes, refs, f"the inclusion proof of entry {index} in tree size {size}"), heads[size], rows)


async def consistency_proof(executor: Executor, size1: int, size2: int) -> ConsistencyProof:
    """The consistency proof from the stored head of `size1` entries to that of `size2`, in one query.

    Requires 0 < size1 <= size2. Raises NotAHead when either head is not stored,
    TreeError when a node the proof needs is missing.
    """
    if not 0 < size1 <= size2:
        raise ValueError(f"consistency proof from size {size1} to size {size2}: need 0 < size1 <= size2")
    refs = merkle.consistency_nodes(size1, size2)
    nodes, heads, rows = await _fetch(executor, refs, size2, sorted({size1, size2}))
    await _require_heads(executor, heads, [size1, size2])
    hashes = _resolve(nodes, refs, f"the consistency proof from tree size {size1} to {size2}")
    return ConsistencyProof(hashes, heads[size1], heads[size2], rows)


async def latest_head(executor: Executor) -> Head | None:
    rows = await executor.fetch("SELECT size, root FROM ledger_heads ORDER BY size DESC LIMIT 1")
    return Head(rows[0]["size"], rows[0]["root"]) if rows else None


async def head_at(executor: Executor, size: int) -> Head | None:
    rows = await executor.fetch("SELECT size, root FROM ledger_heads WHERE size = $1", size)
    return Head(rows[0]["size"], rows[0]["root"]) if rows else None


async def heads_around(executor: Executor, size: int) -> tuple[int | None, int | None]:
    """The sizes of the nearest stored heads below and above `size`."""
    rows = await executor.fetch(
        "SELECT (SELECT max(size) FROM ledger_heads WHERE size < $1) AS before,"
        " (SELECT min(size) FROM ledger_heads WHERE size > $1) AS after",
        size,
    )
    return rows[0]["before"], rows[0]["after"]


async def frontier_at(executor: Executor, size: int) -> Frontier:
    """The tree's right edge at `size` entries from its perfect decomposition nodes, in one query.

    Reads at most log2(size) + 2 rows: the decomposition and the head of `size`, whose
    root the frontier must reproduce — an appender refuses to extend a stored right
    edge that disagrees with its head. Raises TreeError when anything is missing or
    disagrees.
    """
    if size == 0:
        return Frontier()
    refs = merkle.perfect_decomposition(size)
    nodes, heads, _ = await _fetch(executor, refs, size, [size])
    frontier = Frontier.from_perfect(size, _resolve(nodes, refs, f"the right edge of tree size {size}"))
    if size not in heads:
        raise TreeError(f"the ledger has {size} entries but no tree head of that size: run `gateway ledger verify`")
    if frontier.root() != heads[size]:
        raise TreeError(
            f"the stored right edge of tree size {size} does not give its head's root: refusing to extend it; "
            "run `gateway ledger verify`"
        )
    return frontier


def describe_node(ref: NodeRef) -> str:
    if isinstance(ref, Perfect):
        first = ref.index << ref.level
        if ref.level == 0:
            return f"tree node (level 0, index {ref.index}), the leaf of entry {first}"
        return f"tree node (level {ref.level}, index {ref.index}) over entries {first}..{first + (1 << ref.level) - 1}"
    return f"edge node (start {ref.start}) of tree head {ref.size}"


# --- Writing (inside the appender's transaction) ----------------------------------------

_APPEND = """
WITH entries AS (
    INSERT INTO ledger_entries (idx, entry, leaf_hash) SELECT * FROM unnest($1::bigint[], $2::bytea[], $3::bytea[])
), nodes AS (
    INSERT INTO ledger_nodes (level, idx, hash) SELECT * FROM unnest($4::smallint[], $5::bigint[], $6::bytea[])
), head AS (
    INSERT INTO ledger_heads (size, root) VALUES ($7, $8)
), edges AS (
    INSERT INTO ledger_edges (size, start, hash) SELECT $7, * FROM unnest($9::bigint[], $10::bytea[])
)
UPDATE ledger_size SET size = $7
"""


async def write_append(connection: Any, start: int, entries: Sequence[bytes], leaves: Sequence[bytes]) -> Head:
    """Write entries [start, start + len) with their tree: new perfect nodes, the new head, its edges.

    One query to load the right edge (`frontier_at`), one statement to write
    everything and move the `ledger_size` row. The caller holds that row's lock.
    """
    frontier = await frontier_at(connection, start)
    levels: list[int] = []
    indexes: list[int] = []
    hashes: list[bytes] = []
    for leaf in leaves:
        for ref, value in frontier.append(leaf):
            levels.append(ref.level)
            indexes.append(ref.index)
            hashes.append(value)
    size = frontier.size
    root = frontier.root()
    edges = frontier.edges()
    await connection.execute(
        _APPEND,
        list(range(start, size)), list(entries), list(leaves),
        levels, indexes, hashes,
        size, root,
        [edge.start for edge, _ in edges], [value for _, value in edges],
    )
    return Head(size, root)


# --- Rebuilding (for verification) -------------------------------------------------------

_sha256 = hashlib.sha256


def hash_leaves(entries: Sequence[bytes]) -> list[bytes]:
    """RFC 9162 leaf hashes of `entries`, in bulk."""
    return [_sha256(b"\x00" + entry).digest() for entry in entries]


def _pairs(level: list[bytes]) -> list[bytes]:
    return [_sha256(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)]


@dataclass(frozen=True, slots=True)
class ChunkTree:
    """The perfect nodes completed by one chunk of leaves [start, end)."""

    start: int
    end: int
    levels: list[list[bytes]]
    """levels[L] holds Perfect(L, start >> L), Perfect(L, (start >> L) + 1), ... for L up to the chunk's bits."""
    above: list[tuple[Perfect, bytes]]
    """Perfect nodes above the chunk level completed at `end`, lowest first."""


class Rebuild:
    """Recomputes the tree chunk by chunk of 2**bits leaves; knows the root and edges at any size in the chunk."""

    def __init__(self, bits: int = 13) -> None:
        self.bits = bits
        self.size = 0
        self._outer: list[tuple[int, int, bytes]] = []  # (level, start, hash): perfect decomposition of `size`
        self._chunk: ChunkTree | None = None
        self._base: list[tuple[int, int, bytes]] = []  # the decomposition of the last chunk's start

    def add_chunk(self, leaves: list[bytes]) -> ChunkTree:
        """Add the next chunk (2**bits leaves, fewer only for the last one); return its nodes."""
        width = 1 << self.bits
        if len(leaves) > width or self._chunk is not None and self._chunk.end - self._chunk.start < width:
            raise ValueError(f"chunks are {width} leaves, only the last one shorter")
        start = self.size
        levels = [leaves]
        while len(levels[-1]) > 1:
            levels.append(_pairs(levels[-1]))
        above: list[tuple[Perfect, bytes]] = []
        self._chunk = ChunkTree(start, start + len(leaves), levels, above)
        self._base = list(self._outer)  # the decomposition of `start`, all levels >= bits
        if len(leaves) == width:
            level, node = self.bits, levels[self.bits][0]
            node_start = start
            while self._outer and self._outer[-1][0] == level:
                _, left_start, left = self._outer.pop()
                node = _sha256(b"\x01" + left + node).digest()
                level += 1
                node_start = left_start
                above.append((Perfect(level, node_start >> level), node))
            self._outer.append((level, node_start, node))
        self.size = start + len(leaves)
        return self._chunk

    def _decomposition(self, size: int) -> list[tuple[int, bytes]]:
        """(start, hash) of the perfect decomposition of `size`, for a size inside the last chunk added."""
        chunk = self._chunk
        if chunk is None or not chunk.start < size <= chunk.end:
            raise ValueError(f"tree size {size} is not inside the chunk being rebuilt")
        if size == self.size and size - chunk.start == 1 << self.bits:
            return [(start, value) for _, start, value in self._outer]
        parts = [(start, value) for _, start, value in self._base]
        offset = 0
        rest = size - chunk.start
        for level in reversed(range(self.bits)):
            if rest >> level & 1:
                parts.append((chunk.start + offset, chunk.levels[level][offset >> level]))
                offset += 1 << level
        return parts

    def head(self, size: int) -> tuple[bytes, list[tuple[int, bytes]]]:
        """(root, edges as (start, hash) by start) of the tree of `size` leaves, a size inside the last chunk."""
        parts = self._decomposition(size)
        node = parts[-1][1]
        edges = []
        for position in range(len(parts) - 2, -1, -1):
            node = _sha256(b"\x01" + parts[position][1] + node).digest()
            if position > 0:
                edges.append((parts[position][0], node))
        edges.reverse()
        return node, edges
