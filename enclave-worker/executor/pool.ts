import { CleanroomError } from '../../protocol/errors.ts';

/** Sizes of an {@link ExecutorPool}. */
export interface PoolOptions {
  /** Tasks running at once, across all sessions. */
  maxConcurrent: number;
  /** Tasks one session may run at once; default `ceil(maxConcurrent / 2)`, so no session holds every slot. */
  perSessionRunning?: number;
  /** Tasks waiting, across all sessions; beyond it `run` fails with EXECUTOR_BUSY. */
  maxQueued: number;
  /** Tasks one session may have waiting; default `ceil(maxQueued / 2)`, so no session fills the queue. */
  perSessionQueued?: number;
}

/** What the worker's `/status` shows: counts per session, never query text. */
export interface PoolStatus {
  slots: { max: number; running: number; queued: number };
  running: Record<string, number>;
  queued: Record<string, number>;
}

interface Entry {
  sessionId: string;
  start: () => void;
  reject: (error: unknown) => void;
  detach: () => void;
}

const busy = (message: string): CleanroomError => new CleanroomError('EXECUTOR_BUSY', message, { retryAfter: 1 });

/**
 * A bounded pool of execution slots, fair across sessions (docs/architecture.md §8): a session runs at
 * most `perSessionRunning` tasks; a freed slot goes to the waiting session served least recently
 * (round-robin by session, so one session's backlog does not delay another's next task); and when
 * the queue or a session's share of it is full, `run` fails at once with EXECUTOR_BUSY (HTTP 429)
 * instead of queueing without bound.
 */
export class ExecutorPool {
  readonly #max: number;
  readonly #perSessionRunning: number;
  readonly #maxQueued: number;
  readonly #perSessionQueued: number;
  /** Waiting tasks per session, in arrival order of each session's first waiting task. */
  readonly #queues = new Map<string, Entry[]>();
  readonly #running = new Map<string, number>();
  /** When each active session last started a task (a counter); idle sessions are forgotten. */
  readonly #lastServed = new Map<string, number>();
  #tick = 0;
  readonly #inFlight = new Set<{ controller: AbortController; done: Promise<unknown> }>();
  #runningTotal = 0;
  #queuedTotal = 0;
  #closed = false;

  constructor(options: PoolOptions) {
    const positive = (n: number | undefined, name: string): void => {
      if (n !== undefined && (!Number.isInteger(n) || n < 1)) throw new TypeError(`${name} must be a positive integer`);
    };
    positive(options.maxConcurrent, 'maxConcurrent');
    positive(options.perSessionRunning, 'perSessionRunning');
    positive(options.maxQueued, 'maxQueued');
    positive(options.perSessionQueued, 'perSessionQueued');
    this.#max = options.maxConcurrent;
    this.#perSessionRunning = Math.min(options.perSessionRunning ?? Math.ceil(options.maxConcurrent / 2), options.maxConcurrent);
    this.#maxQueued = options.maxQueued;
    this.#perSessionQueued = Math.min(options.perSessionQueued ?? Math.ceil(options.maxQueued / 2), options.maxQueued);
  }

