-- 0002: the ledger's RFC 9162 Merkle tree (docs/protocol.md §13; gateway/ledger/tree.py).
-- Runs on PostgreSQL 15 to 18. The entry bytes stay the source of truth: every table
-- below can be rebuilt from ledger_entries, and `gateway ledger verify` does exactly that.

-- Every perfect subtree, level 0 (the leaf hashes) included: Perfect(level, idx) covers
-- leaves [idx * 2^level, (idx + 1) * 2^level). Written once, when its last leaf is
-- appended, and never changed.
CREATE TABLE ledger_nodes (
    level       smallint NOT NULL CHECK (level BETWEEN 0 AND 62),
    idx         bigint NOT NULL CHECK (idx >= 0),
    hash        bytea NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (level, idx)
);

-- One tree head per committed append (a hub batch, a registry change): the tree size
-- after it and the RFC 9162 root of that tree. Proofs are given against heads.
CREATE TABLE ledger_heads (
    size        bigint PRIMARY KEY CHECK (size > 0),
    root        bytea NOT NULL CHECK (length(root) = 32),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- The imperfect right-edge subtrees of each head, Edge(start, size) = MTH(D[start:size])
-- where size - start is not a power of two and start > 0: the only nodes a proof for a
-- tree of `size` leaves needs besides perfect ones (one per set bit of size, minus two).
CREATE TABLE ledger_edges (
    size        bigint NOT NULL CHECK (size > 0),
    start       bigint NOT NULL CHECK (start > 0 AND start < size),
    hash        bytea NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (size, start)
);

-- `gateway ledger proof MESSAGE_ID`: a lookup derived by the server from the entry bytes
-- (the 36 characters after the first "message_id":"), so it can never disagree with
-- them; the command still parses each entry found and checks its top-level message_id.
-- A byte search, not a regular expression: a regex here costs about 20 µs per entry,
-- a third of an append.
ALTER TABLE ledger_entries ADD COLUMN message_id text GENERATED ALWAYS AS (
    CASE WHEN position('"message_id":"'::bytea IN entry) > 0 THEN
        lower(encode(substring(entry FROM position('"message_id":"'::bytea IN entry) + 14 FOR 36), 'escape'))
    END
) STORED;
CREATE INDEX ledger_entries_message_id ON ledger_entries (message_id) WHERE message_id IS NOT NULL;

-- A ledger written before this migration gets its tree now: every perfect node, and one
-- head (with its edges) for its current size. Refuses to build on a damaged ledger.
DO $$
DECLARE
    total       bigint;
    n           bigint := 0;
    stack       bytea[] := '{}';   -- the hashes of the perfect decomposition of n, left to right
    depth       int;
    node        bytea;
    height      int;
    entry_row   record;
    start_at    bigint;
    pos         int;
BEGIN
    SELECT size INTO total FROM ledger_size;
    IF total = 0 THEN
        RETURN;
    END IF;
    FOR entry_row IN SELECT idx, entry, leaf_hash FROM ledger_entries ORDER BY idx LOOP
        IF entry_row.idx <> n THEN
            RAISE EXCEPTION 'ledger entry % is missing (found % next): repair the ledger before upgrading', n, entry_row.idx;
        END IF;
        node := sha256('\x00'::bytea || entry_row.entry);
        IF node <> entry_row.leaf_hash THEN
            RAISE EXCEPTION 'ledger entry %: its leaf hash does not match its bytes: repair the ledger before upgrading', n;
        END IF;
        INSERT INTO ledger_nodes (level, idx, hash) VALUES (0, n, node);
        height := 0;
        WHILE (n >> height) & 1 = 1 LOOP
            depth := cardinality(stack);
            node := sha256('\x01'::bytea || stack[depth] || node);
            stack := stack[1:depth - 1];
            height := height + 1;
            INSERT INTO ledger_nodes (level, idx, hash) VALUES (height, n >> height, node);
        END LOOP;
        stack := stack || node;
        n := n + 1;
    END LOOP;
    IF n <> total THEN
        RAISE EXCEPTION 'the ledger holds % entries but its size row says %: repair the ledger before upgrading', n, total;
    END IF;
    -- Fold the decomposition from the right: each partial fold from position 2 on is an
    -- edge, the whole fold the root.
    depth := cardinality(stack);
    node := stack[depth];
    FOR pos IN REVERSE depth - 1 .. 1 LOOP
        node := sha256('\x01'::bytea || stack[pos] || node);
        IF pos > 1 THEN
            -- this subtree starts after the ones left of it: the top pos - 1 set bits of total
            SELECT coalesce(sum(1::bigint << bit), 0) INTO start_at
            FROM (SELECT bit FROM generate_series(62, 0, -1) AS bit
                  WHERE (total >> bit) & 1 = 1 ORDER BY bit DESC LIMIT pos - 1) AS top_bits;
            INSERT INTO ledger_edges (size, start, hash) VALUES (total, start_at, node);
        END IF;
    END LOOP;
    INSERT INTO ledger_heads (size, root) VALUES (total, node);
END
$$;
