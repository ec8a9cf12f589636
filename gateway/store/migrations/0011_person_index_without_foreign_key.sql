-- The person index's rows name their message without a foreign key (docs/console.md, "Find by person";
-- docs/performance.md, "Fifteenth pass").
--
-- The indexer writes only ids it has just read from `messages` in the same transaction, and no message is
-- ever deleted (retention empties a payload and keeps its row), so the key could never refuse a row. It
-- checked each row all the same: a trigger and a lookup of the message, half of the insert's cost, and the
-- index writes several rows a message (one an identity document). tests/console/test_person_index.py holds
-- the property the key stood for: every row names a message that exists.
ALTER TABLE console_person_index DROP CONSTRAINT IF EXISTS console_person_index_message_id_fkey;
