// enqueueMany needs the server's batch route, POST /api/v1/jobs/{name}/executions/batch.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { NotFoundError } from '../src/index.js';
import { client, createShellJob, linesOf, quoted, scratch, uniqueName } from '../testing/fixtures.js';

test('enqueueMany answers each item in its place: created, duplicate, invalid', async (t) => {
  const panda = client();
  const out = scratch(uniqueName('batch'));
  const job = await createShellJob(t, `printf '%s\\n' "$PANDA_PAYLOAD" >> ${quoted(out)}`);
  const key = uniqueName('key');
  const earlier = await panda.enqueue(job, { payload: 0, idempotencyKey: key });

  const answers = await panda.enqueueMany(job, [
    { payload: 1 },
    { payload: 2, idempotencyKey: key },
    { payload: 3, priority: 5000 },
    { payload: 4, priority: 5 },
  ]);

  assert.deepEqual(
    answers.map((answer) => answer.result),
    ['created', 'duplicate', 'invalid', 'created'],
  );
  assert.deepEqual(answers[0].execution.payload, 1);
  assert.equal(answers[1].execution.id, earlier.id);
  assert.equal(answers[2].error.code, 'invalid');
  assert.match(answers[2].error.message, /priority/);
  assert.equal(answers[2].execution, undefined);
  assert.equal(answers[3].execution.priority, 5);

  for (const id of [earlier.id, answers[0].execution.id, answers[3].execution.id]) {
    assert.equal((await panda.wait(id, { timeoutMs: 30_000 })).status, 'succeeded');
  }
  assert.deepEqual((await linesOf(out)).sort(), ['0', '1', '4']);
});

test('enqueueMany sends more than 1000 items in chunks, answering every one in order', async (t) => {
  const panda = client();
  const job = await createShellJob(t, 'true');
  const runAt = new Date(Date.now() + 3_600_000);
  const items = Array.from({ length: 1001 }, (_, n) => ({ payload: n, runAt }));

  const answers = await panda.enqueueMany(job, items);

  assert.equal(answers.length, 1001);
  assert.ok(answers.every((answer) => answer.result === 'created'));
  assert.deepEqual(
    answers.map((answer) => answer.execution.payload),
    items.map((item) => item.payload),
  );
});

test('enqueueMany of an empty list asks nothing and answers nothing', async () => {
  // No request: the server refuses an empty batch, and there is nothing to enqueue.
  assert.deepEqual(await client().enqueueMany(uniqueName('missing'), []), []);
});

test('enqueueMany for an unknown job rejects with NotFoundError naming the job', async () => {
  const job = uniqueName('missing');
  await assert.rejects(client().enqueueMany(job, [{ payload: 1 }]), (err) => {
    assert.ok(err instanceof NotFoundError, `${err}`);
    // The job is what is missing, not the route.
    assert.match(err.message, new RegExp(job));
    assert.ok(err.hint);
    return true;
  });
});
