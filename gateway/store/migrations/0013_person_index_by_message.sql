-- Purges forget who the purged messages named (docs/data-protection.md, "Retention"; docs/console.md, "Find by
-- person"). Before this migration a purge left the person index's rows, so with the blind index key a person's
-- number still led to the metadata of messages whose retention had ended.
--
-- A purge queues the cases it touched here, in its own transaction, without waiting for anything (it holds the
-- ledger's lock). The next holder of the indexer's lock (the indexer, `gateway retention run`, the retention loop,
-- `gateway subject purge`) deletes the index rows of each queued case that has no payload left: while one message
-- of the case keeps its payload, the index still leads a data subject's request to it (gateway/console/persons.py,
-- `forget_purged`).
CREATE TABLE console_person_forget (
    case_id uuid PRIMARY KEY
);

-- The rows that purges before this migration left: cases with no payload left.
DELETE FROM console_person_index i USING messages m
WHERE m.id = i.message_id AND m.purged_at IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM messages k WHERE k.case_id = m.case_id AND k.compact IS NOT NULL);

-- Deleting a case's rows finds them by message; the primary key leads with the blind value. Message ids are
-- UUIDv7, so the indexer's new rows land at this index's right-hand edge (docs/performance.md, "Nineteenth pass").
CREATE INDEX console_person_index_message ON console_person_index (message_id);
