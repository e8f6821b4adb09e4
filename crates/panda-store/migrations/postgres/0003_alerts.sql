-- Alerts. A failed attempt leaves a row in `alert_inbox`, written with its outcome, so no
-- failure is missed by a node that crashes before it looks; the alerter takes rows out as it
-- judges them.
CREATE TABLE alert_inbox (
    execution_id  uuid PRIMARY KEY,
    finished_at   timestamptz NOT NULL
);

-- One row per alert raised. `incident` is unique: every node that judges the same event
-- computes the same key, so an alert is raised once however many nodes see it.
CREATE TABLE alerts (
    id            uuid PRIMARY KEY,        -- UUIDv7
    incident      text NOT NULL UNIQUE,
    job_id        uuid NOT NULL,
    job_name      text NOT NULL,
    kind          text NOT NULL,
    execution_id  uuid,
    message       text NOT NULL,
    body          jsonb NOT NULL,          -- the JSON a webhook receives
    created_at    timestamptz NOT NULL
);

CREATE INDEX alerts_job ON alerts (job_id, id);
CREATE INDEX alerts_job_name ON alerts (job_name, id);

-- One row per (alert, notifier): its delivery, retried with backoff.
CREATE TABLE alert_deliveries (
    id               uuid PRIMARY KEY,
    alert_id         uuid NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    notifier         text NOT NULL,        -- webhook | slack
    url              text NOT NULL,
    state            text NOT NULL,        -- pending | delivered | failed
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz,
    last_error       text,
    delivered_at     timestamptz
);

CREATE INDEX alert_deliveries_alert ON alert_deliveries (alert_id);
CREATE INDEX alert_deliveries_due ON alert_deliveries (next_attempt_at) WHERE state = 'pending';
