-- Every index on `executions` is written by every claim and finish that changes its columns,
-- and on SQLite those writes are the workers' throughput. The covering index of the
-- dashboard's strips (0004) carried the status and times, so it changed with each run: the
-- strips read each job's newest rows through `executions_job` instead.
DROP INDEX executions_job_brief;
