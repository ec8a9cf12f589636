-- 0005: the compliance officers' console (docs/console.md; gateway/console/).
-- Runs on PostgreSQL 15 to 18. Nothing here is in the ledger: the ledger records what
-- officers did (payload-viewed, person-searched, officer-changed) under each officer's
-- pseudonym, never a name; these tables hold the accounts and their sessions.

-- One row per officer. `pseudonym` is the only officer id the ledger ever holds.
-- `password_hash` is argon2id (PHC string); `totp_secret` the RFC 6238 shared secret.
-- `pinned` holds the fingerprints of the log and witness keys the officer was shown
-- at enrolment (SHA-256 of each vkey, hex); the entry page compares against them.
CREATE TABLE console_officers (
    name            text PRIMARY KEY CHECK (name ~ '^[a-z0-9][a-z0-9._-]{1,62}$'),
    pseudonym       uuid NOT NULL UNIQUE,
    role            text NOT NULL CHECK (role IN ('officer', 'auditor')),
    jurisdictions   text[] NOT NULL,
    payload_right   boolean NOT NULL DEFAULT false,
    password_hash   text NOT NULL,
    totp_secret     text NOT NULL,
    totp_last_step  bigint NOT NULL DEFAULT 0,
    time_zone       text NOT NULL DEFAULT 'UTC',
    pinned          text[] NOT NULL,
    disabled_at     timestamptz,
    created_at      timestamptz NOT NULL,
    CHECK (role = 'auditor' OR cardinality(jurisdictions) > 0)
);

-- Server-side sessions: the cookie holds a random token, the table its SHA-256.
CREATE TABLE console_sessions (
    token_hash      bytea PRIMARY KEY CHECK (length(token_hash) = 32),
    officer         text NOT NULL REFERENCES console_officers (name) ON DELETE CASCADE,
    csrf            text NOT NULL,
    language        text NOT NULL,
    created_at      timestamptz NOT NULL,
    seen_at         timestamptz NOT NULL
);
CREATE INDEX console_sessions_officer ON console_sessions (officer);

-- Failed sign-ins, per source address and per (account, source address): growing
-- delays, never an account lock (docs/console.md, "Throttling").
CREATE TABLE console_throttle (
    scope           text NOT NULL,
    failures        integer NOT NULL CHECK (failures >= 0),
    blocked_until   timestamptz,
    updated_at      timestamptz NOT NULL,
    PRIMARY KEY (scope)
);

-- The keyed blind index of persons' identity numbers: HMAC-SHA256 under a key kept
-- outside the database, for the identity documents of referral.submit and
-- verification.request. Without the key the table says nothing about anyone.
CREATE TABLE console_person_index (
    blind       bytea NOT NULL CHECK (length(blind) = 32),
    message_id  uuid NOT NULL REFERENCES messages (id),
    PRIMARY KEY (blind, message_id)
);

-- How far the indexer has read `messages` (by ledger index); moved in the same
-- transaction as the index rows it wrote.
CREATE TABLE console_person_cursor (
    ledger_index bigint NOT NULL
);

-- Why each payload view and person search happened (free text stays here; the ledger
-- holds its SHA-256, the officer's pseudonym and the ids).
CREATE TABLE console_access_reasons (
    ledger_index    bigint PRIMARY KEY,
    officer         text NOT NULL,
    reason          text NOT NULL,
    at              timestamptz NOT NULL
);

-- What the console's pages look up in the ledger without a message id: ledgered refusals
-- (dashboard counts, search by error code) and the entries of a case that name no
-- message. Partial indexes, so the pages cost what they show, not the ledger's size.
CREATE INDEX ledger_entries_refused ON ledger_entries (idx) WHERE position('"kind":"refused"'::bytea IN entry) > 0;
CREATE INDEX ledger_entries_without_message ON ledger_entries (idx) WHERE message_id IS NULL;
