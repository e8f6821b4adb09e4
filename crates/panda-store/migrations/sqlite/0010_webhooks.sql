-- Inbound webhooks: a job's secret URL (`POST /hooks/<token>`), stored only as the SHA-256 of
-- its token, and the key that verifies a signed delivery, when one is required.
CREATE TABLE webhooks (
    job_id      TEXT PRIMARY KEY,
    token_hash  TEXT NOT NULL UNIQUE,    -- SHA-256 of the URL's token, hex
    secret      TEXT,                    -- HMAC-SHA256 key; NULL: deliveries are not signed
    created_at  INTEGER NOT NULL
) STRICT;
