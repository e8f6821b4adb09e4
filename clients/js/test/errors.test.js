import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { once } from 'node:events';
import { test } from 'node:test';

import {
  ConflictError,
  ConnectionError,
  ForbiddenError,
  InvalidRequestError,
  NotFoundError,
  Panda,
  PandaError,
  UnauthorizedError,
  UnavailableError,
} from '../src/index.js';
import { api, client, createShellJob, environment, uniqueName } from '../testing/fixtures.js';

test('an unknown job rejects with NotFoundError carrying the code, message and hint', async () => {
  const panda = client();
  const job = uniqueName('missing');

  await assert.rejects(panda.enqueue(job), (err) => {
    assert.ok(err instanceof NotFoundError, `${err}`);
    assert.ok(err instanceof PandaError);
    assert.equal(err.name, 'NotFoundError');
    assert.equal(err.code, 'not_found');
    assert.equal(err.status, 404);
    assert.match(err.message, new RegExp(job));
    assert.equal(typeof err.hint, 'string');
    assert.ok(err.hint.length > 0);
    return true;
  });
});

test('an unknown execution rejects with NotFoundError', async () => {
  const panda = client();
  await assert.rejects(panda.get('0190a3b4-0000-7000-8000-000000000000'), NotFoundError);
  await assert.rejects(panda.cancel('0190a3b4-0000-7000-8000-000000000000'), NotFoundError);
});

test('a priority out of range rejects with InvalidRequestError, and nothing is enqueued', async (t) => {
  const panda = client();
  const job = await createShellJob(t, 'true');

  await assert.rejects(panda.enqueue(job, { priority: 5000 }), (err) => {
    assert.ok(err instanceof InvalidRequestError, `${err}`);
    assert.equal(err.code, 'invalid');
    assert.equal(err.status, 400);
    assert.match(err.message, /priority/);
    return true;
  });
  const { executions } = await (await api('GET', `/jobs/${job}/executions`)).json();
  assert.deepEqual(executions, []);
  await assert.rejects(panda.get('not-an-id'), InvalidRequestError);
});

test('cancelling an execution that has ended rejects with ConflictError', async (t) => {
  const panda = client();
  const job = await createShellJob(t, 'true');
  const execution = await panda.enqueue(job);
  assert.equal((await panda.wait(execution.id, { timeoutMs: 30_000 })).status, 'succeeded');

  await assert.rejects(panda.cancel(execution.id), (err) => {
    assert.ok(err instanceof ConflictError, `${err}`);
    assert.equal(err.code, 'conflict');
    assert.equal(err.status, 409);
    assert.match(err.message, /ended/);
    return true;
  });
});

test('a bad token rejects with UnauthorizedError', async () => {
  const { url } = environment();
  const panda = new Panda({ url, token: 'not-a-token' });

  await assert.rejects(panda.enqueue(uniqueName('any')), (err) => {
    assert.ok(err instanceof UnauthorizedError, `${err}`);
    assert.equal(err.code, 'unauthorized');
    assert.equal(err.status, 401);
    assert.ok(err.hint, 'a hint says where to get a token');
    return true;
  });
});

test('a read-only token reads, and a change it asks for rejects with ForbiddenError', async (t) => {
  const { url } = environment();
  const name = uniqueName('reader');
  const created = await api('POST', '/tokens', { name, scope: 'read_only' });
  assert.equal(created.status, 201, await created.clone().text());
  const { secret } = await created.json();
  t.after(() => api('DELETE', `/tokens/${name}`));
  const job = await createShellJob(t, 'true');
  // Due later, so that it is still queued to be cancelled; deleting the job cancels it.
  const execution = await client().enqueue(job, { runAt: new Date(Date.now() + 3_600_000) });
  const reader = new Panda({ url, token: secret });

  assert.equal((await reader.get(execution.id)).id, execution.id);
  await assert.rejects(reader.cancel(execution.id), (err) => {
    assert.ok(err instanceof ForbiddenError, `${err}`);
    assert.ok(err instanceof UnauthorizedError);
    assert.equal(err.code, 'forbidden');
    assert.equal(err.status, 403);
    assert.ok(err.hint);
    return true;
  });
});

test('no URL or no token is refused when the client is made, saying what to set', () => {
  assert.throws(() => new Panda({ url: '', token: 'x' }), (err) => {
    assert.ok(err instanceof PandaError);
    assert.equal(err.code, 'configuration');
    assert.match(err.message, /PANDA_URL/);
    return true;
  });
  assert.throws(() => new Panda({ url: 'http://127.0.0.1:1', token: '' }), /PANDA_TOKEN/);
  assert.throws(() => new Panda({ url: 'not a url', token: 'x' }), PandaError);
});

test('the URL and the token default to PANDA_URL and PANDA_TOKEN', async () => {
  // The environment the runner gives is the only configuration here.
  const panda = new Panda();
  await assert.rejects(panda.enqueue(uniqueName('missing')), NotFoundError);
});

test('a server that cannot be reached rejects with ConnectionError', async () => {
  const closed = createServer();
  closed.listen(0, '127.0.0.1');
  await once(closed, 'listening');
  const { port } = /** @type {import('node:net').AddressInfo} */ (closed.address());
  closed.close();
  await once(closed, 'close');
  const panda = new Panda({ url: `http://127.0.0.1:${port}`, token: 'x' });

  await assert.rejects(panda.get('0190a3b4-0000-7000-8000-000000000000'), (err) => {
    assert.ok(err instanceof ConnectionError, `${err}`);
    assert.equal(err.code, 'connection');
    assert.ok(err.cause);
    return true;
  });
});

test('a server that does not answer in time rejects with ConnectionError (timeout)', async (t) => {
  const silent = createServer(() => {});
  silent.listen(0, '127.0.0.1');
  await once(silent, 'listening');
  t.after(() => silent.closeAllConnections() ?? silent.close());
  const { port } = /** @type {import('node:net').AddressInfo} */ (silent.address());
  const panda = new Panda({ url: `http://127.0.0.1:${port}`, token: 'x', timeoutMs: 200 });

  const started = Date.now();
  await assert.rejects(panda.get('0190a3b4-0000-7000-8000-000000000000'), (err) => {
    assert.ok(err instanceof ConnectionError, `${err}`);
    assert.equal(err.code, 'timeout');
    return true;
  });
  assert.ok(Date.now() - started < 5_000);
});

// The server answers 503 only while its database is unreachable, which a test cannot bring
// about on demand: a stand-in answers as it does then.
test('a 503 rejects with UnavailableError carrying Retry-After in seconds', async (t) => {
  const body = JSON.stringify({
    error: {
      code: 'store_unavailable',
      message: 'the server cannot reach its database right now',
      hint: 'nothing was changed; try again in a few seconds',
    },
  });
  const unavailable = createServer((req, res) => {
    res.writeHead(503, { 'content-type': 'application/json', 'retry-after': '2' }).end(body);
  });
  unavailable.listen(0, '127.0.0.1');
  await once(unavailable, 'listening');
  t.after(() => unavailable.close());
  const { port } = /** @type {import('node:net').AddressInfo} */ (unavailable.address());
  const panda = new Panda({ url: `http://127.0.0.1:${port}`, token: 'x' });

  await assert.rejects(panda.enqueue('any'), (err) => {
    assert.ok(err instanceof UnavailableError, `${err}`);
    assert.equal(err.code, 'store_unavailable');
    assert.equal(err.status, 503);
    assert.equal(err.retryAfter, 2);
    assert.match(err.hint, /nothing was changed/);
    return true;
  });
});
