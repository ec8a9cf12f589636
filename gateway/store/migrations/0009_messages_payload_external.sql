-- Sealed payloads out of the row, never compressed (docs/performance.md, "Fifth pass"; replaces 0008's setting).
--
-- 0008 kept a stored message's few kilobytes of ciphertext in its row, which made its insert cheaper. But a
-- message row is written three times: at acceptance, when delivered, and when receipted, and each update of a
-- row copies the whole row, ciphertext included. Measured over that whole life (20,000 rows of 3.3 KB on
-- PostgreSQL 15, an insert and two updates each, two runs): in the row, 78 µs of backend CPU and 12.9 KB of
-- WAL a message; out of the row with `STORAGE EXTERNAL`, 68 to 71 µs and 6.9 KB, and half the table.
-- EXTERNAL keeps 0008's other gain: no attempt to compress ciphertext, which never compresses. The settings
-- take no time and rewrite nothing: rows stored under 0008 keep their payload in the row until rewritten.
ALTER TABLE messages RESET (toast_tuple_target);
ALTER TABLE messages ALTER COLUMN compact SET STORAGE EXTERNAL;
