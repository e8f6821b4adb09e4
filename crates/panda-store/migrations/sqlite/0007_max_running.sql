-- A per-job limit of running executions (`max_running`, with concurrency allow). Each
-- execution carries the limit in force when it was created, as it carries its concurrency
-- policy (a forced run carries none), and each running execution of a limited job holds one of
-- the job's numbered slots in `job_locks`, so two claims can never both take the last one.

ALTER TABLE executions ADD COLUMN max_running INTEGER;

-- `--concurrency forbid` holds slot 0; a limited job slots 0 to max_running - 1.
CREATE TABLE job_locks_new (
    job_id        TEXT NOT NULL,
    slot          INTEGER NOT NULL,
    execution_id  TEXT NOT NULL,
    PRIMARY KEY (job_id, slot)
) STRICT, WITHOUT ROWID;
INSERT INTO job_locks_new (job_id, slot, execution_id) SELECT job_id, 0, execution_id FROM job_locks;
DROP TABLE job_locks;
ALTER TABLE job_locks_new RENAME TO job_locks;
CREATE INDEX job_locks_execution ON job_locks (execution_id);
