-- Rate limits (a job's `rate_limit`): at most `starts` starts in any window of `window_ms`,
-- per job or per key, as a sliding log of starts.
--
-- The limits in force, one row per limited job, written with the definition in the same
-- transaction (the definition's JSON stays the source): the claim reads the rows of its
-- candidates' jobs, and the one-statement claim leaves such jobs to the full claim. `key_expr`
-- is the key's expression (NULL: the job as a whole), `key_default` the job's own value of an
-- `env.NAME` key (an execution's own environment comes first).
CREATE TABLE rate_limits (
    job_id       uuid PRIMARY KEY,
    starts       integer NOT NULL,
    window_ms    bigint NOT NULL,
    key_expr     text,
    key_default  text
);

-- The log: one row per start, kept until it leaves its window (`expires_at`). A claim counts
-- a key's rows that have not expired, under the key's lock, and adds the ones it starts.
CREATE TABLE rate_starts (
    job_id        uuid NOT NULL,
    key           text NOT NULL,
    expires_at    timestamptz NOT NULL,
    execution_id  uuid NOT NULL,
    PRIMARY KEY (job_id, key, expires_at, execution_id)
);
-- Expired rows are deleted by the rescuer's pass.
CREATE INDEX rate_starts_expired ON rate_starts (expires_at);