  /**
   * Runs `task` in a slot on behalf of `sessionId`. The task's signal aborts when `signal` does or
   * the pool closes. Rejects with EXECUTOR_BUSY when the queue (or the session's share) is full,
   * and with `signal.reason` when aborted while waiting.
   */
  run<T>(sessionId: string, task: (signal: AbortSignal) => Promise<T>, signal?: AbortSignal): Promise<T> {
    if (this.#closed) return Promise.reject(busy('the executor is shutting down'));
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise<T>((resolve, reject) => {
      const entry: Entry = {
        sessionId,
        start: () => this.#start(entry, task, resolve, reject, signal),
        reject,
        detach: () => signal?.removeEventListener('abort', onAbort),
      };
      const onAbort = (): void => {
        if (this.#dequeue(entry)) reject(signal!.reason);
      };
      const queue = this.#queues.get(sessionId);
      if (queue === undefined && this.#canStart(sessionId)) return entry.start();
      if (this.#queuedTotal >= this.#maxQueued) return reject(busy('the executor queue is full'));
      if ((queue?.length ?? 0) >= this.#perSessionQueued) return reject(busy('the session has too many queries waiting'));
      signal?.addEventListener('abort', onAbort, { once: true });
      if (queue) queue.push(entry);
      else this.#queues.set(sessionId, [entry]);
      this.#queuedTotal++;
    });
  }

  /** Slots in use and waiting tasks, per session. */
  status(): PoolStatus {
    return {
      slots: { max: this.#max, running: this.#runningTotal, queued: this.#queuedTotal },
      running: Object.fromEntries(this.#running),
      queued: Object.fromEntries([...this.#queues].map(([s, q]) => [s, q.length])),
    };
  }

  /** Refuses new tasks, fails waiting ones with EXECUTOR_BUSY, aborts running ones and waits for them. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const queue of this.#queues.values()) {
      for (const entry of queue) {
        entry.detach();
        entry.reject(busy('the executor is shutting down'));
      }
    }
    this.#queues.clear();
    this.#queuedTotal = 0;
    const running = [...this.#inFlight];
    for (const r of running) r.controller.abort(busy('the executor is shutting down'));
    await Promise.allSettled(running.map((r) => r.done));
  }

  #canStart(sessionId: string): boolean {
    return this.#runningTotal < this.#max && (this.#running.get(sessionId) ?? 0) < this.#perSessionRunning;
  }

  #start<T>(entry: Entry, task: (signal: AbortSignal) => Promise<T>, resolve: (value: T) => void, reject: (error: unknown) => void, signal: AbortSignal | undefined): void {
    entry.detach();
    const { sessionId } = entry;
    this.#lastServed.set(sessionId, ++this.#tick);
    this.#runningTotal++;
    this.#running.set(sessionId, (this.#running.get(sessionId) ?? 0) + 1);
    const controller = new AbortController();
    const forward = (): void => controller.abort(signal!.reason);
    if (signal?.aborted) forward();
    else signal?.addEventListener('abort', forward, { once: true });
    let done: Promise<unknown>;
    try {
      done = task(controller.signal).then(resolve, reject);
    } catch (error) {
      // A task that throws synchronously is a failed task, not a broken pool.
      done = Promise.resolve();
      reject(error);
    }
    const record = { controller, done };
    this.#inFlight.add(record);
    void done.finally(() => {
      signal?.removeEventListener('abort', forward);
      this.#inFlight.delete(record);
      this.#runningTotal--;
      const n = (this.#running.get(sessionId) ?? 1) - 1;
      if (n > 0) this.#running.set(sessionId, n);
      else {
        this.#running.delete(sessionId);
        if (!this.#queues.has(sessionId)) this.#lastServed.delete(sessionId);
      }
      this.#dispatch();
    });
  }

  /** Starts waiting tasks while slots are free, each from the eligible session served least recently. */
  #dispatch(): void {
    while (!this.#closed && this.#runningTotal < this.#max) {
      let chosen: string | undefined;
      let chosenServed = Infinity;
      for (const sessionId of this.#queues.keys()) {
        const served = this.#lastServed.get(sessionId) ?? 0;
        if (served < chosenServed && this.#canStart(sessionId)) {
          chosen = sessionId;
          chosenServed = served;
        }
      }
      if (chosen === undefined) return;
      const queue = this.#queues.get(chosen)!;
      const next = queue.shift()!;
      if (queue.length === 0) this.#queues.delete(chosen);
      this.#queuedTotal--;
      next.start();
    }
  }

  #dequeue(entry: Entry): boolean {
    const queue = this.#queues.get(entry.sessionId);
    const index = queue?.indexOf(entry) ?? -1;
    if (queue === undefined || index === -1) return false;
    queue.splice(index, 1);
    if (queue.length === 0) {
      this.#queues.delete(entry.sessionId);
      if (!this.#running.has(entry.sessionId)) this.#lastServed.delete(entry.sessionId);
    }
    this.#queuedTotal--;
    return true;
  }
}
