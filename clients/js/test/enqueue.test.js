import assert from 'node:assert/strict';
import { test } from 'node:test';

import { client, createShellJob, linesOf, quoted, scratch, uniqueName } from '../testing/fixtures.js';

test('enqueue returns the queued execution with what was asked for', async (t) => {
  const panda = client();
  const job = await createShellJob(t, 'true');
  const runAt = new Date(Date.now() + 3_600_000);
  runAt.setMilliseconds(0);

  const execution = await panda.enqueue(job, {
    payload: { video: 42 },
    priority: 7,
    runAt,
    env: { QUALITY: 'high' },
  });

  assert.equal(execution.status, 'queued');
  assert.equal(execution.job_name, job);
  assert.equal(execution.attempt, 1);
  assert.equal(execution.trigger, 'api');
  assert.equal(execution.priority, 7);
  assert.deepEqual(execution.payload, { video: 42 });
  assert.deepEqual(execution.env, { QUALITY: 'high' });
  assert.equal(Date.parse(execution.run_at), runAt.getTime());
  // The same execution read back (the server keeps its times to the microsecond, and may
  // answer the enqueue with more digits).
  const read = await panda.get(execution.id);
  assert.deepEqual({ ...read, created_at: undefined }, { ...execution, created_at: undefined });
  assert.equal(Date.parse(read.created_at), Date.parse(execution.created_at));
  await panda.cancel(execution.id);
});

test('wait resolves when the run succeeded, and the job ran once with its payload', async (t) => {
  const panda = client();
  const out = scratch(uniqueName('ran'));
  const job = await createShellJob(t, `printf '%s\\n' "$PANDA_PAYLOAD" >> ${quoted(out)}`);

  const execution = await panda.enqueue(job, { payload: { n: 1 } });
  const ended = await panda.wait(execution.id, { timeoutMs: 30_000 });

  assert.equal(ended.id, execution.id);
  assert.equal(ended.status, 'succeeded');
  assert.equal(ended.exit_code, 0);
  assert.deepEqual(await linesOf(out), ['{"n":1}']);
});

test('an idempotency key seen before returns the first execution, and the job runs once', async (t) => {
  const panda = client();
  const out = scratch(uniqueName('once'));
  const job = await createShellJob(t, `printf '%s\\n' "$PANDA_PAYLOAD" >> ${quoted(out)}`);
  const key = uniqueName('key');

  const first = await panda.enqueue(job, { payload: 'first', idempotencyKey: key });
  const second = await panda.enqueue(job, { payload: 'second', idempotencyKey: key });

  assert.equal(second.id, first.id);
  assert.equal(first.idempotency_key, key);
  assert.equal((await panda.wait(first.id, { timeoutMs: 30_000 })).status, 'succeeded');
  const third = await panda.enqueue(job, { payload: 'third', idempotencyKey: key });
  assert.equal(third.id, first.id);
  assert.equal(third.status, 'succeeded');
  assert.deepEqual(await linesOf(out), ['"first"']);
});

test('runAt takes RFC 3339 text as well as a Date', async (t) => {
  const panda = client();
  const job = await createShellJob(t, 'true');

  const execution = await panda.enqueue(job, { runAt: '2999-01-02T03:04:05Z' });

  assert.equal(Date.parse(execution.run_at), Date.parse('2999-01-02T03:04:05Z'));
  await panda.cancel(execution.id);
});
