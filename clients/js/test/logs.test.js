import assert from 'node:assert/strict';
import { test } from 'node:test';

import { client, createShellJob } from '../testing/fixtures.js';

const TERMINAL = ['succeeded', 'failed', 'timed_out', 'cancelled', 'lost', 'dead', 'skipped'];

/** The lines of one stream, without their newlines. */
function texts(lines, stream) {
  return lines.filter((line) => line.stream === stream).map((line) => line.text.replace(/\n$/, ''));
}

test('logs reads the lines an execution wrote, in order, one line at a time', async (t) => {
  const panda = client();
  // Lines written at once are stored together, and still read one by one.
  const job = await createShellJob(
    t,
    'echo "hello $PANDA_PAYLOAD"; echo "to stderr" >&2; sleep 0.5; printf "a\\nb\\nlast"',
  );
  const execution = await panda.enqueue(job, { payload: 'world' });
  assert.equal((await panda.wait(execution.id, { timeoutMs: 30_000 })).status, 'succeeded');

  const lines = [];
  for await (const line of panda.logs(execution.id)) lines.push(line);

  assert.deepEqual(texts(lines, 'stdout'), ['hello "world"', 'a', 'b', 'last']);
  assert.deepEqual(
    lines.filter((line) => line.stream === 'stdout').map((line) => line.text),
    ['hello "world"\n', 'a\n', 'b\n', 'last'],
  );
  assert.deepEqual(texts(lines, 'stderr'), ['to stderr']);
  const seqs = lines.map((line) => line.seq);
  assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b));
  assert.ok(lines.every((line) => typeof line.at === 'string'));

  // `after` starts past the lines of a seq.
  const rest = [];
  for await (const line of panda.logs(execution.id, { after: seqs[0] })) rest.push(line);
  assert.ok(rest.length > 0);
  assert.deepEqual(rest, lines.filter((line) => line.seq > seqs[0]));
});

test('logs with follow yields the lines as they come and ends when the execution ends', async (t) => {
  const panda = client();
  const job = await createShellJob(t, 'for i in 1 2 3; do echo "line $i"; sleep 0.4; done');
  const execution = await panda.enqueue(job);

  const lines = [];
  const statuses = [];
  for await (const line of panda.logs(execution.id, { follow: true })) {
    if (line.stream === 'stdout') {
      lines.push(line.text.replace(/\n$/, ''));
      statuses.push((await panda.get(execution.id)).status);
    }
  }

  assert.deepEqual(lines, ['line 1', 'line 2', 'line 3']);
  // The first line came while the job still ran, not all at the end.
  assert.equal(statuses[0], 'running');
  assert.ok(TERMINAL.includes((await panda.get(execution.id)).status));
});

test('logs with follow on an execution that has ended yields its lines and ends', async (t) => {
  const panda = client();
  const job = await createShellJob(t, 'echo done');
  const execution = await panda.enqueue(job);
  await panda.wait(execution.id, { timeoutMs: 30_000 });

  const lines = [];
  for await (const line of panda.logs(execution.id, { follow: true })) lines.push(line);

  assert.deepEqual(texts(lines, 'stdout'), ['done']);
});

test('leaving a followed log early closes the stream', async (t) => {
  const panda = client();
  const job = await createShellJob(t, 'echo first; sleep 60');
  const execution = await panda.enqueue(job);

  for await (const line of panda.logs(execution.id, { follow: true })) {
    if (line.stream === 'stdout') {
      assert.equal(line.text.trim(), 'first');
      break;
    }
  }
  assert.equal((await panda.get(execution.id)).status, 'running');
  await panda.cancel(execution.id);
});
