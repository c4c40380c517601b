import type { DatabaseSync } from 'node:sqlite';
import type { Clock, QueuedTask, TaskQueue } from '../../core/ports.ts';
import type { Logger } from '../../http/logger.ts';
import { DEFAULT_RETRY, backoffDelayMs, retryAfterMs, type RetryConfig } from './backoff.ts';
import { pushTask } from './local-push.ts';
import { TaskTable, type ClaimedTask } from './local-table.ts';

/** Timers, injected so tests drive back-off, deadlines and polling with a fake clock. */
export interface Timers {
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

const realTimers: Timers = { setTimeout: (cb, ms) => setTimeout(cb, ms), clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout) };

/** Configuration of the embedded queue; the retry and rate names are Cloud Tasks' own. */
export interface LocalTaskQueueOptions {
  /** The embedded stack's SQLite connection (`SqliteSessionStore.database`); the queue adds its table. */
  database: DatabaseSync;
  /** The worker's task intake. */
  url: string;
  /** Sent as `X-CloudTasks-QueueName`. */
  queueName?: string;
  /** An OIDC token for the control plane's identity, audience the worker's (the dev IdP locally). */
  tokenSource: () => Promise<string>;
  retry?: Partial<RetryConfig>;
  /** A dispatch that has not answered by then is aborted and retried (Cloud Tasks: 15 s to 30 min). */
  dispatchDeadlineMs?: number;
  maxConcurrentDispatches?: number;
  /** How often the table is read for tasks another connection enqueued. */
  pollIntervalMs?: number;
  clock?: Clock;
  timers?: Timers;
  fetch?: typeof fetch;
  random?: () => number;
  log?: Logger;
}

const TASK_NAME = /^[A-Za-z0-9_-]{1,500}$/;
/** Cloud Tasks' maximum task size. */
const MAX_BODY_BYTES = 1024 * 1024;
/** A lease outlives the dispatch deadline by this much, so only a dead dispatcher's lease lapses. */
const LEASE_MARGIN_MS = 30_000;

/**
 * The embedded stack's task queue: a durable table in the stack's SQLite file and a dispatcher
 * that pushes each task to the worker as Cloud Tasks does (same headers, OIDC bearer token, 2xx
 * is success, `Retry-After` on 429/503, exponential back-off, dispatch deadline, concurrency cap,
 * de-duplication by name). Names are remembered forever here; Cloud Tasks forgets after ~1 h.
 *
 * One dispatcher per database file: `start()` takes back every task left in flight, assuming
 * the process that dispatched it has died. The worker's lease answers a duplicate with 503.
 */
export class LocalTaskQueue implements TaskQueue {
  readonly #table: TaskTable;
  readonly #options: LocalTaskQueueOptions;
  readonly #retry: RetryConfig;
  readonly #owner = crypto.randomUUID();
  readonly #inFlight = new Map<string, { controller: AbortController; done: Promise<void> }>();
  readonly #now: () => number;
  readonly #timers: Timers;
  #running = false;
  #timer: { handle: unknown; at: number } | undefined;

  constructor(options: LocalTaskQueueOptions) {
    this.#options = options;
    this.#retry = { ...DEFAULT_RETRY, ...options.retry };
    this.#now = () => (options.clock ?? { now: () => new Date() }).now().getTime();
    this.#timers = options.timers ?? realTimers;
    this.#table = new TaskTable(options.database);
  }

