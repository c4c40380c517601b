import { spawn, type ChildProcess } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import * as v from 'valibot';
import { CleanroomError, type ErrorCode } from '../../protocol/errors.ts';
import type { ContextFailureCode } from './codes.ts';
import { encodeFrame, FrameReader } from './framing.ts';
import type { ExecutorLimits } from './limits.ts';
import { ChildFrameSchema, type ChildFrame, type ParentFrame } from './messages.ts';
import { createContextDirectory, inputDirectoryRoot, removeContextDirectory, writeInputFileSync } from './input-files.ts';
import type { FileInput, InputTarget, QueryResult, ResultValue } from './ports.ts';
import { renice, residentKb } from './process-control.ts';
import { contextCommand, type SandboxOptions, type UidPool } from './sandbox.ts';
import { WARM_UP_CSV, WARM_UP_FILES, WARM_UP_PARQUET_BASE64 } from './warm-up.ts';

/** How often the watchdog samples a running context's resident memory. */
const RSS_SAMPLE_MS = 20;
/**
 * CPU priorities (nice values). A context starts in the background, so warming spares does not slow
 * the queries running meanwhile; it runs its query at normal priority; and after a short while it is
 * demoted, so one session's long query yields the CPU to other sessions' short ones.
 */
const STARTING_PRIORITY = 10;
const RUNNING_PRIORITY = 0;
const DEMOTE_AFTER_MS = 100;
const DEMOTED_PRIORITY = 19;
/** Frame overhead allowed on top of `maxBytes` (column list, JSON framing). */
const FRAME_SLACK_BYTES = 1024 * 1024;

/** What starting a context needs. */
export interface ContextOptions {
  limits: ExecutorLimits;
  sandbox: SandboxOptions;
  /** Required when `sandbox.users` is set. */
  uids?: UidPool;
  /** The Node binary (the worker's own by default). */
  execPath?: string;
  /** The child entry point (tests only). */
  entry?: string;
  /** Where the context's input directory is created (`inputDirectoryRoot()` by default). */
  directoryRoot?: string;
}

type Expected = 'ready' | 'parsed' | 'loaded' | 'result';
interface Pending {
  expect: Expected;
  resolve: (frame: ChildFrame) => void;
  reject: (error: CleanroomError) => void;
}

function codeError(code: ErrorCode): CleanroomError {
  const messages: Partial<Record<ErrorCode, string>> = {
    QUERY_TIMEOUT: 'the query ran past its time limit',
    QUERY_MEMORY_LIMIT: 'the query ran past its memory limit',
    RESULT_TOO_LARGE: 'the result is over its row or size limit',
    POLICY_VIOLATION: 'the query is not allowed',
    DATASET_MALFORMED: 'an input does not parse under its declared columns',
    DATASET_SCHEMA_MISMATCH: 'an input has other columns than declared',
    DATASET_ROW_COUNT_MISMATCH: 'an input has another number of rows than declared',
    INTERNAL: 'the execution context could not be started',
  };
  return new CleanroomError(code, messages[code] ?? 'the query failed');
}

/**
 * One execution context seen from the worker: a child process with a fresh, locked-down DuckDB
 * that serves one query and is then killed, and its private input directory, which goes with it.
 * Every failure surfaces as a `CleanroomError` with a fixed code; the child's own output never
 * reaches a message.
 */
export class ExecutionContext {
  readonly #limits: ExecutorLimits;
  readonly #child: ChildProcess;
  readonly #reader: FrameReader;
  readonly #directory: string;
  readonly #uid: number | undefined;
  /** Aborted when the context is killed or dies: whoever writes into its directory stops. */
  readonly #ended = new AbortController();
  #pending: Pending | undefined;
  #phase: 'starting' | 'idle' | 'parsing' | 'loading' | 'loaded' | 'running' | 'done' = 'starting';
  /** Why we killed it, when we did. */
  #killCode: ErrorCode | undefined;
  #timers: NodeJS.Timeout[] = [];
  #exited = false;
  /** Resolves when the child process has exited and its directory is gone (its uid is free again). */
  readonly exited: Promise<void>;
  /** Resolves once the child's DuckDB is created and locked; rejects if it cannot start. */
  readonly ready: Promise<void>;

