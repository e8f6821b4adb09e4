-- Alerts. A failed attempt leaves a row in `alert_inbox`, written with its outcome, so no
-- failure is missed by a node that crashes before it looks; the alerter takes rows out as it
-- judges them.
CREATE TABLE alert_inbox (
    execution_id  TEXT PRIMARY KEY,
    finished_at   INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

-- One row per alert raised. `incident` is unique: every node that judges the same event
-- computes the same key, so an alert is raised once however many nodes see it.
CREATE TABLE alerts (
    id            TEXT PRIMARY KEY,        -- UUIDv7
    incident      TEXT NOT NULL UNIQUE,
    job_id        TEXT NOT NULL,
    job_name      TEXT NOT NULL,
    kind          TEXT NOT NULL,
    execution_id  TEXT,
    message       TEXT NOT NULL,
    body          TEXT NOT NULL,           -- the JSON a webhook receives
    created_at    INTEGER NOT NULL
) STRICT;

CREATE INDEX alerts_job ON alerts (job_id, id);
CREATE INDEX alerts_job_name ON alerts (job_name, id);

-- One row per (alert, notifier): its delivery, retried with backoff.
CREATE TABLE alert_deliveries (
    id               TEXT PRIMARY KEY,
    alert_id         TEXT NOT NULL,
    notifier         TEXT NOT NULL,        -- webhook | slack
    url              TEXT NOT NULL,
    state            TEXT NOT NULL,        -- pending | delivered | failed
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER,
    last_error       TEXT,
    delivered_at     INTEGER
) STRICT;

CREATE INDEX alert_deliveries_alert ON alert_deliveries (alert_id);
CREATE INDEX alert_deliveries_due ON alert_deliveries (next_attempt_at) WHERE state = 'pending';
