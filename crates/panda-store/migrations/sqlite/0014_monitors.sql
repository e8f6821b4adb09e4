-- Monitors: a cron Panda does not run reports its runs by calling a secret URL
-- (`/ping/<token>`), stored only as the SHA-256 of its token, one per monitor.
CREATE TABLE monitor_urls (
    job_id      TEXT PRIMARY KEY,
    token_hash  TEXT NOT NULL UNIQUE,    -- SHA-256 of the URL's token, hex
    created_at  INTEGER NOT NULL
) STRICT;
