-- A job's history filtered by trigger, newest first (the dashboard's filter), and the attempts
-- of one run (the execution page's attempt chain).
CREATE INDEX executions_job_trigger ON executions (job_name, trigger, id);
CREATE INDEX executions_root ON executions (root_id, id);
