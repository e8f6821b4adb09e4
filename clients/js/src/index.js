// The Panda client for Node: enqueue jobs, wait for their outcome, read their logs.
//
// No dependencies: it speaks to the server's HTTP API (`/api/v1`) with the global `fetch`
// (Node 18 and later). `index.d.ts` beside this file declares the same types for TypeScript;
// keep the two in step.

/**
 * Where an execution is in its life. `queued` and `running` are the only ones that change.
 * @typedef {'queued' | 'running' | 'succeeded' | 'failed' | 'timed_out' | 'cancelled' | 'lost' | 'dead' | 'skipped'} Status
 */

/**
 * One attempt of one run of a job, as the server shows it.
 * @typedef {object} Execution
 * @property {string} id This attempt's id.
 * @property {string} root_id The first attempt of this run (its own id on the first attempt).
 * @property {string} job_id
 * @property {string} job_name
 * @property {string} queue
 * @property {number} priority
 * @property {Status} status
 * @property {string} trigger `api`, `manual`, `schedule`, `retry`, ...
 * @property {number} attempt 1 for the first attempt.
 * @property {string | null} idempotency_key
 * @property {unknown} payload The JSON the job receives as `PANDA_PAYLOAD`.
 * @property {Record<string, string>} env
 * @property {string} run_at RFC 3339.
 * @property {string} created_at
 * @property {string | null} started_at
 * @property {string | null} finished_at
 * @property {number | null} exit_code
 * @property {string | null} reason Why it ended as it did, in words.
 * @property {boolean} cancel_requested
 * @property {number} [instance] A service's instance; absent for a job's execution.
 */

/**
 * What to enqueue: every field is optional.
 * @typedef {object} EnqueueOptions
 * @property {unknown} [payload] JSON handed to the job as `PANDA_PAYLOAD` (at most 64 KiB).
 * @property {string} [idempotencyKey] A second enqueue with the same key returns the first
 *   execution instead of a new one (1 to 255 bytes).
 * @property {Date | string} [runAt] Not before this instant (a Date, or RFC 3339 text).
 * @property {number} [priority] Overrides the job's priority: -1000 to 1000, higher first.
 * @property {Record<string, string>} [env] Environment overrides for this execution.
 */

/**
 * The answer for one item of {@link Panda#enqueueMany}, in the item's place.
 * @typedef {object} BatchItem
 * @property {'created' | 'duplicate' | 'invalid'} result `duplicate`: an earlier execution
 *   with the same idempotency key, returned as `execution`.
 * @property {Execution} [execution] For `created` and `duplicate`.
 * @property {{code: string, message: string, hint?: string}} [error] For `invalid`.
 */

/**
 * One line of an execution's log.
 * @typedef {object} LogLine
 * @property {number} seq The position in the log of the piece it was stored in; the lines
 *   written together share one (resume with `after` from the last line of a seq).
 * @property {'stdout' | 'stderr' | 'system'} stream `system`: Panda's own lines.
 * @property {string} at When it was read (RFC 3339).
 * @property {string} text One line with its newline (without one: the end of the output, or a
 *   piece of a line longer than the server keeps whole, 64 KiB by default).
 */

/**
 * @typedef {object} PandaOptions
 * @property {string} [url] The server, such as `http://127.0.0.1:7070` (default: `PANDA_URL`).
 * @property {string} [token] An API token (default: `PANDA_TOKEN`).
 * @property {number} [timeoutMs] How long one request may take, 30 000 by default. A followed
 *   log stream is bounded by it only until the server answers.
 */

/** Statuses after which another attempt of the same run follows (the retry policy allowed it). */
const RETRIED = new Set(['failed', 'timed_out', 'lost']);
/** Statuses no execution leaves. */
const ENDED = new Set(['succeeded', 'failed', 'timed_out', 'cancelled', 'lost', 'dead', 'skipped']);

/** The most items the server takes in one batch. */
export const BATCH_LIMIT = 1000;
const DEFAULT_TIMEOUT_MS = 30_000;
const LOG_PAGE = 1000;

