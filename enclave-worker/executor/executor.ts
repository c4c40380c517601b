import * as v from 'valibot';
import { CleanroomError, type ErrorCode } from '../../protocol/errors.ts';
import { MAX_SQL_LENGTH } from '../../protocol/task.ts';
import { ExecutionContext } from './context.ts';
import { inputDirectoryRoot, removeStaleContextDirectories, type InputDirectoryRoot } from './input-files.ts';
import { resolveLimits, type ExecutorLimits } from './limits.ts';
import { checkQueryTree } from './policy.ts';
import type { ExecutorPool, PoolStatus } from './pool.ts';
import { FileInputSchema, type ExecuteRequest, type FileInput, type InputSource, type LoadedInput, type ResultRef, type ResultSink } from './ports.ts';
import { UidPool, type SandboxOptions } from './sandbox.ts';
import { WarmContexts } from './spares.ts';

export type { ExecuteRequest } from './ports.ts';

/** How an execution ended. Failures carry a fixed code only (docs/architecture.md invariant 11). */
export type ExecuteOutcome = { status: 'SUCCEEDED'; result: ResultRef & { elapsedMs: number } } | { status: 'FAILED'; code: ErrorCode } | { status: 'CANCELLED' };

/** Runs session queries in isolated, disposable contexts. */
export interface Executor {
  execute(request: ExecuteRequest): Promise<ExecuteOutcome>;
  status(): {
    pool: PoolStatus;
    contexts: { ready: number; starting: number; waiting: number };
    /** Where plaintext inputs are written; `tmpfs: false` means they may touch a disk. */
    inputDirectory: InputDirectoryRoot;
  };
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
  /** Where context directories are created; default `inputDirectoryRoot()` (`/dev/shm`). */
  inputDirectory?: InputDirectoryRoot;
  /** Monotonic milliseconds (injected for tests). */
  now?: () => number;
}

/**
 * The executor: for each query it takes a fresh context, has the child parse the SQL (before any
 * data exists there), checks the parse tree against the policy here, has the input source write
 * only the tables the query names into the context's private directory, has the child load them
 * (the files are deleted right after), runs the query under the limits, and hands the result to
 * the sink. The context and its directory are gone afterwards, whatever happened.
 */
export function createExecutor(options: ExecutorOptions): Executor {
  const limits = resolveLimits(options.limits);
  const { pool, inputs, sink, sandbox } = options;
  const now = options.now ?? (() => performance.now());
  const uids = sandbox.users ? new UidPool(sandbox.users) : undefined;
  const inputDirectory = options.inputDirectory ?? inputDirectoryRoot();
  // Plaintext a crashed worker left in memory goes before this one starts writing its own.
  const swept = removeStaleContextDirectories(inputDirectory.path);
  const contexts = new WarmContexts({
    spares: options.spares ?? pool.status().slots.max,
    start: () => new ExecutionContext({ limits, sandbox, directoryRoot: inputDirectory.path, ...(uids ? { uids } : {}) }),
  });

  async function runInSlot(request: ExecuteRequest, signal: AbortSignal): Promise<ExecuteOutcome> {
    const names = await inputs.tableNames(request);
    const context = await contexts.take(signal);
    const onAbort = (): void => context.kill();
    signal.addEventListener('abort', onAbort, { once: true });
    let materializing: Promise<unknown> | undefined;
    try {
      // The abort may have fired between the take and the listener.
      signal.throwIfAborted();
      const started = now();
      context.arm();
      const { tables } = checkQueryTree(await context.parse(request.sql), names);
      if (tables.length > 0) {
        // The writer stops when the context dies (time or memory limit, abort).
        const scoped: ExecuteRequest = { ...request, signal: AbortSignal.any([signal, context.signal]) };
        // Each file the source announces is loaded while it writes the next one (one load at a time).
        const announced = new Set<string>();
        let loading: Promise<void> = Promise.resolve();
        const ready = (file: FileInput): void => {
          const [checked] = checkFileInputs([file], [file.name]);
          if (!tables.includes(checked!.name) || announced.has(checked!.name)) throw new CleanroomError('INTERNAL', 'the input source announced a table not asked for');
          announced.add(checked!.name);
          loading = loading.then(() => context.load([checked!]));
          // Surfaced by the awaits below; not an unhandled rejection meanwhile.
          loading.catch(() => {});
        };
        const written = inputs.materialize(scoped, tables, context.target, ready);
        materializing = written;
        let files: FileInput[];
        try {
          files = checkFileInputs(await context.whileAlive(written), tables);
          await context.whileAlive(loading);
        } catch (error) {
          // A failed load ends the context; its own code says why, not the context's death.
          await loading;
          throw error;
        }
        const rest = files.filter((file) => !announced.has(file.name));
        if (rest.length > 0) await context.load(rest);
      }
      const result = await context.run();
      const ref = await sink.write(request, result, loadedInputs(request, tables));
      return { status: 'SUCCEEDED', result: { ...ref, elapsedMs: Math.round(now() - started) } };
    } finally {
      signal.removeEventListener('abort', onAbort);
      context.kill();
      // Nothing may still be writing into the directory when it is removed for the last time.
      await materializing?.catch(() => {});
      await context.dispose();
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
    status: () => ({ pool: pool.status(), contexts: contexts.status(), inputDirectory }),
    async close() {
      await pool.close();
      await contexts.close();
      await swept;
    },
  };
}

/** What the input source wrote, checked: exactly the asked tables, each a valid file input. */
function checkFileInputs(files: readonly FileInput[], names: readonly string[]): FileInput[] {
  const parsed = files.map((file) => {
    const result = v.safeParse(FileInputSchema, file);
    if (!result.success) throw new CleanroomError('INTERNAL', 'an input source returned a malformed input');
    return result.output;
  });
  const got = parsed.map((f) => f.name).sort();
  const wanted = [...names].sort();
  if (got.length !== wanted.length || got.some((name, i) => name !== wanted[i])) {
    throw new CleanroomError('INTERNAL', 'the input source returned other tables than asked for');
  }
  return parsed;
}

/** The request's inputs the query loaded, as its receipt names them: by dataset id, sorted. */
function loadedInputs(request: ExecuteRequest, tables: readonly string[]): LoadedInput[] {
  return request.inputs
    .filter((input) => tables.includes(input.table))
    .map((input) => ({ dataset_id: input.dataset_id, ciphertext_sha256: input.ciphertext_sha256 }))
    .sort((a, b) => (a.dataset_id < b.dataset_id ? -1 : a.dataset_id > b.dataset_id ? 1 : 0));
}
