import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';

/**
 * How a context's process is confined beyond being its own process. Each layer needs privileges
 * the worker may not have, so each is optional; `detectSandbox` turns on what this host allows.
 */
export interface SandboxOptions {
  /**
   * A uid and gid of its own for each live context, from `[first, first + count)`, returned when it
   * exits: a context cannot signal, ptrace or read `/proc/<pid>/mem` of another session's context,
   * nor read the worker's 0600 files (keys, credentials). Needs root (CAP_SETUID/CAP_SETGID).
   */
  users?: { first: number; count: number };
  /** A fresh network namespace per context (a loopback device, down): no network at all. Needs CAP_SYS_ADMIN. */
  isolateNetwork?: boolean;
  /** RLIMIT_FSIZE=0 (no file can grow) and RLIMIT_CORE=0 (no core dump holding rows), via `prlimit`. */
  rlimits?: boolean;
}

/**
 * ⚠ No confinement beyond the process boundary and DuckDB's lock-down: same uid as the worker,
 * network reachable. For development hosts without root only.
 */
export const NO_SANDBOX: SandboxOptions = {};

const UNSHARE = '/usr/bin/unshare';
const SETPRIV = '/usr/bin/setpriv';
const PRLIMIT = '/usr/bin/prlimit';

/** Default uid range for contexts: unassigned ids, below 65536 so they map inside user namespaces. */
export const DEFAULT_CONTEXT_USERS = { first: 50_000, count: 1_000 } as const;

/**
 * The strongest sandbox this host allows, probed once at startup: separate users and no network
 * when running as root with util-linux's `unshare`, `setpriv` and `prlimit` present and working.
 */
export function detectSandbox(): SandboxOptions {
  const tools = [UNSHARE, SETPRIV, PRLIMIT].every((path) => existsSync(path));
  if (!tools || process.getuid?.() !== 0) return NO_SANDBOX;
  const probe = spawnSync(UNSHARE, ['--net', '--', PRLIMIT, '--fsize=0:0', '--', SETPRIV, ...setprivArgs(DEFAULT_CONTEXT_USERS.first), '--', '/bin/true'], {
    stdio: 'ignore',
    timeout: 5000,
  });
  if (probe.status !== 0) return NO_SANDBOX;
  return { users: { ...DEFAULT_CONTEXT_USERS }, isolateNetwork: true, rlimits: true };
}

function setprivArgs(uid: number): string[] {
  // No supplementary groups, no capabilities now or after exec, no setuid gains, and killed with the worker.
  return [`--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', '--no-new-privs', '--inh-caps=-all', '--bounding-set=-all', '--pdeathsig=SIGKILL'];
}

/** Hands out the uids of {@link SandboxOptions.users}, so no two live contexts share one. */
export class UidPool {
  readonly #free: number[];

  constructor(range: { first: number; count: number }) {
    this.#free = Array.from({ length: range.count }, (_, i) => range.first + range.count - 1 - i);
  }

  /** A free uid, or undefined when every one is in use. */
  acquire(): number | undefined {
    return this.#free.pop();
  }

  /** Returns a uid once the process that held it has exited. */
  release(uid: number): void {
    this.#free.unshift(uid);
  }
}

/** The program and arguments that start one context. */
export interface ContextCommand {
  command: string;
  args: string[];
}

/** Where the context's code lives, for the Node permission model's read allow-list. */
export const CHILD_ENTRY = resolve(dirname(new URL(import.meta.url).pathname), 'child.ts');

/**
 * The command line of one context: the sandbox wrappers (each `exec`s the next, so the pid is the
 * Node process's) and Node with a bounded heap and the permission model. The permission model
 * stops JavaScript in the context from reading anything but its own code, writing any file,
 * spawning processes or starting threads; DuckDB is native code and is confined by its own
 * lock-down and the wrappers, not by it.
 */
export function contextCommand(options: { execPath: string; heapMb: number; sandbox: SandboxOptions; uid: number | undefined; entry?: string }): ContextCommand {
  const entry = options.entry ?? CHILD_ENTRY;
  const repo = resolve(dirname(CHILD_ENTRY), '../..');
  const node = [
    options.execPath,
    `--max-old-space-size=${options.heapMb}`,
    '--disallow-code-generation-from-strings',
    '--permission',
    `--allow-fs-read=${dirname(CHILD_ENTRY)}/`,
    `--allow-fs-read=${entry}`,
    `--allow-fs-read=${join(repo, 'protocol')}/`,
    `--allow-fs-read=${join(repo, 'node_modules')}/`,
    `--allow-fs-read=${join(repo, 'package.json')}`,
    '--allow-addons',
    '--disable-warning=SecurityWarning',
    entry,
  ];
  const prefix: string[] = [];
  if (options.sandbox.isolateNetwork) prefix.push(UNSHARE, '--net', '--');
  if (options.sandbox.rlimits) prefix.push(PRLIMIT, '--fsize=0:0', '--core=0:0', '--');
  if (options.uid !== undefined) prefix.push(SETPRIV, ...setprivArgs(options.uid), '--');
  const argv = [...prefix, ...node];
  return { command: argv[0]!, args: argv.slice(1) };
}
