import * as v from 'valibot';
import { CleanroomError, type ErrorCode } from '../../protocol/errors.ts';
import { MAX_SQL_LENGTH } from '../../protocol/task.ts';
import { ExecutionContext } from './context.ts';
import { resolveLimits, type ExecutorLimits } from './limits.ts';
import { checkQueryTree } from './policy.ts';
import type { ExecutorPool, PoolStatus } from './pool.ts';
import { InputTableSchema, type InputSource, type InputTable, type ResultRef, type ResultSink } from './ports.ts';
import { UidPool, type SandboxOptions } from './sandbox.ts';
import { WarmContexts, type ContextSource } from './spares.ts';

/** One query to run for one session. */
export interface ExecuteRequest {
  sessionId: string;
  queryId: string;
  sql: string;
  /** Aborting it (the task request closed) kills the query's context. */
  signal?: AbortSignal;
}

/** How an execution ended. Failures carry a fixed code only (DESIGN invariant 11). */
export type ExecuteOutcome =
  | { status: 'SUCCEEDED'; result: ResultRef & { elapsedMs: number } }
  | { status: 'FAILED'; code: ErrorCode }
  | { status: 'CANCELLED' };

/** Runs session queries in isolated, disposable contexts. */
export interface Executor {
  execute(request: ExecuteRequest): Promise<ExecuteOutcome>;
  status(): { pool: PoolStatus; contexts: { ready: number; starting: number; waiting: number } };
  /** Stops accepting queries, kills running ones and every warm context. */
  close(): Promise<void>;
}

export interface ExecutorOptions {
  pool: ExecutorPool;
  inputs: InputSource;
  sink: ResultSink;
  /** Overrides of `DEFAULT_LIMITS`. */
  limits?: Partial<ExecutorLimits>;
  /** Confinement of each context (`detectSandbox()` in the worker; ⚠ `NO_SANDBOX` only for development). */
  sandbox: SandboxOptions;
  /** Contexts kept started ahead of demand; default: the pool's slot count. */
  spares?: number;
  /** Monotonic milliseconds (injected for tests). */
  now?: () => number;
}

/**
 * The executor: for each query it takes a fresh context, has the child parse the SQL (before any
 * data exists there), checks the parse tree against the policy here, fetches only the session's
 * tables the query names, runs it under the limits, and hands the result to the sink. The context
 * is killed afterwards, whatever happened.
 */
export function createExecutor(options: ExecutorOptions): Executor {
  const limits = resolveLimits(options.limits);
  const { pool, inputs, sink, sandbox } = options;
  const now = options.now ?? (() => performance.now());
  const uids = sandbox.users ? new UidPool(sandbox.users) : undefined;
  const contexts = new WarmContexts({
    spares: options.spares ?? pool.status().slots.max,
    start: () => new ExecutionContext({ limits, sandbox, ...(uids ? { uids } : {}) }),
  });

  async function runInSlot(request: ExecuteRequest, signal: AbortSignal): Promise<ExecuteOutcome> {
    const names = await inputs.tableNames(request.sessionId);
    const context = await contexts.take(signal);
    const onAbort = (): void => context.kill();
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      // The abort may have fired between the take and the listener.
      signal.throwIfAborted();
      const started = now();
      context.arm();
      const decision = checkQueryTree(await context.parse(request.sql), names);
      const tables = await loadInputs(inputs, request.sessionId, decision.tables);
      const result = await context.run(tables);
      const ref = await sink.write(request.sessionId, request.queryId, result);
      return { status: 'SUCCEEDED', result: { ...ref, elapsedMs: Math.round(now() - started) } };
    } finally {
      signal.removeEventListener('abort', onAbort);
      context.kill();
    }
  }

  return {
    async execute(request) {
      const { signal } = request;
      if (request.sql.length === 0 || request.sql.length > MAX_SQL_LENGTH) return { status: 'FAILED', code: 'POLICY_VIOLATION' };
      try {
        return await pool.run(request.sessionId, (slotSignal) => runInSlot(request, slotSignal), signal);
      } catch (error) {
        if (signal?.aborted) return { status: 'CANCELLED' };
        // Codes only: a cause or message from below never leaves this function.
        return { status: 'FAILED', code: error instanceof CleanroomError ? error.code : 'INTERNAL' };
      }
    },
    status: () => ({ pool: pool.status(), contexts: contexts.status() }),
    async close() {
      await pool.close();
      await contexts.close();
    },
  };
}

/** The named tables from the input port, checked: exactly those names, each a valid table. */
async function loadInputs(inputs: InputSource, sessionId: string, names: readonly string[]): Promise<InputTable[]> {
  if (names.length === 0) return [];
  const tables = await inputs.tables(sessionId, names);
  const parsed = tables.map((table) => {
    const result = v.safeParse(InputTableSchema, table);
    if (!result.success) throw new CleanroomError('INTERNAL', 'an input table is malformed');
    return result.output;
  });
  const got = parsed.map((t) => t.name).sort();
  if (got.length !== names.length || got.some((name, i) => name !== [...names].sort()[i])) {
    throw new CleanroomError('INTERNAL', 'the input source returned other tables than asked for');
  }
  return parsed;
}
