// What the tests share: the server they run against, and jobs of their own on it.
//
// It lives outside test/ because Node 20's `node --test test/` runs every .js file under the
// directory it is given, helpers included.
//
// The runner (crates/panda/tests/clients.rs) gives PANDA_URL, PANDA_TOKEN and PANDA_TEST_DIR,
// a scratch directory the jobs (local processes on that server) may write to. Without them
// the tests fail: there is nothing to skip to.

import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

import { Panda } from '../src/index.js';

/** The environment a test needs, or a failure that names what is missing. */
export function environment() {
  const missing = ['PANDA_URL', 'PANDA_TOKEN', 'PANDA_TEST_DIR'].filter((name) => !process.env[name]);
  if (missing.length > 0) {
    throw new Error(
      `${missing.join(', ')} not set: run the suite against a server, as crates/panda/tests/clients.rs does ` +
        '(PANDA_URL=http://127.0.0.1:PORT PANDA_TOKEN=$(cat DATA_DIR/admin.token) PANDA_TEST_DIR=$(mktemp -d) node --test test/)',
    );
  }
  return {
    url: /** @type {string} */ (process.env.PANDA_URL),
    token: /** @type {string} */ (process.env.PANDA_TOKEN),
    dir: /** @type {string} */ (process.env.PANDA_TEST_DIR),
  };
}

/** A client of the test server. */
export function client() {
  const { url, token } = environment();
  return new Panda({ url, token });
}

/** A name no other test (nor another run on the same server) uses. */
export function uniqueName(what) {
  return `js-${what}-${randomBytes(4).toString('hex')}`;
}

/** `text` quoted for sh. */
export function quoted(text) {
  return `'${text.replaceAll("'", `'\\''`)}'`;
}

/** A scratch file path for one test. */
export function scratch(name) {
  return join(environment().dir, name);
}

/** A file's lines, or none when it does not exist (yet). */
export async function linesOf(path) {
  try {
    return (await readFile(path, 'utf8')).split('\n').filter((line) => line !== '');
  } catch (err) {
    if (err.code === 'ENOENT') return [];
    throw err;
  }
}

/**
 * Creates a job that runs `argv` as a local process, deleted when the test ends. A full
 * spec, so that it works whether or not the server fills in a default retry policy.
 * @param {import('node:test').TestContext} t
 * @param {string[]} argv
 * @param {{name?: string, maxAttempts?: number}} [options]
 * @returns {Promise<string>} The job's name.
 */
export async function createJob(t, argv, { name = uniqueName('job'), maxAttempts = 1 } = {}) {
  const spec = {
    name,
    runtime: { kind: 'process', argv },
    retry: { max_attempts: maxAttempts, backoff_base_ms: 100, backoff_cap_ms: 200 },
    concurrency: 'allow',
    timeout_ms: 120_000,
  };
  const created = await api('POST', '/jobs', spec);
  if (created.status !== 201 && created.status !== 200) {
    throw new Error(`creating job ${name} answered ${created.status}: ${await created.text()}`);
  }
  t.after(async () => {
    const deleted = await api('DELETE', `/jobs/${name}`);
    if (!deleted.ok && deleted.status !== 404) {
      throw new Error(`deleting job ${name} answered ${deleted.status}: ${await deleted.text()}`);
    }
  });
  return name;
}

/** A job that runs `script` with `sh -c`. */
export function createShellJob(t, script, options) {
  return createJob(t, ['sh', '-c', script], options);
}

/** A raw request to the test server, for what the client does not do (jobs). */
export async function api(method, path, body) {
  const { url, token } = environment();
  return fetch(`${url.replace(/\/+$/, '')}/api/v1${path}`, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(30_000),
  });
}

/** Polls `check` until it returns something truthy, or fails after `timeoutMs`. */
export async function eventually(check, { timeoutMs = 20_000, what = 'the condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`${what} did not happen within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
