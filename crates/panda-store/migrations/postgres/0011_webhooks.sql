-- Inbound webhooks: a job's secret URL (`POST /hooks/<token>`), stored only as the SHA-256 of
-- its token, and the key that verifies a signed delivery, when one is required.
CREATE TABLE webhooks (
    job_id      uuid PRIMARY KEY,
    token_hash  text NOT NULL UNIQUE,    -- SHA-256 of the URL's token, hex
    secret      text,                    -- HMAC-SHA256 key; NULL: deliveries are not signed
    created_at  timestamptz NOT NULL
);
