-- Transactional enqueue: an application that keeps its data in this database enqueues inside
-- its own transaction, so the execution exists if and only if the application's write commits:
--
--     SELECT panda.enqueue('send-receipt', '{"order": 42}'::jsonb, idempotency_key => 'order-42');
--
-- (`panda.` when Panda's tables live in a schema named panda, as docs/transactional-enqueue.md
-- recommends for a database shared with an application.) It refuses what the API's enqueue
-- refuses, with the same words: an unknown job (SQLSTATE P0002), a service, a payload over
-- 64 KiB, an idempotency key outside 1 to 255 bytes, a priority outside -1000 to 1000 (22023).
-- An idempotency key the job has seen returns that execution's id and queues nothing. The
-- workers are woken when the caller's transaction commits (NOTIFY is transactional); a
-- rollback leaves nothing behind.
--
-- The execution is the one `lifecycle::enqueued` makes for an API enqueue (trigger `api`): its
-- job's queue, priority, retry policy, concurrency policy and running limit, due now or at
-- `run_at`, with a time-ordered (version 7) id as every id Panda makes.

CREATE FUNCTION enqueue(
    job text,
    payload jsonb DEFAULT NULL,
    idempotency_key text DEFAULT NULL,
    run_at timestamptz DEFAULT NULL,
    priority integer DEFAULT NULL
) RETURNS uuid
LANGUAGE plpgsql
-- The tables are found in the schema this function lives in, whatever the caller's search path.
SET search_path FROM CURRENT
AS $$
#variable_conflict use_column
DECLARE
    found_job record;
    new_id uuid;
    found_id uuid;
    now_at timestamptz := clock_timestamp();
BEGIN
    SELECT j.id, j.name, j.spec INTO found_job
        FROM jobs j WHERE j.name = enqueue.job AND j.deleted_at IS NULL
        FOR SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'job "%" not found', enqueue.job
            USING ERRCODE = 'P0002',
                  HINT = 'create it with `panda job create`, or check the name with `panda job list`';
    END IF;
    IF found_job.spec ? 'service' THEN
        RAISE EXCEPTION 'job: % is a service: Panda keeps its instances running', found_job.name
            USING ERRCODE = '22023',
                  HINT = format('change how many with `panda service scale %s N`', found_job.name);
    END IF;
    IF enqueue.payload IS NOT NULL AND octet_length(enqueue.payload::text) > 65536 THEN
        RAISE EXCEPTION 'payload is % bytes, over the limit of 65536', octet_length(enqueue.payload::text)
            USING ERRCODE = '22023',
                  HINT = 'keep the payload small: pass an id and let the job read the rest';
    END IF;
    IF enqueue.idempotency_key IS NOT NULL
        AND octet_length(enqueue.idempotency_key) NOT BETWEEN 1 AND 255 THEN
        RAISE EXCEPTION 'idempotency_key: must be 1 to 255 bytes, got %',
                octet_length(enqueue.idempotency_key)
            USING ERRCODE = '22023',
                  HINT = 'use a short key naming what the job does once, such as order-42';
    END IF;
    IF enqueue.priority IS NOT NULL AND enqueue.priority NOT BETWEEN -1000 AND 1000 THEN
        RAISE EXCEPTION 'priority: % is out of range', enqueue.priority
            USING ERRCODE = '22023',
                  HINT = 'use -1000 to 1000; higher runs first';
    END IF;

    -- A version 7 UUID: 48 bits of Unix milliseconds, then random bits, version and variant.
    new_id := encode(
        set_bit(set_bit(
            overlay(uuid_send(gen_random_uuid())
                placing substring(int8send((extract(epoch FROM now_at) * 1000)::bigint) FROM 3)
                FROM 1 FOR 6),
            52, 1), 53, 1),
        'hex')::uuid;

    INSERT INTO executions (
        id, root_id, job_id, job_name, queue, priority, status, trigger, attempt,
        max_attempts, backoff_base_ms, backoff_cap_ms, concurrency, idempotency_key, payload,
        env, run_at, created_at, cancel_requested, max_running)
    VALUES (
        new_id, new_id, found_job.id, found_job.name,
        coalesce(found_job.spec->>'queue', 'default'),
        coalesce(enqueue.priority, (found_job.spec->>'priority')::integer, 0),
        'queued', 'api', 1,
        (found_job.spec->'retry'->>'max_attempts')::integer,
        (found_job.spec->'retry'->>'backoff_base_ms')::bigint,
        (found_job.spec->'retry'->>'backoff_cap_ms')::bigint,
        found_job.spec->>'concurrency',
        enqueue.idempotency_key, enqueue.payload, '{}'::jsonb,
        coalesce(enqueue.run_at, now_at), now_at, false,
        (found_job.spec->>'max_running')::integer)
    ON CONFLICT (job_id, idempotency_key) WHERE idempotency_key IS NOT NULL AND attempt = 1
    DO NOTHING
    RETURNING id INTO found_id;

    IF found_id IS NULL THEN
        SELECT e.id INTO found_id FROM executions e
            WHERE e.job_id = found_job.id AND e.idempotency_key = enqueue.idempotency_key
              AND e.attempt = 1;
        RETURN found_id;
    END IF;
    PERFORM pg_notify('panda_queued', coalesce(found_job.spec->>'queue', 'default'));
    RETURN found_id;
END;
$$;
