-- The claim of a node that serves some queues walks each queue's due executions in claim
-- order, so executions queued on other queues (one no node serves, a paused one, a backlog of
-- delayed work) cost it nothing. `executions_claim` stays for nodes that serve every queue.
CREATE INDEX executions_claim_queue ON executions (queue, priority DESC, run_at, id)
    WHERE status = 'queued';
