import { CleanroomError } from '../../protocol/errors.ts';
import type { ExecutionContext } from './context.ts';

/**
 * Pre-started execution contexts. Each is a fresh child with DuckDB loaded, locked down and warmed
 * up, waiting for its one query; it is discarded after that query, so "one context per query"
 * holds while the ~200 ms of process start-up stays off the query's path (ADR 0004).
 */
export interface ContextSource {
  /** A ready, unused context; waits for one to finish starting when none is. */
  take(signal?: AbortSignal): Promise<ExecutionContext>;
  /** Kills idle and starting contexts and refuses further takes. */
  close(): Promise<void>;
}

/** Longest wait before a taken spare is replaced (see `take`). */
const REFILL_DELAY_MS = 100;

interface Waiter {
  resolve: (context: ExecutionContext) => void;
  reject: (error: unknown) => void;
}

export interface WarmContextsOptions {
  /** Contexts kept ready (or starting) beyond those already asked for. */
  spares: number;
  /** Contexts starting at once; start-up is CPU-bound, so more than the core count only thrashes. */
  maxStarting?: number;
  /** Starts one context (spawns its process). */
  start: () => ExecutionContext;
}

/** A {@link ContextSource} that keeps `spares` contexts warm and refills as they are taken. */
export class WarmContexts implements ContextSource {
  readonly #spares: number;
  readonly #maxStarting: number;
  readonly #start: () => ExecutionContext;
  readonly #ready: ExecutionContext[] = [];
  readonly #starting = new Set<ExecutionContext>();
  readonly #waiters: Waiter[] = [];
  #closed = false;

  constructor(options: WarmContextsOptions) {
    if (!Number.isInteger(options.spares) || options.spares < 0) throw new TypeError('spares must be a non-negative integer');
    this.#spares = options.spares;
    this.#maxStarting = Math.max(1, options.maxStarting ?? 2);
    this.#start = options.start;
    this.#refill();
  }

  /** Counts for the worker's status. */
  status(): { ready: number; starting: number; waiting: number } {
    return { ready: this.#ready.length, starting: this.#starting.size, waiting: this.#waiters.length };
  }

  take(signal?: AbortSignal): Promise<ExecutionContext> {
    if (this.#closed) return Promise.reject(new CleanroomError('EXECUTOR_BUSY', 'the executor is shutting down', { retryAfter: 1 }));
    signal?.throwIfAborted();
    // Skip a context that died while idle and whose exit has not been handled yet.
    let context = this.#ready.shift();
    while (context !== undefined && !context.idle) context = this.#ready.shift();
    if (context !== undefined) {
      // Replace it once its query is over, or after a short while: starting a process costs the
      // worker a few milliseconds of its event loop and the new child a core, which a short query
      // should not have to share. A long query is demoted by then (`context.ts`).
      let refilled = false;
      const refill = (): void => {
        if (refilled) return;
        refilled = true;
        clearTimeout(timer);
        this.#refill();
      };
      // Starting a context takes ~0.2 CPU-s. While another spare is still ready, its replacement
      // waits for this query to end instead of competing with it for the cores; when this was
      // the last spare, the replacement starts shortly (a burst must not find none).
      const anotherReady = this.#ready.some((c) => c.idle);
      const timer = anotherReady ? undefined : setTimeout(refill, REFILL_DELAY_MS);
      void context.exited.then(refill);
      return Promise.resolve(context);
    }
    return new Promise((resolve, reject) => {
      const waiter: Waiter = { resolve, reject };
      const onAbort = (): void => {
        const index = this.#waiters.indexOf(waiter);
        if (index !== -1) this.#waiters.splice(index, 1);
        reject(signal!.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      waiter.resolve = (c) => {
        signal?.removeEventListener('abort', onAbort);
        resolve(c);
      };
      this.#waiters.push(waiter);
      this.#refill();
    });
  }

  async close(): Promise<void> {
    this.#closed = true;
    const all = [...this.#ready, ...this.#starting];
    this.#ready.length = 0;
    for (const waiter of this.#waiters.splice(0)) waiter.reject(new CleanroomError('EXECUTOR_BUSY', 'the executor is shutting down', { retryAfter: 1 }));
    for (const context of all) context.kill();
    await Promise.all(all.map((c) => c.exited));
  }

  #refill(): void {
    while (!this.#closed && this.#ready.length + this.#starting.size < this.#spares + this.#waiters.length && this.#starting.size < this.#maxStarting) {
      this.#startOne();
    }
  }

  #startOne(): void {
    let context: ExecutionContext;
    try {
      context = this.#start();
    } catch (error) {
      this.#waiters.shift()?.reject(error);
      return;
    }
    this.#starting.add(context);
    context.ready.then(
      () => {
        this.#starting.delete(context);
        if (this.#closed) return context.kill();
        const waiter = this.#waiters.shift();
        if (waiter) waiter.resolve(context);
        else {
          this.#ready.push(context);
          // An idle context that dies (killed from outside) leaves the list and is replaced.
          void context.exited.then(() => {
            const index = this.#ready.indexOf(context);
            if (index !== -1) {
              this.#ready.splice(index, 1);
              this.#refill();
            }
          });
        }
        this.#refill();
      },
      (error: unknown) => {
        this.#starting.delete(context);
        context.kill();
        // A context that cannot start fails one waiter rather than hanging it. Spares are not
        // restarted in a loop: only waiting queries trigger another attempt.
        const waiter = this.#waiters.shift();
        waiter?.reject(error);
        if (this.#waiters.length > 0) this.#refill();
      },
    );
  }
}
