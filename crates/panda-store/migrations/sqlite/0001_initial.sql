-- Panda's schema on SQLite. Instants are INTEGER microseconds since the Unix epoch (UTC), ids are
-- UUIDs as lower-case hyphenated TEXT (UUIDv7, so they sort by creation time), JSON is TEXT.

CREATE TABLE jobs (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    scheduled   INTEGER NOT NULL,          -- 1 when the spec has a schedule (a cronjob)
    spec        TEXT NOT NULL,             -- panda_core::JobSpec as JSON
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    deleted_at  INTEGER                    -- soft delete: history keeps pointing here
) STRICT;

-- A name is unique among live jobs only, so a deleted job's name can be used again.
CREATE UNIQUE INDEX jobs_live_name ON jobs (name) WHERE deleted_at IS NULL;

CREATE TABLE executions (
    id                TEXT PRIMARY KEY,
    root_id           TEXT NOT NULL,       -- first attempt of the run
    job_id            TEXT NOT NULL,
    job_name          TEXT NOT NULL,
    queue             TEXT NOT NULL,
    priority          INTEGER NOT NULL,
    status            TEXT NOT NULL,
    trigger           TEXT NOT NULL,
    attempt           INTEGER NOT NULL,
    max_attempts      INTEGER NOT NULL,
    backoff_base_ms   INTEGER NOT NULL,
    backoff_cap_ms    INTEGER NOT NULL,
    concurrency       TEXT NOT NULL,
    idempotency_key   TEXT,
    payload           TEXT,
    env               TEXT NOT NULL,       -- JSON object
    scheduled_at      INTEGER,
    run_at            INTEGER NOT NULL,
    created_at        INTEGER NOT NULL,
    started_at        INTEGER,
    finished_at       INTEGER,
    worker_id         TEXT,
    lease_token       TEXT,
    lease_expires_at  INTEGER,
    cancel_requested  INTEGER NOT NULL DEFAULT 0,
    exit_code         INTEGER,
    reason            TEXT,
    image_digest      TEXT
) STRICT;

-- One first attempt per (job, idempotency key); retries carry the key too.
CREATE UNIQUE INDEX executions_idempotency
    ON executions (job_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL AND attempt = 1;
-- The claim walks this index in order and stops at its limit (queries name it with INDEXED BY:
-- without statistics the planner would pick executions_status and sort every queued row).
CREATE INDEX executions_claim ON executions (priority DESC, run_at, id) WHERE status = 'queued';
-- A job's executions by status: the overlap pre-pass of the claim, job delete.
CREATE INDEX executions_job_id ON executions (job_id, status);
-- The rescuer: running executions by lease expiry.
CREATE INDEX executions_lease ON executions (lease_expires_at) WHERE status = 'running';
-- History by job, newest first (keyset on id).
CREATE INDEX executions_job ON executions (job_name, id);
CREATE INDEX executions_job_status ON executions (job_name, status, id);
CREATE INDEX executions_status ON executions (status, id);
-- Retention by age.
CREATE INDEX executions_finished ON executions (finished_at) WHERE finished_at IS NOT NULL;

-- Cron slots: (job, instant) is the at-most-once key.
CREATE TABLE slots (
    job_id        TEXT NOT NULL,
    scheduled_at  INTEGER NOT NULL,
    execution_id  TEXT NOT NULL,
    fired         INTEGER NOT NULL,
    recorded_at   INTEGER NOT NULL,
    PRIMARY KEY (job_id, scheduled_at)
) STRICT, WITHOUT ROWID;

-- The per-job lock of `--concurrency forbid`: one row while an execution of the job runs.
CREATE TABLE job_locks (
    job_id        TEXT PRIMARY KEY,
    execution_id  TEXT NOT NULL
) STRICT, WITHOUT ROWID;

-- A rowid table: chunks run to 64 KiB, and a WITHOUT ROWID table keeps its rows in the key's
-- B-tree, where rows larger than a fraction of a page make every lookup walk overflow pages.
CREATE TABLE log_chunks (
    execution_id  TEXT NOT NULL,
    seq           INTEGER NOT NULL,
    stream        TEXT NOT NULL,
    at            INTEGER NOT NULL,
    data          BLOB NOT NULL,
    UNIQUE (execution_id, seq)
) STRICT;

CREATE TABLE api_tokens (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    scope         TEXT NOT NULL,
    hash          TEXT NOT NULL UNIQUE,    -- SHA-256 of the secret, hex
    created_at    INTEGER NOT NULL,
    last_used_at  INTEGER,
    revoked_at    INTEGER
) STRICT;

CREATE UNIQUE INDEX api_tokens_live_name ON api_tokens (name) WHERE revoked_at IS NULL;
