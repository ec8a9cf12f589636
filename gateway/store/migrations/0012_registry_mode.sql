-- The key registry records its mode (docs/operations.md, "Key registry"): the first gateway start, or the first
-- `gateway keys` change that states a mode, records it; every later start and change must agree. Without it a
-- `gateway keys add` given neither --mode nor --config treated a production registry as a test one, and could
-- register a test key there, after which the production hub could not load its registry. NULL: not recorded yet
-- (a database from before this migration, until its next start).
ALTER TABLE registry_version ADD COLUMN mode text CHECK (mode IN ('test', 'production'));
