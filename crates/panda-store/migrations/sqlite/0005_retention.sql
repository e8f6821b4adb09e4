-- Retention walks each job's history through these, so one pruning call costs what it deletes
-- (plus the job's keep count), not the size of the whole history.

-- By count: a job's finished executions, newest first, without the dead-letter queue (dead
-- executions stay until they age out). The keep boundary is the keep-th entry from the end.
CREATE INDEX executions_retention_keep ON executions (job_id, id)
    WHERE finished_at IS NOT NULL AND status <> 'dead';
-- By age: a job's finished executions by when they finished (each job may have its own age).
CREATE INDEX executions_retention_age ON executions (job_id, finished_at)
    WHERE finished_at IS NOT NULL;