  constructor(options: ContextOptions) {
    this.#limits = options.limits;
    const uid = options.sandbox.users ? options.uids?.acquire() : undefined;
    if (options.sandbox.users && uid === undefined) throw codeError('INTERNAL');
    this.#uid = uid;
    let directory: string | undefined;
    try {
      directory = createContextDirectory(options.directoryRoot ?? inputDirectoryRoot().path);
      // The warm-up inputs (`load-files.ts` `warmUp`), deleted once the context is ready.
      const target: InputTarget = { directory, ...(uid === undefined ? {} : { uid }) };
      writeInputFileSync(target, WARM_UP_FILES.csv, WARM_UP_CSV);
      writeInputFileSync(target, WARM_UP_FILES.parquet, Buffer.from(WARM_UP_PARQUET_BASE64, 'base64'));
    } catch {
      if (directory !== undefined) void removeContextDirectory(directory).catch(() => {});
      if (uid !== undefined) options.uids?.release(uid);
      throw codeError('INTERNAL');
    }
    this.#directory = directory;
    const { command, args } = contextCommand({
      execPath: options.execPath ?? process.execPath,
      heapMb: options.limits.heapMb,
      sandbox: options.sandbox,
      uid,
      ...(options.entry === undefined ? {} : { entry: options.entry }),
    });
    // No inherited environment: no credentials, proxies or NODE_OPTIONS reach the context.
    this.#child = spawn(command, args, { stdio: ['pipe', 'pipe', 'ignore'], env: { TZ: 'UTC', LANG: 'C' }, cwd: '/' });
    this.exited = new Promise((resolve) => {
      const gone = (code: number | null, signal: NodeJS.Signals | null): void => {
        if (this.#exited) return;
        this.#exited = true;
        this.#onExit(code, signal);
        // The uid is handed out again only once no file of this context is left for it to open.
        void removeContextDirectory(this.#directory)
          .catch(() => {})
          .then(() => {
            if (uid !== undefined) options.uids?.release(uid);
            resolve();
          });
      };
      this.#child.once('exit', gone);
      // A process that never started emits 'error' and no 'exit'.
      this.#child.once('error', () => {
        this.#fail('INTERNAL');
        if (this.#child.pid === undefined) gone(null, null);
      });
    });
    // A dead child's pipe errors (EPIPE); the exit handler reports it.
    this.#child.stdin!.on('error', () => {});
    this.#reader = new FrameReader(
      options.limits.maxBytes + FRAME_SLACK_BYTES,
      (text) => this.#onFrame(text),
      () => this.#fail('RESULT_TOO_LARGE'),
    );
    this.#child.stdout!.on('data', (chunk: Buffer) => this.#reader.push(chunk));
    renice(this.#child.pid, STARTING_PRIORITY);
    this.ready = this.#request({ t: 'init', threads: options.limits.threads, memoryLimitMb: options.limits.memoryLimitMb, directory: `${this.#directory}/` }, 'ready')
      .then(() => Promise.all(Object.values(WARM_UP_FILES).map((name) => rm(join(this.#directory, name), { force: true }))))
      .then(() => {
        if (this.#phase === 'starting') this.#phase = 'idle';
      });
    // Callers that never await `ready` (spares discarded early) must not leave an unhandled rejection.
    this.ready.catch(() => {});
  }

  /** The child's pid (tests and status only). */
  get pid(): number | undefined {
    return this.#child.pid;
  }

  /** The context's input directory (absolute, no trailing slash). */
  get directory(): string {
    return this.#directory;
  }

  /** Where an input source writes this context's inputs. */
  get target(): InputTarget {
    return { directory: this.#directory, ...(this.#uid === undefined ? {} : { uid: this.#uid }) };
  }

  /** Aborted once the context is killed or has died. */
  get signal(): AbortSignal {
    return this.#ended.signal;
  }

  /** True while the context is ready and unused. */
  get idle(): boolean {
    return this.#phase === 'idle' && !this.#exited;
  }

  /**
   * Starts the query's clock: the context is SIGKILLed after `timeoutMs` (QUERY_TIMEOUT) or when its
   * resident memory passes `rssLimitMb` (QUERY_MEMORY_LIMIT), and niced after a short while.
   */
  arm(): void {
    const pid = this.#child.pid;
    renice(pid, RUNNING_PRIORITY);
    this.#timers.push(setTimeout(() => this.#fail('QUERY_TIMEOUT'), this.#limits.timeoutMs));
    this.#timers.push(
      setTimeout(() => {
        if (!this.#exited) renice(pid, DEMOTED_PRIORITY);
      }, DEMOTE_AFTER_MS),
    );
    if (pid !== undefined) {
      const limitKb = this.#limits.rssLimitMb * 1024;
      const sample = async (): Promise<void> => {
        const kb = await residentKb(pid);
        if (kb !== undefined && kb > limitKb) this.#fail('QUERY_MEMORY_LIMIT');
      };
      this.#timers.push(setInterval(() => void sample(), RSS_SAMPLE_MS));
    }
  }

  /** DuckDB's parse tree of `sql`, produced in the child before any data is loaded. */
  async parse(sql: string): Promise<unknown> {
    if (this.#phase !== 'idle') throw new TypeError('parse: the context is not idle');
    this.#phase = 'parsing';
    const frame = await this.#request({ t: 'parse', sql }, 'parsed');
    if (frame.t !== 'parsed') throw codeError('QUERY_FAILED');
    try {
      return JSON.parse(frame.tree) as unknown;
    } catch {
      this.#fail('POLICY_VIOLATION');
      throw codeError('POLICY_VIOLATION');
    }
  }

  /**
   * `work`'s outcome, unless the context dies first: then its code (QUERY_TIMEOUT when the clock
   * ran out while the worker was still writing the inputs, for one).
   */
  whileAlive<T>(work: Promise<T>): Promise<T> {
    return new Promise((resolve, reject) => {
      const died = (): void => reject(codeError(this.#killCode ?? 'QUERY_FAILED'));
      if (this.#ended.signal.aborted) return died();
      this.#ended.signal.addEventListener('abort', died, { once: true });
      work.then(
        (value) => {
          this.#ended.signal.removeEventListener('abort', died);
          resolve(value);
        },
        (error: unknown) => {
          this.#ended.signal.removeEventListener('abort', died);
          reject(error);
        },
      );
    });
  }

  /**
   * Has the child load `inputs` from the files in its directory (checked paths, our SQL only), then
   * deletes those files: the parsed query runs only after they are gone. May be called again (one
   * call at a time) for inputs written later, until `run`.
   */
  async load(inputs: readonly FileInput[]): Promise<void> {
    if (this.#phase !== 'parsing' && this.#phase !== 'loaded') throw new TypeError('load: parse first, one load at a time');
    for (const input of inputs) {
      if (dirname(input.file) !== this.#directory || basename(input.file) !== `${input.name}.${input.format}`) {
        throw new TypeError('load: an input file is not in the context directory');
      }
    }
    this.#phase = 'loading';
    await this.#request({ t: 'load', inputs: [...inputs] }, 'loaded');
    await Promise.all(inputs.map((input) => rm(input.file, { force: true })));
    this.#phase = 'loaded';
  }

  /** Runs the parsed query over what was loaded; the caps are enforced in the child and again here. */
  async run(): Promise<QueryResult> {
    if (this.#phase !== 'parsing' && this.#phase !== 'loaded') throw new TypeError('run: parse first');
    this.#phase = 'running';
    const { maxRows, maxBytes } = this.#limits;
    const frame = await this.#request({ t: 'run', maxRows, maxBytes }, 'result');
    this.kill();
    if (frame.t !== 'result') throw codeError('QUERY_FAILED');
    // The child is not trusted to have counted: re-check the caps and each row's shape.
    if (frame.rows.length > maxRows) throw codeError('RESULT_TOO_LARGE');
    if (!frame.rows.every((row) => row.length === frame.columns.length)) throw codeError('QUERY_FAILED');
    const bytes = Buffer.byteLength(JSON.stringify(frame.rows));
    if (bytes > maxBytes) throw codeError('RESULT_TOO_LARGE');
    return { columns: frame.columns, rows: frame.rows as ResultValue[][], bytes };
  }

  /** SIGKILLs the child (idempotent); its directory is removed once it has exited. A context is never reused. */
  kill(): void {
    this.#phase = 'done';
    this.#reader.stop();
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers = [];
    if (!this.#exited) this.#child.kill('SIGKILL');
    this.#ended.abort();
  }

  /**
   * Kills the context and removes its directory now, without waiting for the process to exit
   * (`exited` removes it once more, then frees the uid). Called after anything that wrote into
   * the directory has settled, it also removes what such a late writer may have left.
   */
  async dispose(): Promise<void> {
    this.kill();
    await removeContextDirectory(this.#directory);
  }

  #request(frame: ParentFrame, expect: Expected): Promise<ChildFrame> {
    if (this.#exited || this.#killCode !== undefined) return Promise.reject(codeError(this.#killCode ?? 'QUERY_FAILED'));
    return new Promise((resolve, reject) => {
      this.#pending = { expect, resolve, reject };
      this.#child.stdin!.write(encodeFrame(frame));
    });
  }

  #onFrame(text: string): void {
    let frame: ChildFrame;
    try {
      frame = v.parse(ChildFrameSchema, JSON.parse(text));
    } catch {
      return this.#fail('QUERY_FAILED');
    }
    const pending = this.#pending;
    this.#pending = undefined;
    if (frame.t === 'failed') {
      this.kill();
      pending?.reject(codeError(frame.code satisfies ContextFailureCode));
    } else if (pending?.expect === frame.t) {
      pending.resolve(frame);
    } else {
      // A frame nobody asked for: the child is not following the protocol.
      this.#pending = pending;
      this.#fail('QUERY_FAILED');
    }
  }

  /** Kills the child for `code` and fails the request in flight with it. */
  #fail(code: ErrorCode): void {
    if (this.#killCode === undefined && this.#phase !== 'done') this.#killCode = code;
    this.kill();
    const pending = this.#pending;
    this.#pending = undefined;
    pending?.reject(codeError(this.#killCode ?? code));
  }

  #onExit(exitCode: number | null, signal: NodeJS.Signals | null): void {
    this.kill();
    const pending = this.#pending;
    this.#pending = undefined;
    if (pending === undefined) return;
    if (this.#killCode !== undefined) return pending.reject(codeError(this.#killCode));
    // It died on its own. While parsing, nothing was checked: refuse. While running, an abort is
    // how V8 and C++ die of memory exhaustion, and a foreign SIGKILL is the kernel's OOM killer.
    if (pending.expect === 'parsed') return pending.reject(codeError('POLICY_VIOLATION'));
    if (pending.expect === 'ready') return pending.reject(codeError('INTERNAL'));
    const memory = signal === 'SIGABRT' || signal === 'SIGKILL' || exitCode === 134 || exitCode === 137;
    pending.reject(codeError(memory ? 'QUERY_MEMORY_LIMIT' : 'QUERY_FAILED'));
  }
}
