import { spawn, type ChildProcess } from 'node:child_process';
import * as v from 'valibot';
import { CleanroomError, type ErrorCode } from '../../protocol/errors.ts';
import type { ContextFailureCode } from './codes.ts';
import { encodeFrame, FrameReader } from './framing.ts';
import type { ExecutorLimits } from './limits.ts';
import { ChildFrameSchema, type ChildFrame, type ParentFrame } from './messages.ts';
import type { InputTable, QueryResult, ResultValue } from './ports.ts';
import { renice, residentKb } from './process-control.ts';
import { contextCommand, type SandboxOptions, type UidPool } from './sandbox.ts';

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
}

type Expected = 'ready' | 'parsed' | 'result';
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
    INTERNAL: 'the execution context could not be started',
  };
  return new CleanroomError(code, messages[code] ?? 'the query failed');
}

/**
 * One execution context seen from the worker: a child process with a fresh, locked-down DuckDB
 * that serves one query and is then killed. Every failure surfaces as a `CleanroomError` with a
 * fixed code; the child's own output never reaches a message.
 */
export class ExecutionContext {
  readonly #limits: ExecutorLimits;
  readonly #child: ChildProcess;
  readonly #reader: FrameReader;
  #pending: Pending | undefined;
  #phase: 'starting' | 'idle' | 'parsing' | 'running' | 'done' = 'starting';
  /** Why we killed it, when we did. */
  #killCode: ErrorCode | undefined;
  #timers: NodeJS.Timeout[] = [];
  #exited = false;
  /** Resolves when the child process has exited (its uid is free again). */
  readonly exited: Promise<void>;
  /** Resolves once the child's DuckDB is created and locked; rejects if it cannot start. */
  readonly ready: Promise<void>;

  constructor(options: ContextOptions) {
    this.#limits = options.limits;
    const uid = options.sandbox.users ? options.uids?.acquire() : undefined;
    if (options.sandbox.users && uid === undefined) throw codeError('INTERNAL');
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
        if (uid !== undefined) options.uids?.release(uid);
        this.#onExit(code, signal);
        resolve();
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
    this.ready = this.#request({ t: 'init', threads: options.limits.threads, memoryLimitMb: options.limits.memoryLimitMb }, 'ready').then(() => {
      this.#phase = 'idle';
    });
    // Callers that never await `ready` (spares discarded early) must not leave an unhandled rejection.
    this.ready.catch(() => {});
  }

  /** The child's pid (tests and status only). */
  get pid(): number | undefined {
    return this.#child.pid;
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

  /** Loads `tables` and runs the parsed query; the caps are enforced in the child and again here. */
  async run(tables: readonly InputTable[]): Promise<QueryResult> {
    if (this.#phase !== 'parsing') throw new TypeError('run: parse first');
    this.#phase = 'running';
    const { maxRows, maxBytes } = this.#limits;
    const frame = await this.#request({ t: 'run', tables: [...tables], maxRows, maxBytes }, 'result');
    this.kill();
    if (frame.t !== 'result') throw codeError('QUERY_FAILED');
    // The child is not trusted to have counted: re-check the caps and each row's shape.
    if (frame.rows.length > maxRows) throw codeError('RESULT_TOO_LARGE');
    if (!frame.rows.every((row) => row.length === frame.columns.length)) throw codeError('QUERY_FAILED');
    const bytes = Buffer.byteLength(JSON.stringify(frame.rows));
    if (bytes > maxBytes) throw codeError('RESULT_TOO_LARGE');
    return { columns: frame.columns, rows: frame.rows as ResultValue[][], bytes };
  }

  /** SIGKILLs the child (idempotent). A context is never reused. */
  kill(): void {
    this.#phase = 'done';
    this.#reader.stop();
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers = [];
    if (!this.#exited) this.#child.kill('SIGKILL');
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
