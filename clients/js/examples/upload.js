// A web app's upload endpoint: save the video, enqueue its transcoding, answer 202 at once.
import { randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { createServer } from 'node:http';
import { join, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';

import { ConnectionError, Panda, UnavailableError } from '@panda/client';

const panda = new Panda(); // PANDA_URL and PANDA_TOKEN from the environment
const uploads = resolve(process.env.UPLOAD_DIR ?? 'uploads');

const server = createServer(async (req, res) => {
  if (req.method !== 'POST' || req.url !== '/upload') {
    res.writeHead(404).end();
    return;
  }
  const id = randomUUID();
  const path = join(uploads, `${id}.upload`);
  try {
    await mkdir(uploads, { recursive: true });
    await pipeline(req, createWriteStream(path));
    // A worker does the slow part. The key names this upload: enqueued again, it runs once.
    const execution = await panda.enqueue('transcode-video', {
      payload: { path, format: 'mp4' },
      idempotencyKey: `upload-${id}`,
    });
    res.writeHead(202, { 'content-type': 'application/json', location: `/uploads/${id}` });
    res.end(JSON.stringify({ upload: id, execution: execution.id }));
  } catch (err) {
    console.error(err);
    // Panda cannot be reached or cannot take it now: the caller may try again.
    const later = err instanceof ConnectionError || err instanceof UnavailableError;
    res.writeHead(later ? 503 : 500, later ? { 'retry-after': String(err.retryAfter ?? 5) } : {});
    res.end();
  }
});

server.listen(Number(process.env.PORT ?? 3000), '127.0.0.1', () => {
  console.log(`listening on http://127.0.0.1:${server.address().port}`);
});
