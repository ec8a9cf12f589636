-- Which gateway process leased a pulled delivery (docs/protocol.md §12.6; docs/operations.md, "Pull leases").
--
-- A pull commits its lease before its answer is written. If the process serving it dies in between, the
-- answer never leaves, yet the deliveries stay leased for `lease_seconds`; meanwhile another process's
-- answers skip them and return cursors past them, and a cursor past a fetched receipt acknowledges it
-- (PROTO-12.6-2). With the leasing process recorded, a pull offers again at once what a process that is
-- gone (no connection to the database) had leased. The index finds those rows, and only those.
ALTER TABLE outbox ADD COLUMN lease_process text;
CREATE INDEX outbox_process_leases ON outbox (lease_process, receiver, ledger_index)
    WHERE state = 'queued' AND lease_process IS NOT NULL;
