-- Long-running services. An instance's run is an execution carrying the instance's number, the
-- revision it runs and when it was first seen healthy; job executions carry none of them.

ALTER TABLE executions ADD COLUMN instance INTEGER;
ALTER TABLE executions ADD COLUMN revision INTEGER;
ALTER TABLE executions ADD COLUMN healthy_at INTEGER;

-- The reconcile reads a service's live instances; the service claim its due ones. Both are
-- partial, so job executions never write them.
CREATE INDEX executions_instance_live ON executions (job_id, instance)
    WHERE instance IS NOT NULL AND status IN ('queued', 'running');
CREATE INDEX executions_instance_due ON executions (run_at, id)
    WHERE instance IS NOT NULL AND status = 'queued';

-- Every revision of a service's definition: what its instances run.
CREATE TABLE service_revisions (
    job_id      TEXT NOT NULL,
    revision    INTEGER NOT NULL,
    spec        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (job_id, revision)
) STRICT;

-- A service's current revision and its latest rollout.
CREATE TABLE services (
    job_id    TEXT PRIMARY KEY,
    revision  INTEGER NOT NULL,
    rollout   TEXT
) STRICT;
