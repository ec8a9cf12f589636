-- Personal data at rest (docs/security.md, "Payloads at rest"; gateway/store/payloads.py) and
-- its retention (gateway/hub/retention.py).
--
-- messages.compact now holds the message sealed with AES-256-GCM under the payload key named
-- in payload_key; NULL names no key: a row stored in clear before this migration, sealed by
-- the hub at its next start (gateway/hub/store.py, reseal_messages) and then vacuumed away.
-- retention_days is the route's at acceptance (NULL before this migration: the default
-- route retention applies); when a purge deletes the payload, compact and payload_key
-- become NULL and purged_at says when. Id, digest and hub receipt are kept for good.
ALTER TABLE messages
    ADD COLUMN payload_key text,
    ADD COLUMN retention_days integer CHECK (retention_days > 0),
    ADD COLUMN purged_at timestamptz,
    ALTER COLUMN compact DROP NOT NULL;
ALTER TABLE messages ADD CONSTRAINT messages_payload_or_purged CHECK ((compact IS NULL) = (purged_at IS NOT NULL));
