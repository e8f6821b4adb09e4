// Types of the Panda client (src/index.js). Kept by hand: change both together.

/** Where an execution is in its life. `queued` and `running` are the only ones that change. */
export type Status =
  | 'queued'
  | 'running'
  | 'succeeded'
  | 'failed'
  | 'timed_out'
  | 'cancelled'
  | 'lost'
  | 'dead'
  | 'skipped';

/** One attempt of one run of a job, as the server shows it. */
export interface Execution {
  /** This attempt's id. */
  id: string;
  /** The first attempt of this run (its own id on the first attempt). */
  root_id: string;
  job_id: string;
  job_name: string;
  queue: string;
  priority: number;
  status: Status;
  /** `api`, `manual`, `schedule`, `retry`, ... */
  trigger: string;
  /** 1 for the first attempt. */
  attempt: number;
  idempotency_key: string | null;
  /** The JSON the job receives as `PANDA_PAYLOAD`. */
  payload: unknown;
  env: Record<string, string>;
  /** RFC 3339. */
  run_at: string;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  exit_code: number | null;
  /** Why it ended as it did, in words. */
  reason: string | null;
  cancel_requested: boolean;
  /** A service's instance; absent for a job's execution. */
  instance?: number;
  [field: string]: unknown;
}

/** What to enqueue: every field is optional. */
export interface EnqueueOptions {
  /** JSON handed to the job as `PANDA_PAYLOAD` (at most 64 KiB). */
  payload?: unknown;
  /** A second enqueue with the same key returns the first execution (1 to 255 bytes). */
  idempotencyKey?: string;
  /** Not before this instant (a Date, or RFC 3339 text). */
  runAt?: Date | string;
  /** Overrides the job's priority: -1000 to 1000, higher first. */
  priority?: number;
  /** Environment overrides for this execution. */
  env?: Record<string, string>;
}

/** The error the server gives for one refused item of a batch. */
export interface ApiError {
  code: string;
  message: string;
  hint?: string;
}

/** The answer for one item of `enqueueMany`, in the item's place. */
export type BatchItem =
  | { result: 'created'; execution: Execution }
  /** An earlier execution with the same idempotency key. */
  | { result: 'duplicate'; execution: Execution }
  | { result: 'invalid'; error: ApiError };

/** One line of an execution's log. */
export interface LogLine {
  /**
   * The position in the log of the piece it was stored in; the lines written together share
   * one (resume with `after` from the last line of a seq).
   */
  seq: number;
  /** `system`: Panda's own lines. */
  stream: 'stdout' | 'stderr' | 'system';
  /** When it was read (RFC 3339). */
  at: string;
  /**
   * One line with its newline (without one: the end of the output, or a piece of a line
   * longer than the server keeps whole, 64 KiB by default).
   */
  text: string;
}

export interface PandaOptions {
  /** The server, such as `http://127.0.0.1:7070` (default: `PANDA_URL`). */
  url?: string;
  /** An API token (default: `PANDA_TOKEN`). */
  token?: string;
  /**
   * How long one request may take, 30 000 by default. A followed log stream is bounded by it
   * only until the server answers.
   */
  timeoutMs?: number;
}

/** The most items the server takes in one batch. */
export const BATCH_LIMIT: 1000;

/** A client of one Panda server. */
export class Panda {
  /** Throws a `PandaError` (code `configuration`) without a URL or a token. */
  constructor(options?: PandaOptions);
  /** Enqueues one run of `job`; a repeated idempotency key returns the first execution. */
  enqueue(job: string, options?: EnqueueOptions): Promise<Execution>;
  /**
   * Enqueues many runs of `job`, each answered in its place. Longer lists than 1000 go in
   * chunks of 1000, one after another.
   */
  enqueueMany(job: string, items: Iterable<EnqueueOptions>): Promise<BatchItem[]>;
  /** One execution. */
  get(id: string, options?: { signal?: AbortSignal }): Promise<Execution>;
  /**
   * Waits for the final outcome of the run `id` belongs to, following its retries; rejects
   * with `WaitTimeoutError` after `timeoutMs` (default: no limit).
   */
  wait(id: string, options?: { timeoutMs?: number; signal?: AbortSignal }): Promise<Execution>;
  /**
   * The log's lines: those written so far, or with `follow` the new ones too, until the
   * execution ends. `after` starts after the lines numbered with that `seq`.
   */
  logs(
    id: string,
    options?: { follow?: boolean; after?: number; signal?: AbortSignal },
  ): AsyncGenerator<LogLine, void, undefined>;
  /** Cancels a queued execution at once, a running one through its worker. */
  cancel(id: string): Promise<Execution>;
}

/** An error the server answered with, or one of this client's own. */
export class PandaError extends Error {
  constructor(
    message: string,
    details?: { code?: string; hint?: string; status?: number; cause?: unknown },
  );
  /** A stable word to branch on: `not_found`, `invalid`, `unauthorized`, `conflict`, ... */
  code: string;
  /** What to do about it, when the server said. */
  hint: string | undefined;
  /** The HTTP status, when there was an answer. */
  status: number | undefined;
}
/** 404: no such job or execution. */
export class NotFoundError extends PandaError {}
/** 400 (and 413, 422): refused as it is; sending it again will not help. */
export class InvalidRequestError extends PandaError {}
/** 401: no token, or an unknown or revoked one. */
export class UnauthorizedError extends PandaError {}
/** 403: the token may not do this (a read-only token asked for a change). */
export class ForbiddenError extends UnauthorizedError {}
/** 409: the request conflicts with the current state. */
export class ConflictError extends PandaError {}
/** 503: the server cannot serve this right now; nothing was changed. */
export class UnavailableError extends PandaError {
  constructor(
    message: string,
    details?: { code?: string; hint?: string; status?: number; retryAfter?: number },
  );
  /** Seconds to wait before asking again, from `Retry-After`, when the server said. */
  retryAfter: number | undefined;
}
/** The server could not be reached (`code` `connection`) or did not answer in time (`timeout`). */
export class ConnectionError extends PandaError {}
/** `wait` gave up before the run ended. */
export class WaitTimeoutError extends PandaError {
  constructor(message: string, execution: Execution);
  /** The run's latest attempt as last seen, still queued or running. */
  execution: Execution;
}
