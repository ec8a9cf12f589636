-- Retention forgets who a purged message named (docs/data-protection.md, "Retention"; docs/console.md, "Find by
-- person"). A purge deletes the payload and, in the same transaction, the message's rows of the person index; before
-- this migration those rows stayed, so with the blind index key a person's number still led to the metadata of
-- messages whose retention had ended. Deleting them by message needs this index: the primary key leads with the
-- blind value. Message ids are UUIDv7, so the indexer's new rows land at the index's right-hand edge
-- (docs/performance.md, "Nineteenth pass", measures what it costs the indexer).
CREATE INDEX console_person_index_message ON console_person_index (message_id);

-- The rows of messages purged before this migration.
DELETE FROM console_person_index i USING messages m WHERE m.id = i.message_id AND m.purged_at IS NOT NULL;
