-- Panda's schema on PostgreSQL: the SQLite schema (migrations/sqlite/0001_initial.sql) with
-- native types. Ids are uuid (UUIDv7, so they sort by creation time), instants timestamptz (the
-- engine's clock, never NOW()), JSON jsonb, log data bytea. Names are COLLATE "C" so that
-- listings sort by bytes, as on SQLite, whatever the database's locale.

CREATE TABLE jobs (
    id          uuid PRIMARY KEY,
    name        text COLLATE "C" NOT NULL,
    scheduled   boolean NOT NULL,          -- true when the spec has a schedule (a cronjob)
    spec        jsonb NOT NULL,            -- panda_core::JobSpec
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    deleted_at  timestamptz                -- soft delete: history keeps pointing here
);

-- A name is unique among live jobs only, so a deleted job's name can be used again.
CREATE UNIQUE INDEX jobs_live_name ON jobs (name) WHERE deleted_at IS NULL;

CREATE TABLE executions (
    id                uuid PRIMARY KEY,
    root_id           uuid NOT NULL,       -- first attempt of the run
    job_id            uuid NOT NULL,
    job_name          text COLLATE "C" NOT NULL,
    queue             text COLLATE "C" NOT NULL,
    priority          integer NOT NULL,
    status            text NOT NULL,
    trigger           text NOT NULL,
    attempt           integer NOT NULL,
    max_attempts      integer NOT NULL,
    backoff_base_ms   bigint NOT NULL,
    backoff_cap_ms    bigint NOT NULL,
    concurrency       text NOT NULL,
    idempotency_key   text,
    payload           jsonb,
    env               jsonb NOT NULL,      -- object of strings
    scheduled_at      timestamptz,
    run_at            timestamptz NOT NULL,
    created_at        timestamptz NOT NULL,
    started_at        timestamptz,
    finished_at       timestamptz,
    worker_id         text,
    lease_token       uuid,
    lease_expires_at  timestamptz,
    cancel_requested  boolean NOT NULL DEFAULT false,
    exit_code         integer,
    reason            text,
    image_digest      text
);

-- One first attempt per (job, idempotency key); retries carry the key too. Enqueue names this
-- index's columns and predicate in ON CONFLICT, so keep them in step.
CREATE UNIQUE INDEX executions_idempotency
    ON executions (job_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL AND attempt = 1;
-- The claim: due queued executions, highest priority first, then earliest due; per queue, and
-- across all queues for workers that take from every queue. (The claim locks rows, so PostgreSQL
-- cannot stop a sort early: an index must yield the claim order.)
CREATE INDEX executions_claim ON executions (queue, priority DESC, run_at, id) WHERE status = 'queued';
CREATE INDEX executions_claim_all ON executions (priority DESC, run_at, id) WHERE status = 'queued';
-- The rescuer: running executions by lease expiry.
CREATE INDEX executions_lease ON executions (lease_expires_at) WHERE status = 'running';
-- History by job, newest first (keyset on id).
CREATE INDEX executions_job ON executions (job_name, id);
CREATE INDEX executions_job_status ON executions (job_name, status, id);
CREATE INDEX executions_status ON executions (status, id);
-- A job's queued or running executions by job id: the overlap pre-pass of the claim, replace,
-- job delete. Partial, so that finishing an execution does not write to it.
CREATE INDEX executions_job_live ON executions (job_id, status) WHERE status IN ('queued', 'running');
-- Retention by age.
CREATE INDEX executions_finished ON executions (finished_at) WHERE finished_at IS NOT NULL;

-- Cron slots: (job, instant) is the at-most-once key.
CREATE TABLE slots (
    job_id        uuid NOT NULL,
    scheduled_at  timestamptz NOT NULL,
    execution_id  uuid NOT NULL,
    fired         boolean NOT NULL,
    recorded_at   timestamptz NOT NULL,
    PRIMARY KEY (job_id, scheduled_at)
);
CREATE INDEX slots_scheduled_at ON slots (scheduled_at);

-- The per-job lock of `--concurrency forbid`: one row while an execution of the job runs.
CREATE TABLE job_locks (
    job_id        uuid PRIMARY KEY,
    execution_id  uuid NOT NULL
);
CREATE INDEX job_locks_execution ON job_locks (execution_id);

CREATE TABLE log_chunks (
    execution_id  uuid NOT NULL,
    seq           bigint NOT NULL,
    stream        text NOT NULL,
    at            timestamptz NOT NULL,
    data          bytea NOT NULL,
    PRIMARY KEY (execution_id, seq)
);

CREATE TABLE api_tokens (
    id            uuid PRIMARY KEY,
    name          text COLLATE "C" NOT NULL,
    scope         text NOT NULL,
    hash          text NOT NULL UNIQUE,    -- SHA-256 of the secret, hex
    created_at    timestamptz NOT NULL,
    last_used_at  timestamptz,
    revoked_at    timestamptz
);

CREATE UNIQUE INDEX api_tokens_live_name ON api_tokens (name) WHERE revoked_at IS NULL;
