-- A per-job limit of running executions (`max_running`, with concurrency allow). Each
-- execution carries the limit in force when it was created, as it carries its concurrency
-- policy (a forced run carries none), and each running execution of a limited job holds one of
-- the job's numbered slots in `job_locks`, so two claims can never both take the last one.

ALTER TABLE executions ADD COLUMN max_running integer;

-- `--concurrency forbid` holds slot 0; a limited job slots 0 to max_running - 1.
ALTER TABLE job_locks ADD COLUMN slot integer NOT NULL DEFAULT 0;
ALTER TABLE job_locks DROP CONSTRAINT job_locks_pkey;
ALTER TABLE job_locks ADD PRIMARY KEY (job_id, slot);
