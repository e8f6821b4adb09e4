-- Per-key limits (a job's `concurrency_key` with `max_running`): each execution of such a job
-- carries its key, and a running one holds one of its key's numbered slots in `job_locks`
-- (the per-job limit and `forbid` hold the empty key's).
--
-- An execution whose key has no free slot is parked: out of the claim's indexes, so that a
-- key with thousands waiting costs the claim of other work nothing. The end of a run that
-- frees a slot un-parks the key's next execution in claim order.
ALTER TABLE executions ADD COLUMN concurrency_key text;
ALTER TABLE executions ADD COLUMN parked boolean NOT NULL DEFAULT false;

DROP INDEX executions_claim;
CREATE INDEX executions_claim ON executions (queue, priority DESC, run_at, id)
    WHERE status = 'queued' AND NOT parked;
DROP INDEX executions_claim_all;
CREATE INDEX executions_claim_all ON executions (priority DESC, run_at, id)
    WHERE status = 'queued' AND NOT parked;
-- A key's due executions not parked yet: a claim that finds the key full parks them in bulk.
CREATE INDEX executions_key_queued ON executions (job_id, concurrency_key, run_at)
    WHERE status = 'queued' AND NOT parked AND concurrency_key IS NOT NULL;
-- A key's parked executions, in claim order: the next to un-park.
CREATE INDEX executions_parked ON executions (job_id, concurrency_key, priority DESC, run_at, id)
    WHERE status = 'queued' AND parked;

ALTER TABLE job_locks ADD COLUMN key text NOT NULL DEFAULT '';
ALTER TABLE job_locks DROP CONSTRAINT job_locks_pkey;
ALTER TABLE job_locks ADD PRIMARY KEY (job_id, key, slot);

-- The transactional enqueue (0010) reads the key of a job limited per key as the server does.
CREATE OR REPLACE FUNCTION enqueue(
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
    key_expr text;
    key_value jsonb;
    new_key text;
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

    -- The execution's key under a per-key limit, read as the server reads it: a payload field's
    -- text (a string as it is, other JSON as JSON), an environment variable of the job, or the
    -- idempotency key; the empty key when it is absent; at most 255 bytes.
    key_expr := found_job.spec->>'concurrency_key';
    IF key_expr IS NOT NULL AND found_job.spec->>'max_running' IS NOT NULL THEN
        IF key_expr = 'idempotency_key' THEN
            new_key := coalesce(enqueue.idempotency_key, '');
        ELSIF key_expr LIKE 'env.%' THEN
            new_key := coalesce(found_job.spec->'env'->>substr(key_expr, 5), '');
        ELSIF key_expr LIKE 'payload.%' THEN
            key_value := enqueue.payload #> string_to_array(substr(key_expr, 9), '.');
            new_key := CASE
                WHEN key_value IS NULL OR jsonb_typeof(key_value) = 'null' THEN ''
                WHEN jsonb_typeof(key_value) = 'string' THEN key_value #>> '{}'
                ELSE key_value::text END;
        ELSE
            new_key := '';
        END IF;
        WHILE octet_length(new_key) > 255 LOOP
            new_key := left(new_key, -1);
        END LOOP;
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
        env, run_at, created_at, cancel_requested, max_running, concurrency_key)
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
        (found_job.spec->>'max_running')::integer, new_key)
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
