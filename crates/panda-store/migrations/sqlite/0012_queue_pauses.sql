-- Paused queues: a paused queue keeps accepting work and starts none. A queue is paused while
-- its row is here (few rows: the claim reads the whole table).
CREATE TABLE queue_pauses (
    name       TEXT PRIMARY KEY,
    paused_at  INTEGER NOT NULL
) STRICT;
