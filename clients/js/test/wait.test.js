import assert from 'node:assert/strict';
import { test } from 'node:test';

import { WaitTimeoutError } from '../src/index.js';
import {
  client,
  createShellJob,
  eventually,
  linesOf,
  quoted,
  scratch,
  uniqueName,
} from '../testing/fixtures.js';

test('wait rejects with WaitTimeoutError, carrying the execution, when the run has not ended', async (t) => {
  const panda = client();
  const job = await createShellJob(t, 'true');
  const later = await panda.enqueue(job, { runAt: new Date(Date.now() + 3_600_000) });

  const started = Date.now();
  await assert.rejects(panda.wait(later.id, { timeoutMs: 500 }), (err) => {
    assert.ok(err instanceof WaitTimeoutError, `${err}`);
    assert.equal(err.code, 'wait_timeout');
    assert.equal(err.execution.id, later.id);
    assert.equal(err.execution.status, 'queued');
    assert.match(err.message, new RegExp(later.id));
    return true;
  });
  const took = Date.now() - started;
  assert.ok(took >= 450 && took < 5_000, `gave up after ${took} ms`);
  await panda.cancel(later.id);
});

test('wait follows the run through its retries to the attempt that succeeded', async (t) => {
  const panda = client();
  const runs = scratch(uniqueName('runs'));
  // Fails on the first attempt, succeeds on the second.
  const job = await createShellJob(
    t,
    `echo run >> ${quoted(runs)}; [ "$(wc -l < ${quoted(runs)})" -ge 2 ]`,
    { maxAttempts: 3 },
  );

  const first = await panda.enqueue(job);
  const ended = await panda.wait(first.id, { timeoutMs: 30_000 });

  assert.equal(ended.status, 'succeeded');
  assert.equal(ended.attempt, 2);
  assert.equal(ended.root_id, first.id);
  assert.notEqual(ended.id, first.id);
  assert.equal((await panda.get(first.id)).status, 'failed');
  assert.equal((await linesOf(runs)).length, 2);
});

test('wait resolves with the dead last attempt when every attempt failed', async (t) => {
  const panda = client();
  const job = await createShellJob(t, 'exit 3', { maxAttempts: 2 });

  const first = await panda.enqueue(job);
  const ended = await panda.wait(first.id, { timeoutMs: 30_000 });

  assert.equal(ended.status, 'dead');
  assert.equal(ended.attempt, 2);
  assert.equal(ended.exit_code, 3);
  assert.equal(ended.root_id, first.id);
});

test('cancel stops a queued execution at once, and a running one through its worker', async (t) => {
  const panda = client();
  const job = await createShellJob(t, 'sleep 60');

  const queued = await panda.enqueue(job, { runAt: new Date(Date.now() + 3_600_000) });
  const cancelled = await panda.cancel(queued.id);
  assert.equal(cancelled.id, queued.id);
  assert.equal(cancelled.status, 'cancelled');
  assert.equal((await panda.wait(queued.id, { timeoutMs: 5_000 })).status, 'cancelled');

  const running = await panda.enqueue(job);
  await eventually(async () => (await panda.get(running.id)).status === 'running', {
    what: 'the execution started running',
  });
  const asked = await panda.cancel(running.id);
  assert.ok(asked.status === 'cancelled' || asked.cancel_requested, JSON.stringify(asked));
  const ended = await panda.wait(running.id, { timeoutMs: 30_000 });
  assert.equal(ended.status, 'cancelled');
  assert.equal(ended.id, running.id);
});
