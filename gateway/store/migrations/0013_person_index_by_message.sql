-- Purges forget who the purged messages named (docs/data-protection.md, "Retention"; docs/console.md, "Find by
-- person"). Before this migration a purge left the person index's rows, so with the blind index key a person's
-- number still led to the metadata of messages whose retention had ended.
--
-- A purge queues the cases it touched here, in its own transaction, without waiting for anything (it holds the
-- ledger's lock). The next holder of the indexer's lock (the indexer, `gateway retention run`, the retention loop,
-- `gateway subject purge`) deletes the index rows of each queued case that has no payload left: while one message
-- of the case keeps its payload, the index still leads a data subject's request to it (gateway/console/persons.py,
-- `forget_purged`).
--
-- Every purge adds its own rows, with no conflict on the case: a purge never waits for the forgetting, and a row it
-- adds while its transaction is open is invisible to a forgetting that runs meanwhile, which leaves it for the next
-- one. (Keyed by case, a second purge of a case whose row a forgetting was taking would have added nothing, and the
-- forgetting, still seeing that purge's payload, would have kept the case's rows for good.)
CREATE TABLE console_person_forget (
    id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    case_id uuid NOT NULL
);

-- The rows that purges before this migration left: cases with no payload left.
DELETE FROM console_person_index i USING messages m
WHERE m.id = i.message_id AND m.purged_at IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM messages k WHERE k.case_id = m.case_id AND k.compact IS NOT NULL);

-- Deleting a case's rows finds them by message; the primary key leads with the blind value. Message ids are
-- UUIDv7, so the indexer's new rows land at this index's right-hand edge (docs/performance.md, "Nineteenth pass").
CREATE INDEX console_person_index_message ON console_person_index (message_id);
