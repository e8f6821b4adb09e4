-- A job's history filtered by trigger, newest first (the dashboard's filter), and the attempts
-- of one run (the execution page's attempt chain).
CREATE INDEX executions_job_trigger ON executions (job_name, trigger, id);
CREATE INDEX executions_root ON executions (root_id, id);
-- The recent executions of every job (the dashboard's strips): everything the strip shows is in
-- the index, so each job's newest executions are read from one or two pages of it instead of
-- one table page per execution.
CREATE INDEX executions_job_brief
    ON executions (job_name, id, status, trigger, attempt, created_at, started_at, finished_at);
