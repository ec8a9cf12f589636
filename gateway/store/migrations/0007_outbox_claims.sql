-- Pulls that stay cheap however many deliveries are in flight (docs/performance.md, "Bulk").
--
-- A pull takes the receiver's ready deliveries in ledger order: not leased, or leased and expired.
-- Without these indexes it read every queued row of the receiver, in flight (leased) or not, on
-- every poll: with thousands of deliveries in flight that was most of the database's work.
CREATE INDEX outbox_unleased ON outbox (receiver, ledger_index) WHERE state = 'queued' AND lease_until IS NULL;
CREATE INDEX outbox_leases ON outbox (receiver, lease_until) WHERE state = 'queued' AND lease_until IS NOT NULL;
-- The fetched receipts a cursor acknowledges (PROTO-12.6-2).
CREATE INDEX outbox_receipts ON outbox (receiver, ledger_index) WHERE state = 'queued' AND is_receipt;
