-- The dead-letter queue is the dead executions without a row here: a dead execution that was
-- run again (`retried`, with the new attempt) or set aside (`discarded`) leaves it, and stays
-- `dead` in the history.
CREATE TABLE dlq_resolutions (
    execution_id  TEXT PRIMARY KEY,
    resolution    TEXT NOT NULL CHECK (resolution IN ('retried', 'discarded')),
    retry_id      TEXT,
    resolved_at   INTEGER NOT NULL
);

CREATE INDEX executions_dead ON executions (id) WHERE status = 'dead';
