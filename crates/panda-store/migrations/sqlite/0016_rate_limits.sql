-- Rate limits (a job's `rate_limit`): at most `starts` starts in any window of `window_ms`,
-- per job or per key, as a sliding log of starts.
--
-- The limits in force, one row per limited job, written with the definition in the same
-- transaction (the definition's JSON stays the source): the claim reads the rows of its
-- candidates' jobs, and the one-statement claim leaves such jobs to the full claim. `key_expr`
-- is the key's expression (NULL: the job as a whole), `key_default` the job's own value of an
-- `env.NAME` key (an execution's own environment comes first).
CREATE TABLE rate_limits (
    job_id       TEXT PRIMARY KEY,
    starts       INTEGER NOT NULL,
    window_ms    INTEGER NOT NULL,
    key_expr     TEXT,
    key_default  TEXT
) STRICT, WITHOUT ROWID;

-- The log: one row per start, kept until it leaves its window (`expires_at`, microseconds). A
-- claim counts a key's rows that have not expired and adds the ones it starts (one writer: no
-- lock to take).
CREATE TABLE rate_starts (
    job_id        TEXT NOT NULL,
    key           TEXT NOT NULL,
    expires_at    INTEGER NOT NULL,
    execution_id  TEXT NOT NULL,
    PRIMARY KEY (job_id, key, expires_at, execution_id)
) STRICT, WITHOUT ROWID;
-- Expired rows are deleted by the rescuer's pass.
CREATE INDEX rate_starts_expired ON rate_starts (expires_at);