/** An error the server answered with, or one of this client's own. */
export class PandaError extends Error {
  /**
   * @param {string} message
   * @param {{code?: string, hint?: string, status?: number, cause?: unknown}} [details]
   */
  constructor(message, { code = 'error', hint, status, cause } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = new.target.name;
    /** A stable word to branch on: `not_found`, `invalid`, `unauthorized`, `conflict`, ... */
    this.code = code;
    /** What to do about it, when the server said. */
    this.hint = hint;
    /** The HTTP status, when there was an answer. */
    this.status = status;
  }
}

/** 404: no such job or execution. */
export class NotFoundError extends PandaError {}
/** 400 (and 413, 422): the request was refused as it is; sending it again will not help. */
export class InvalidRequestError extends PandaError {}
/** 401: no token, or an unknown or revoked one. */
export class UnauthorizedError extends PandaError {}
/** 403: the token may not do this (a read-only token asked for a change). */
export class ForbiddenError extends UnauthorizedError {}
/** 409: the request conflicts with the current state. */
export class ConflictError extends PandaError {}
/** 503: the server cannot serve this right now; nothing was changed. */
export class UnavailableError extends PandaError {
  /**
   * @param {string} message
   * @param {{code?: string, hint?: string, status?: number, retryAfter?: number}} [details]
   */
  constructor(message, details = {}) {
    super(message, details);
    /** Seconds to wait before asking again, from `Retry-After`, when the server said. */
    this.retryAfter = details.retryAfter;
  }
}
/** The server could not be reached, or did not answer in time (`code` is `timeout`). */
export class ConnectionError extends PandaError {}
/** {@link Panda#wait} gave up before the run ended. */
export class WaitTimeoutError extends PandaError {
  /**
   * @param {string} message
   * @param {Execution} execution
   */
  constructor(message, execution) {
    super(message, { code: 'wait_timeout' });
    /** The run's latest attempt as last seen, still queued or running. */
    this.execution = execution;
  }
}

/** A client of one Panda server. */
export class Panda {
  #base;
  #token;
  #timeoutMs;

  /** @param {PandaOptions} [options] */
  constructor({ url, token, timeoutMs } = {}) {
    url ??= process.env.PANDA_URL;
    token ??= process.env.PANDA_TOKEN;
    if (!url) {
      throw new PandaError('no Panda server URL: pass { url } or set PANDA_URL', {
        code: 'configuration',
        hint: 'such as http://127.0.0.1:7070, where `panda server` listens',
      });
    }
    if (!token) {
      throw new PandaError('no Panda API token: pass { token } or set PANDA_TOKEN', {
        code: 'configuration',
        hint: '`panda server` wrote an admin token to DATA_DIR/admin.token; `panda token create NAME` makes another',
      });
    }
    let parsed;
    try {
      parsed = new URL(url);
    } catch {
      throw new PandaError(`${JSON.stringify(url)} is not a URL`, {
        code: 'configuration',
        hint: 'such as http://127.0.0.1:7070',
      });
    }
    this.#base = `${parsed.origin}${parsed.pathname.replace(/\/+$/, '')}/api/v1`;
    this.#token = token;
    this.#timeoutMs = timeoutMs ?? DEFAULT_TIMEOUT_MS;
  }

