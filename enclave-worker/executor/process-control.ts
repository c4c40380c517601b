import { readdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { setPriority } from 'node:os';

/** Linux process controls the worker applies to its contexts (through `/proc` and setpriority). */

/**
 * Sets the nice value of every thread of a process. On Linux a nice value belongs to a thread, and
 * DuckDB runs queries on libuv's pool threads, not the main one, so each thread is reniced (from
 * `/proc/<pid>/task`). Best effort: the process may have exited, and only root may lower a value.
 */
export function renice(pid: number | undefined, priority: number): void {
  if (pid === undefined) return;
  let threads: string[];
  try {
    threads = readdirSync(`/proc/${pid}/task`);
  } catch {
    threads = [String(pid)];
  }
  for (const tid of threads) {
    try {
      setPriority(Number(tid), priority);
    } catch {
      // Priority is an optimisation, never a correctness condition.
    }
  }
}

/** Resident set size of a process in KiB, from `/proc` (Linux); undefined once it is gone. */
export async function residentKb(pid: number): Promise<number | undefined> {
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    const match = /^VmRSS:\s+(\d+) kB$/m.exec(status);
    return match ? Number(match[1]) : undefined;
  } catch {
    return undefined;
  }
}
