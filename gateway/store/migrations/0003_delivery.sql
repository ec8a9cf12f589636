-- 0003: delivery (docs/protocol.md §12.4 to §12.7; gateway/hub/outbox.py).
-- Runs on PostgreSQL 15 to 18. An outbox row lives from acceptance until the delivery is
-- acknowledged (then it is deleted) or superseded; a dead letter stays, in state 'dead',
-- until an operator retries it. Leases are committed values, never row locks held across
-- an HTTP call: `claimed_by` is the gateway process, `lease_until` when others may take over.

ALTER TABLE outbox
    ADD COLUMN ledger_index bigint,
    ADD COLUMN is_receipt   boolean NOT NULL DEFAULT false,
    ADD COLUMN queued_at    timestamptz,
    ADD COLUMN state        text NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'dead')),
    ADD COLUMN attempts     integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    ADD COLUMN claimed_by   text,
    ADD COLUMN lease_until  timestamptz,
    ADD COLUMN last_error   text;

UPDATE outbox o SET ledger_index = m.ledger_index, is_receipt = (m.type = 'receipt'), queued_at = m.accepted_at
FROM messages m WHERE m.id = o.message_id;

ALTER TABLE outbox ALTER COLUMN ledger_index SET NOT NULL, ALTER COLUMN queued_at SET NOT NULL;

-- What is ready, and the per (receiver, case) order of PROTO-12.4-2.
CREATE INDEX outbox_ready ON outbox (receiver, due_at) WHERE state = 'queued';
CREATE INDEX outbox_case_order ON outbox (receiver, case_id, ledger_index) WHERE state = 'queued';
CREATE INDEX outbox_case ON outbox (case_id);

-- The receiver's receipt of a message once the hub accepted it, and which process delivered it.
ALTER TABLE messages
    ADD COLUMN receiver_receipt bytea,
    ADD COLUMN delivered_by     text;

-- Verification deadlines to expire (PROTO-7.5-3).
CREATE INDEX cases_deadline ON cases (respond_by) WHERE state = 'requested';
