// The README's first example, run as the program it is: a web app that saves an upload,
// enqueues `transcode-video` and answers 202 at once; the job then does the work.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { access, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { api, client, createJob, environment, scratch, uniqueName } from '../testing/fixtures.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const example = join(root, 'examples/upload.js');

/** The job a real deployment would run: here a copy that takes a second stands for ffmpeg. */
const TRANSCODE = `
const { copyFileSync } = require('node:fs');
const { path, format } = JSON.parse(process.env.PANDA_PAYLOAD);
setTimeout(() => copyFileSync(path, path.replace(/\\.upload$/, '.' + format)), 1000);
`;

async function exists(path) {
  return access(path).then(
    () => true,
    () => false,
  );
}

test("the README's first example is examples/upload.js, word for word", async () => {
  const readme = await readFile(join(root, 'README.md'), 'utf8');
  const first = readme.match(/```js\n([\s\S]*?)```/);
  assert.ok(first, 'the README has a js example');
  assert.equal(first[1], await readFile(example, 'utf8'));
});

test('the upload endpoint answers 202 before the job ran, and the job transcodes the upload', async (t) => {
  const { url, token } = environment();
  const panda = client();
  // The example names its job `transcode-video`; a leftover one would not be this test's.
  const existing = await api('GET', '/jobs/transcode-video');
  assert.equal(existing.status, 404, 'a job named transcode-video exists already on this server');
  await createJob(t, [process.execPath, '-e', TRANSCODE], { name: 'transcode-video' });

  const uploads = scratch(uniqueName('uploads'));
  const app = spawn(process.execPath, [example], {
    cwd: root,
    env: { ...process.env, PANDA_URL: url, PANDA_TOKEN: token, PORT: '0', UPLOAD_DIR: uploads },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  t.after(() => app.kill());
  const [line] = await once(app.stdout.setEncoding('utf8'), 'data');
  const address = line.match(/listening on (\S+)/)?.[1];
  assert.ok(address, `the app said ${JSON.stringify(line)}`);

  const video = `not really a video ${uniqueName('bytes')}`;
  const response = await fetch(`${address}/upload`, { method: 'POST', body: video });

  assert.equal(response.status, 202);
  const { upload, execution } = await response.json();
  assert.equal(response.headers.get('location'), `/uploads/${upload}`);
  const transcoded = join(uploads, `${upload}.mp4`);
  assert.equal(await exists(transcoded), false, 'answered before the job ran');
  assert.equal(await readFile(join(uploads, `${upload}.upload`), 'utf8'), video);

  const ended = await panda.wait(execution, { timeoutMs: 30_000 });
  assert.equal(ended.status, 'succeeded');
  assert.equal(ended.idempotency_key, `upload-${upload}`);
  assert.equal(await readFile(transcoded, 'utf8'), video);

  const other = await fetch(`${address}/elsewhere`);
  assert.equal(other.status, 404);
});
