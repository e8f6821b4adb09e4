-- Per-key limits (a job's `concurrency_key` with `max_running`): each execution of such a job
-- carries its key, and a running one holds one of its key's numbered slots in `job_locks`
-- (the per-job limit and `forbid` hold the empty key's).
--
-- An execution whose key has no free slot is parked: out of the claim's indexes, so that a
-- key with thousands waiting costs the claim of other work nothing. The end of a run that
-- frees a slot un-parks the key's next execution in claim order.
ALTER TABLE executions ADD COLUMN concurrency_key TEXT;
ALTER TABLE executions ADD COLUMN parked INTEGER NOT NULL DEFAULT 0;

DROP INDEX executions_claim;
CREATE INDEX executions_claim ON executions (priority DESC, run_at, id)
    WHERE status = 'queued' AND parked = 0;
DROP INDEX executions_claim_queue;
CREATE INDEX executions_claim_queue ON executions (queue, priority DESC, run_at, id)
    WHERE status = 'queued' AND parked = 0;
-- A key's due executions not parked yet: a claim that finds the key full parks them in bulk.
CREATE INDEX executions_key_queued ON executions (job_id, concurrency_key, run_at)
    WHERE status = 'queued' AND parked = 0 AND concurrency_key IS NOT NULL;
-- A key's parked executions, in claim order: the next to un-park.
CREATE INDEX executions_parked ON executions (job_id, concurrency_key, priority DESC, run_at, id)
    WHERE status = 'queued' AND parked = 1;

CREATE TABLE job_locks_new (
    job_id        TEXT NOT NULL,
    key           TEXT NOT NULL DEFAULT '',
    slot          INTEGER NOT NULL,
    execution_id  TEXT NOT NULL,
    PRIMARY KEY (job_id, key, slot)
) STRICT, WITHOUT ROWID;
INSERT INTO job_locks_new (job_id, key, slot, execution_id)
    SELECT job_id, '', slot, execution_id FROM job_locks;
DROP TABLE job_locks;
ALTER TABLE job_locks_new RENAME TO job_locks;
CREATE INDEX job_locks_execution ON job_locks (execution_id);
