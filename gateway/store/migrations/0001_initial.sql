-- 0001: the hub core (docs/architecture.md, "Storage").
-- Runs on PostgreSQL 15 to 18. Exact bytes are bytea, never jsonb: signatures and
-- ledger hashes are over bytes, and jsonb would normalise them away.

-- The trust registry: every key ever registered (history is kept: a key is revoked
-- or expires, it is never deleted, so old messages still verify).
CREATE TABLE jurisdictions (
    code        text PRIMARY KEY,
    names       jsonb NOT NULL
);

CREATE TABLE keys (
    kid         text PRIMARY KEY,
    owner       text NOT NULL,
    use         text NOT NULL CHECK (use IN ('message', 'receipt', 'checkpoint', 'witness')),
    alg         text NOT NULL CHECK (alg IN ('Ed25519', 'ES256')),
    jwk         bytea NOT NULL,
    not_before  timestamptz NOT NULL,
    not_after   timestamptz NOT NULL CHECK (not_after > not_before),
    revoked_at  timestamptz,
    test_key    boolean NOT NULL,
    added_at    timestamptz NOT NULL DEFAULT now()
);

-- One row: the registry's version. Every change bumps it (and NOTIFYs), so every
-- process can tell whether its in-memory trust list is current.
CREATE TABLE registry_version (
    only_row    boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    version     bigint NOT NULL
);
INSERT INTO registry_version VALUES (true, 0);

-- Gateway processes alive now, for acknowledged registry changes.
CREATE TABLE gateway_processes (
    process_id      text PRIMARY KEY,
    started_at      timestamptz NOT NULL DEFAULT now(),
    seen_at         timestamptz NOT NULL DEFAULT now(),
    registry_version bigint NOT NULL DEFAULT 0
);

-- The audit ledger: gap-free indexes from a counter row locked in the appending
-- transaction (no SEQUENCE: sequences leave gaps on rollback).
CREATE TABLE ledger_size (
    only_row    boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    size        bigint NOT NULL CHECK (size >= 0)
);
INSERT INTO ledger_size VALUES (true, 0);

CREATE TABLE ledger_entries (
    idx         bigint PRIMARY KEY CHECK (idx >= 0),
    entry       bytea NOT NULL,
    leaf_hash   bytea NOT NULL CHECK (length(leaf_hash) = 32)
);

-- Cases: one row per case, moved by the state machine inside the accepting transaction.
CREATE TABLE cases (
    id          uuid PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN ('referral', 'verification')),
    opener      text NOT NULL,
    responder   text NOT NULL,
    state       text NOT NULL,
    respond_by  timestamptz,
    opened_by   uuid NOT NULL,
    updated_at  timestamptz NOT NULL
);

-- Accepted messages, exactly as received.
CREATE TABLE messages (
    id           uuid PRIMARY KEY,
    digest       bytea NOT NULL UNIQUE CHECK (length(digest) = 32),
    compact      bytea NOT NULL,
    type         text NOT NULL,
    sender       text NOT NULL,
    receiver     text NOT NULL,
    case_id      uuid NOT NULL,
    reply_to     uuid,
    kid          text NOT NULL,
    created      timestamptz NOT NULL,
    accepted_at  timestamptz NOT NULL,
    ledger_index bigint NOT NULL UNIQUE,
    hub_receipt  bytea NOT NULL,
    status       text NOT NULL DEFAULT 'accepted'
);
CREATE INDEX messages_case ON messages (case_id);
CREATE INDEX messages_sender ON messages (sender, accepted_at);

-- Work for delivery (the delivery issue adds leases and retries to it).
CREATE TABLE outbox (
    message_id  uuid PRIMARY KEY REFERENCES messages (id),
    receiver    text NOT NULL,
    case_id     uuid NOT NULL,
    due_at      timestamptz NOT NULL
);

-- One-time request-proof ids shared by every process (docs/protocol.md §9.5).
CREATE TABLE request_proof_ids (
    jti         uuid PRIMARY KEY,
    kid         text NOT NULL,
    expires_at  timestamptz NOT NULL
);
CREATE INDEX request_proof_ids_expiry ON request_proof_ids (expires_at);