  /**
   * Enqueues one run of `job`. With an idempotency key seen before, the first execution is
   * returned and nothing new runs.
   * @param {string} job
   * @param {EnqueueOptions} [options]
   * @returns {Promise<Execution>}
   */
  async enqueue(job, options = {}) {
    const answer = await this.#request('POST', `/jobs/${segment(job)}/executions`, {
      body: triggerRequest(options),
    });
    return answer.execution;
  }

  /**
   * Enqueues many runs of `job`, each answered in its place: created, a duplicate of an
   * earlier execution with the same idempotency key, or invalid (with why). Lists longer than
   * 1000 go in chunks of 1000, each chunk all or nothing on the server; chunks are sent one
   * after another, so a failure (such as an unknown job) rejects after earlier chunks were
   * enqueued.
   * @param {string} job
   * @param {Iterable<EnqueueOptions>} items
   * @returns {Promise<BatchItem[]>}
   */
  async enqueueMany(job, items) {
    const requests = Array.from(items, triggerRequest);
    /** @type {BatchItem[]} */
    const answers = [];
    for (let start = 0; start < requests.length; start += BATCH_LIMIT) {
      const chunk = requests.slice(start, start + BATCH_LIMIT);
      const answer = await this.#request('POST', `/jobs/${segment(job)}/executions/batch`, {
        body: { items: chunk },
      });
      if (!Array.isArray(answer?.items) || answer.items.length !== chunk.length) {
        throw new PandaError(
          `the server answered ${answer?.items?.length ?? 'no'} items for a batch of ${chunk.length}`,
          { code: 'protocol' },
        );
      }
      answers.push(...answer.items);
    }
    return answers;
  }

  /**
   * One execution.
   * @param {string} id
   * @param {{signal?: AbortSignal}} [options]
   * @returns {Promise<Execution>}
   */
  async get(id, { signal } = {}) {
    return this.#request('GET', `/executions/${segment(id)}`, { signal });
  }

  /**
   * Waits until the run `id` belongs to has its final outcome, following its retries: an
   * attempt that failed with attempts left is followed by the next one. Resolves with the
   * last attempt (`succeeded`, `dead`, `cancelled`, `skipped`); rejects with a
   * {@link WaitTimeoutError} after `timeoutMs` (default: no limit). Polls, every 100 ms at
   * first and then less often, up to every 2 s.
   * @param {string} id
   * @param {{timeoutMs?: number, signal?: AbortSignal}} [options]
   * @returns {Promise<Execution>}
   */
  async wait(id, { timeoutMs, signal } = {}) {
    const deadline = timeoutMs === undefined ? Infinity : Date.now() + timeoutMs;
    let interval = 100;
    let execution = await this.get(id, { signal });
    for (;;) {
      if (ENDED.has(execution.status)) {
        // A service's instance is restarted by its service, never retried.
        if (!RETRIED.has(execution.status) || execution.instance != null) return execution;
        const next = await this.#nextAttempt(execution, signal);
        if (next) {
          execution = next;
          interval = 100;
          continue;
        }
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new WaitTimeoutError(
          `execution ${execution.id} of job ${JSON.stringify(execution.job_name)} is still ${execution.status} after ${timeoutMs} ms`,
          execution,
        );
      }
      await sleep(Math.min(interval, left), signal);
      interval = Math.min(interval * 1.5, 2000);
      execution = await this.get(execution.id, { signal });
    }
  }

  /**
   * The lines of an execution's log, in order. Without `follow`, the lines written so far;
   * with it, those and then the new ones as they come, until the execution ends. `after`
   * starts after the lines numbered with that `seq`.
   * @param {string} id
   * @param {{follow?: boolean, after?: number, signal?: AbortSignal}} [options]
   * @returns {AsyncGenerator<LogLine, void, undefined>}
   */
  async *logs(id, { follow = false, after, signal } = {}) {
    if (!follow) {
      for (;;) {
        const query = new URLSearchParams({ limit: String(LOG_PAGE) });
        if (after !== undefined) query.set('after', String(after));
        const page = await this.#request('GET', `/executions/${segment(id)}/logs?${query}`, {
          signal,
        });
        for (const chunk of page.lines) {
          after = chunk.seq;
          yield* linesIn(chunk);
        }
        if (page.lines.length < LOG_PAGE) return;
      }
    }
    for (;;) {
      const query = after === undefined ? '' : `?after=${after}`;
      let ended = false;
      for await (const event of this.#events(`/executions/${segment(id)}/logs/stream${query}`, signal)) {
        if (event.event === 'log') {
          const chunk = JSON.parse(event.data);
          after = chunk.seq;
          yield* linesIn(chunk);
        } else if (event.event === 'end') {
          ended = true;
          break;
        }
      }
      if (ended) return;
      // The stream closed early (the server restarted, a proxy cut it): ask again from where
      // it stopped, after a pause.
      await sleep(500, signal);
    }
  }

  /**
   * Cancels an execution: a queued one at once, a running one through its worker (its status
   * changes when the worker has stopped it).
   * @param {string} id
   * @returns {Promise<Execution>}
   */
  async cancel(id) {
    return this.#request('POST', `/executions/${segment(id)}/cancel`);
  }

  /**
   * The attempt that follows `failed` in its run, once the server has recorded it.
   * @param {Execution} failed
   * @param {AbortSignal} [signal]
   * @returns {Promise<Execution | undefined>}
   */
  async #nextAttempt(failed, signal) {
    // The next attempt is recorded with the failure, so it is among the job's newest
    // executions triggered by a retry: page back until one of this run turns up or the pages
    // are older than the failure.
    const since = Date.parse(failed.finished_at ?? failed.created_at);
    let before;
    for (;;) {
      const query = new URLSearchParams({ trigger: 'retry', limit: '100' });
      if (before) query.set('before', before);
      const page = await this.#request('GET', `/jobs/${segment(failed.job_name)}/executions?${query}`, {
        signal,
      });
      for (const execution of page.executions) {
        if (execution.root_id === failed.root_id && execution.attempt > failed.attempt) {
          return execution;
        }
        if (Date.parse(execution.created_at) < since) return undefined;
      }
      if (!page.next) return undefined;
      before = page.next;
    }
  }

  /**
   * Server-sent events from `path`: `{event, data}` each, until the server closes the stream.
   * @param {string} path
   * @param {AbortSignal} [signal]
   */
  async *#events(path, signal) {
    const response = await this.#open(path, signal);
    if (!response.body) return;
    let buffer = '';
    let event = 'message';
    /** @type {string[]} */
    let data = [];
    try {
      for await (const chunk of response.body.pipeThrough(new TextDecoderStream())) {
        buffer += chunk;
        let newline;
        while ((newline = buffer.search(/\r\n|\r|\n/)) >= 0) {
          const line = buffer.slice(0, newline);
          buffer = buffer.slice(newline + (buffer.startsWith('\r\n', newline) ? 2 : 1));
          if (line === '') {
            if (data.length > 0) yield { event, data: data.join('\n') };
            event = 'message';
            data = [];
            continue;
          }
          if (line.startsWith(':')) continue;
          const colon = line.indexOf(':');
          const field = colon < 0 ? line : line.slice(0, colon);
          let value = colon < 0 ? '' : line.slice(colon + 1);
          if (value.startsWith(' ')) value = value.slice(1);
          if (field === 'event') event = value;
          else if (field === 'data') data.push(value);
        }
      }
    } catch (err) {
      if (signal?.aborted) throw signal.reason;
      // A stream cut mid-way ends like a closed one; the caller asks again.
      if (!(err instanceof TypeError)) throw err;
    } finally {
      // Leaving early (a break in the caller's loop) closes the connection.
      await response.body.cancel().catch(() => {});
    }
  }

  /**
   * Sends a request and reads its JSON answer, or rejects with the error it carries. The
   * whole exchange, answer read in full, is bounded by the client's timeout.
   * @param {string} method
   * @param {string} path
   * @param {{body?: unknown, signal?: AbortSignal}} [options]
   */
  async #request(method, path, { body, signal } = {}) {
    const timeout = AbortSignal.timeout(this.#timeoutMs);
    const both = signal ? AbortSignal.any([timeout, signal]) : timeout;
    const response = await this.#send(method, path, { body, signal: both, own: signal });
    let text;
    try {
      text = await response.text();
    } catch (err) {
      throw this.#failure(method, path, err, signal);
    }
    if (response.status === 204 || text === '') return undefined;
    try {
      return JSON.parse(text);
    } catch {
      throw new PandaError(`${method} ${path} answered ${response.status} with no JSON`, {
        code: 'protocol',
        status: response.status,
      });
    }
  }

  /**
   * Opens a stream: the client's timeout bounds only the wait for the answer's headers.
   * @param {string} path
   * @param {AbortSignal} [signal]
   */
  async #open(path, signal) {
    const timeout = new AbortController();
    const timer = setTimeout(
      () => timeout.abort(new DOMException('The operation was aborted due to timeout', 'TimeoutError')),
      this.#timeoutMs,
    );
    try {
      return await this.#send('GET', path, {
        accept: 'text/event-stream',
        signal: signal ? AbortSignal.any([timeout.signal, signal]) : timeout.signal,
        own: signal,
      });
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * @param {string} method
   * @param {string} path
   * @param {{body?: unknown, signal: AbortSignal, own?: AbortSignal, accept?: string}} options
   *   `own`: the caller's signal, among those `signal` combines.
   * @returns {Promise<Response>} An answer with a 2xx status.
   */
  async #send(method, path, { body, signal, own, accept = 'application/json' }) {
    /** @type {Record<string, string>} */
    const headers = { authorization: `Bearer ${this.#token}`, accept };
    if (body !== undefined) headers['content-type'] = 'application/json';
    let response;
    try {
      response = await fetch(this.#base + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal,
      });
    } catch (err) {
      throw this.#failure(method, path, err, own);
    }
    if (!response.ok) throw await errorOf(response, method, path);
    return response;
  }

  /**
   * What a request that got no (whole) answer rejects with: the reason the caller's own
   * signal aborted with, or a {@link ConnectionError}.
   * @param {string} method
   * @param {string} path
   * @param {unknown} err
   * @param {AbortSignal} [own] The caller's signal.
   */
  #failure(method, path, err, own) {
    if (own?.aborted) return own.reason;
    const url = this.#base + path;
    const name = /** @type {any} */ (err)?.name;
    if (name === 'TimeoutError') {
      return new ConnectionError(`${method} ${url}: no answer within ${this.#timeoutMs} ms`, {
        code: 'timeout',
        hint: 'the server may be overloaded; raise timeoutMs if it is only slow',
        cause: err,
      });
    }
    return new ConnectionError(`${method} ${url}: ${describe(err)}`, {
      code: 'connection',
      hint: 'check that the server runs and that the URL (PANDA_URL) points at it',
      cause: err,
    });
  }
}

