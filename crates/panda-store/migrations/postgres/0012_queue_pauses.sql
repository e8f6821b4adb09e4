-- Paused queues: a paused queue keeps accepting work and starts none. A queue is paused while
-- its row is here (few rows: the claim reads the whole table).
CREATE TABLE queue_pauses (
    name       text PRIMARY KEY,
    paused_at  timestamptz NOT NULL
);
