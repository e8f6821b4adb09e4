-- Chains (`--after`): which jobs follow which, kept beside the definitions (whose `after`
-- names them) in the same transaction, so the finish that ends a run finds its followers by
-- an index instead of reading every definition. A row's job is its follower; deleting a job
-- that others follow is refused, so `upstream_id` is always a live job.
CREATE TABLE job_chains (
    upstream_id  uuid NOT NULL,   -- the job whose runs start the follower
    job_id       uuid NOT NULL,   -- the follower
    on_end       text NOT NULL,   -- succeeded | failed | any
    PRIMARY KEY (upstream_id, job_id)
);
CREATE INDEX job_chains_job ON job_chains (job_id);

-- The upstream attempt whose end started a chained execution (and its retries).
ALTER TABLE executions ADD COLUMN upstream_id uuid;
CREATE INDEX executions_upstream ON executions (upstream_id) WHERE upstream_id IS NOT NULL;