/**
 * The lines of one piece of log as the server stores it: whole lines, one or more (or a
 * piece of a line too long to keep whole), all numbered with the piece's `seq`.
 * @param {LogLine} chunk
 * @returns {Generator<LogLine>}
 */
function* linesIn(chunk) {
  const texts = chunk.text.match(/[^\n]*\n|[^\n]+/g) ?? [];
  for (const text of texts) yield { ...chunk, text };
}

/**
 * The request body the server takes for one enqueue.
 * @param {EnqueueOptions} [options]
 */
function triggerRequest({ payload, idempotencyKey, runAt, priority, env } = {}) {
  /** @type {Record<string, unknown>} */
  const body = {};
  if (payload !== undefined) body.payload = payload;
  if (idempotencyKey !== undefined) body.idempotency_key = idempotencyKey;
  if (runAt !== undefined) body.run_at = runAt instanceof Date ? runAt.toISOString() : runAt;
  if (priority !== undefined) body.priority = priority;
  if (env !== undefined) body.env = env;
  return body;
}

/**
 * The typed error a failed answer stands for.
 * @param {Response} response
 * @param {string} method
 * @param {string} path
 */
async function errorOf(response, method, path) {
  const text = await response.text().catch(() => '');
  let error;
  try {
    error = JSON.parse(text)?.error;
  } catch {
    // Not the API's error shape: a proxy's page, say.
  }
  const status = response.status;
  const code = typeof error?.code === 'string' ? error.code : `http_${status}`;
  const message =
    typeof error?.message === 'string'
      ? error.message
      : `${method} ${path} answered ${status}${text ? `: ${text.slice(0, 200)}` : ''}`;
  const details = { code, hint: error?.hint ?? undefined, status };
  switch (status) {
    case 400:
    case 413:
    case 422:
      return new InvalidRequestError(message, details);
    case 401:
      return new UnauthorizedError(message, details);
    case 403:
      return new ForbiddenError(message, details);
    case 404:
      return new NotFoundError(message, details);
    case 409:
      return new ConflictError(message, details);
    case 503:
      return new UnavailableError(message, {
        ...details,
        retryAfter: retryAfter(response.headers.get('retry-after')),
      });
    default:
      return new PandaError(message, details);
  }
}

/**
 * `Retry-After` in seconds: a number of seconds or an HTTP date.
 * @param {string | null} value
 */
function retryAfter(value) {
  if (value === null) return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim());
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, Math.ceil((at - Date.now()) / 1000));
}

/** @param {string} value */
function segment(value) {
  if (typeof value !== 'string' || value === '') {
    throw new TypeError(`expected a non-empty string, got ${JSON.stringify(value)}`);
  }
  return encodeURIComponent(value);
}

/** @param {unknown} err */
function describe(err) {
  const cause = /** @type {any} */ (err)?.cause;
  return cause?.code ?? cause?.message ?? /** @type {any} */ (err)?.message ?? String(err);
}

/**
 * @param {number} ms
 * @param {AbortSignal} [signal]
 */
function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', abort);
      resolve(undefined);
    }, ms);
    const abort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    signal?.addEventListener('abort', abort, { once: true });
  });
}
