-- 0004: checkpoints, witness cosignatures, continuous verification (docs/protocol.md §13.4-§13.6;
-- gateway/ledger/checkpoints.py). Runs on PostgreSQL 15 to 18.

-- Every checkpoint the hub signed (C2SP tlog-checkpoint signed notes), exactly as signed.
-- The hub never signs two checkpoints of one origin that are inconsistent (§13.4).
CREATE TABLE ledger_checkpoints (
    origin      text NOT NULL,
    size        bigint NOT NULL CHECK (size >= 0),
    root        bytea NOT NULL CHECK (length(root) = 32),
    note        text NOT NULL,
    signed_at   timestamptz NOT NULL,
    PRIMARY KEY (origin, size)
);

-- Cosignatures (C2SP tlog-cosignature/v1 signature lines) a witness returned for a checkpoint.
CREATE TABLE ledger_cosignatures (
    origin      text NOT NULL,
    size        bigint NOT NULL,
    witness     text NOT NULL,
    line        text NOT NULL,
    received_at timestamptz NOT NULL,
    PRIMARY KEY (origin, size, witness),
    FOREIGN KEY (origin, size) REFERENCES ledger_checkpoints (origin, size)
);

-- What the hub knows of each witness: the size it last cosigned, and the last failure.
CREATE TABLE ledger_witnesses (
    witness     text PRIMARY KEY,
    origin      text NOT NULL,
    size        bigint NOT NULL DEFAULT 0,
    root        bytea,
    contacted_at timestamptz,
    last_error  text
);

-- Results of full verifications (the scheduled one inside the gateway, and `ledger verify --record`).
CREATE TABLE ledger_verifications (
    id          bigserial PRIMARY KEY,
    started_at  timestamptz NOT NULL,
    seconds     double precision NOT NULL,
    size        bigint NOT NULL,
    intact      boolean NOT NULL,
    first_bad_index bigint,
    finding     text,
    by_whom     text NOT NULL
);

-- Hand-overs from a log that had to stop (a rollback, §13.8) to its successor: a note
-- signed with the checkpoint key under the old origin, naming the new one.
CREATE TABLE ledger_handovers (
    old_origin  text PRIMARY KEY,
    new_origin  text NOT NULL UNIQUE,
    size        bigint NOT NULL,
    root        bytea NOT NULL,
    note        text NOT NULL,
    created_at  timestamptz NOT NULL
);
