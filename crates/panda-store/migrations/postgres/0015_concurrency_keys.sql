-- Per-key limits (a job's `concurrency_key` with `max_running`): each execution of such a job
-- carries its key, and a running one holds one of its key's numbered slots in `job_locks`
-- (the per-job limit and `forbid` hold the empty key's).
--
-- An execution whose key has no free slot is parked: out of the claim's indexes, so that a
-- key with thousands waiting costs the claim of other work nothing. The end of a run that
-- frees a slot un-parks the key's next execution in claim order.
ALTER TABLE executions ADD COLUMN concurrency_key text;
ALTER TABLE executions ADD COLUMN parked boolean NOT NULL DEFAULT false;

DROP INDEX executions_claim;
CREATE INDEX executions_claim ON executions (queue, priority DESC, run_at, id)
    WHERE status = 'queued' AND NOT parked;
DROP INDEX executions_claim_all;
CREATE INDEX executions_claim_all ON executions (priority DESC, run_at, id)
    WHERE status = 'queued' AND NOT parked;
-- A key's due executions not parked yet: a claim that finds the key full parks them in bulk.
CREATE INDEX executions_key_queued ON executions (job_id, concurrency_key, run_at)
    WHERE status = 'queued' AND NOT parked AND concurrency_key IS NOT NULL;
-- A key's parked executions, in claim order: the next to un-park.
CREATE INDEX executions_parked ON executions (job_id, concurrency_key, priority DESC, run_at, id)
    WHERE status = 'queued' AND parked;

ALTER TABLE job_locks ADD COLUMN key text NOT NULL DEFAULT '';
ALTER TABLE job_locks DROP CONSTRAINT job_locks_pkey;
ALTER TABLE job_locks ADD PRIMARY KEY (job_id, key, slot);