  async enqueue(task: QueuedTask): Promise<'enqueued' | 'duplicate'> {
    if (!TASK_NAME.test(task.name)) throw new TypeError('task names use [A-Za-z0-9_-], at most 500 characters');
    if (task.body.length === 0 || Buffer.byteLength(task.body) > MAX_BODY_BYTES) throw new TypeError('task body must be 1 byte to 1 MiB');
    if (!this.#table.insert(task.name, task.body, this.#now())) return 'duplicate';
    this.wake();
    return 'enqueued';
  }

  /** Takes back tasks a dead dispatcher left in flight and starts dispatching. */
  start(): void {
    if (this.#running) return;
    this.#running = true;
    const reclaimed = this.#table.reclaimAll(this.#now());
    if (reclaimed > 0) this.#options.log?.warn('tasks left in flight are dispatched again', { count: reclaimed });
    this.#pump();
  }

  /** Dispatches due tasks now instead of at the next poll. */
  wake(): void {
    if (this.#running) this.#pump();
  }

  /**
   * Stops dispatching. Deliveries still in flight after `graceMs` are aborted and their tasks
   * return to the table, due at once; resolves when every delivery has settled, after which
   * the database may be closed.
   */
  async stop(options: { graceMs?: number } = {}): Promise<void> {
    this.#running = false;
    if (this.#timer) this.#timers.clearTimeout(this.#timer.handle);
    this.#timer = undefined;
    const settled = Promise.allSettled([...this.#inFlight.values()].map((d) => d.done));
    if ((options.graceMs ?? 0) > 0) {
      let handle: unknown;
      await Promise.race([settled, new Promise((resolve) => (handle = this.#timers.setTimeout(() => resolve(undefined), options.graceMs!)))]);
      this.#timers.clearTimeout(handle);
    }
    for (const { controller } of this.#inFlight.values()) controller.abort(new Error('queue stopping'));
    await settled;
  }

  #pump(): void {
    if (!this.#running) return;
    const max = this.#options.maxConcurrentDispatches ?? 10;
    const now = this.#now();
    let nextDelay = this.#options.pollIntervalMs ?? 1000;
    try {
      const leaseMs = this.#deadlineMs() + LEASE_MARGIN_MS;
      const claimed = this.#table.claim(this.#owner, now, leaseMs, max - this.#inFlight.size, new Set(this.#inFlight.keys()));
      for (const task of claimed) this.#launch(task);
      // At the cap, a finishing delivery pumps again; otherwise wake when the next task is due.
      const due = this.#inFlight.size < max ? this.#table.nextDueAt() : null;
      if (due !== null) nextDelay = Math.min(nextDelay, Math.max(due - now, 10));
    } catch (error) {
      this.#options.log?.error('task queue dispatch failed', { code: (error as { code?: unknown }).code });
    }
    this.#schedule(nextDelay);
  }

  #schedule(delayMs: number): void {
    const at = this.#now() + delayMs;
    if (this.#timer && this.#timer.at <= at) return;
    if (this.#timer) this.#timers.clearTimeout(this.#timer.handle);
    const handle = this.#timers.setTimeout(() => {
      this.#timer = undefined;
      this.#pump();
    }, delayMs);
    this.#timer = { handle, at };
  }

  #launch(task: ClaimedTask): void {
    const controller = new AbortController();
    const done = this.#deliver(task, controller).finally(() => {
      this.#inFlight.delete(task.name);
      this.#pump();
    });
    this.#inFlight.set(task.name, { controller, done });
  }

  async #deliver(task: ClaimedTask, controller: AbortController): Promise<void> {
    const deadline = this.#timers.setTimeout(() => controller.abort(new Error('dispatch deadline exceeded')), this.#deadlineMs());
    const { url, tokenSource, fetch } = this.#options;
    const queueName = this.#options.queueName ?? 'cleanroom-tasks';
    const result = await pushTask(task, { url, queueName, tokenSource, fetch, signal: controller.signal });
    this.#timers.clearTimeout(deadline);
    try {
      this.#settle(task, result.status, result.retryAfter, controller.signal.aborted && !this.#running);
    } catch (error) {
      this.#options.log?.error('task state not saved', { task: task.name, code: (error as { code?: unknown }).code });
    }
  }

  #settle(task: ClaimedTask, status: number, retryAfter: string | null, stopping: boolean): void {
    const now = this.#now();
    if (status >= 200 && status < 300) return this.#table.done(task.name, status, now);
    // Cut short by stop(): due again at once, for whoever dispatches next.
    if (stopping) return this.#table.retry(task, this.#owner, { status, responded: false, nextAt: now }, now);
    const exhausted = this.#retry.maxAttempts !== -1 && task.attempts >= this.#retry.maxAttempts;
    const asked = status === 429 || status === 503 ? retryAfterMs(retryAfter, now) : null;
    const delay = asked ?? backoffDelayMs(task.attempts - 1, this.#retry, this.#options.random);
    const nextAt = exhausted ? null : now + delay;
    this.#table.retry(task, this.#owner, { status, responded: status > 0 && status < 500, nextAt }, now);
    const fields = { task: task.name, status, attempt: task.attempts, retry_in_ms: nextAt === null ? null : delay };
    if (exhausted) this.#options.log?.error('task given up after its last attempt', fields);
    else this.#options.log?.warn('task delivery failed; retrying', fields);
  }

  #deadlineMs(): number {
    return this.#options.dispatchDeadlineMs ?? 600_000;
  }
}
