import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { once } from 'node:events';
import { test } from 'node:test';

import {
  ConnectionError,
  InvalidRequestError,
  NotFoundError,
  Panda,
  PandaError,
  UnauthorizedError,
} from '../src/index.js';
import { client, createShellJob, environment, uniqueName } from '../testing/fixtures.js';

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
  await assert.rejects(panda.get('not-an-id'), InvalidRequestError);
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
