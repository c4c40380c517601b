/**
 * Shared pieces of the executor benchmarks: TEST-ONLY plaintext fixtures, percentiles and the
 * machine line. Not a benchmark itself.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createExecutor, type Executor } from '../enclave-worker/executor/executor.ts';
import { DigestOnlySink } from '../enclave-worker/executor/digest-sink.ts';
import type { ExecutorLimits } from '../enclave-worker/executor/limits.ts';
import { TestOnlyPlaintextFixtureInputs } from '../enclave-worker/executor/plaintext-fixtures.ts';
import { ExecutorPool, type PoolOptions } from '../enclave-worker/executor/pool.ts';
import type { InputTable } from '../enclave-worker/executor/ports.ts';
import { detectSandbox, type SandboxOptions } from '../enclave-worker/executor/sandbox.ts';

/** The benchmark's input: `orders` (1,000 rows) and `people` (300 rows). */
export function benchTables(): InputTable[] {
  const orders: InputTable = {
    name: 'orders',
    columns: [
      { name: 'id', type: 'INTEGER' },
      { name: 'person_id', type: 'INTEGER' },
      { name: 'amount', type: 'BIGINT' },
    ],
    rows: Array.from({ length: 1000 }, (_, i) => [i, i % 300, String((i * 37) % 1000)]),
  };
  const people: InputTable = {
    name: 'people',
    columns: [
      { name: 'id', type: 'INTEGER' },
      { name: 'name', type: 'VARCHAR' },
    ],
    rows: Array.from({ length: 300 }, (_, i) => [i, `person ${i}`]),
  };
  return [orders, people];
}

function csv(table: InputTable): string {
  const header = table.columns.map((c) => `${c.name}:${c.type}`).join(',');
  return `${[header, ...table.rows.map((row) => row.map((v) => (v === null ? '' : String(v))).join(','))].join('\n')}\n`;
}

/** Writes {@link benchTables} for each session id into a fresh directory (TEST-ONLY plaintext path). */
export function writeBenchFixtures(sessionIds: readonly string[]): { directory: string; remove: () => void } {
  const directory = mkdtempSync(join(tmpdir(), 'executor-bench-'));
  for (const id of sessionIds) {
    mkdirSync(join(directory, id));
    for (const table of benchTables()) writeFileSync(join(directory, id, `${table.name}.csv`), csv(table));
  }
  return { directory, remove: () => rmSync(directory, { recursive: true, force: true }) };
}

/** An executor over the fixtures with the digest-only sink, as the embedded stack would run it. */
export function benchExecutor(directory: string, options: { pool: PoolOptions; limits?: Partial<ExecutorLimits>; spares?: number }): { executor: Executor; sandbox: SandboxOptions } {
  const sandbox = detectSandbox();
  const executor = createExecutor({
    pool: new ExecutorPool(options.pool),
    inputs: new TestOnlyPlaintextFixtureInputs({ allowTestOnly: true, directory }),
    sink: new DigestOnlySink(),
    sandbox,
    ...(options.limits === undefined ? {} : { limits: options.limits }),
    ...(options.spares === undefined ? {} : { spares: options.spares }),
  });
  return { executor, sandbox };
}

/** The p-th percentile (nearest rank) of `values`. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

/** One line about the machine, with the load average (a busy machine makes the figures noisy). */
export function machineLine(): string {
  return `machine: ${cpus()[0]?.model ?? 'unknown cpu'}, ${availableParallelism()} cores, node ${process.version}, load average ${loadavg()
    .map((n) => n.toFixed(2))
    .join(' ')}`;
}

/** Describes the sandbox in force. */
export function sandboxLine(sandbox: SandboxOptions): string {
  const layers = [sandbox.users ? 'own uid per context' : '', sandbox.isolateNetwork ? 'no network' : '', sandbox.rlimits ? 'rlimits' : ''].filter(Boolean);
  return `sandbox: ${layers.length > 0 ? layers.join(', ') : 'none (process boundary and DuckDB lock-down only)'}`;
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
