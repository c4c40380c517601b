import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createExecutor, type Executor } from '../../../enclave-worker/executor/executor.ts';
import type { ExecuteRequest } from '../../../enclave-worker/executor/ports.ts';
import type { ExecutorLimits } from '../../../enclave-worker/executor/limits.ts';
import { TestOnlyPlaintextFixtureInputs, TestOnlyPlaintextResultSink } from '../../../enclave-worker/executor/plaintext-fixtures.ts';
import { ExecutorPool, type PoolOptions } from '../../../enclave-worker/executor/pool.ts';
import { detectSandbox } from '../../../enclave-worker/executor/sandbox.ts';

/** Marker strings planted in fixtures: none may show up where it does not belong. */
export const A_SECRET = 'A-SECRET-';
export const B_SECRET = 'B-SECRET-';

/**
 * Two sessions' TEST-ONLY plaintext fixtures in a fresh directory: session A owns `people` (300
 * rows, a text `secret_col`) and `orders`; session B owns `b_vault`, whose every value is a marker.
 */
export function writeFixtures(): { directory: string; remove: () => void } {
  const directory = mkdtempSync(join(tmpdir(), 'executor-fixtures-'));
  mkdirSync(join(directory, 'session-a'));
  mkdirSync(join(directory, 'session-b'));
  const people = ['id:INTEGER,name:VARCHAR,secret_col:VARCHAR,score:DOUBLE'];
  for (let i = 0; i < 300; i++) people.push(`${i},"person ${i}, the ${i % 7}th",${A_SECRET}${String(i).padStart(4, '0')},${i / 4}`);
  writeFileSync(join(directory, 'session-a', 'people.csv'), `${people.join('\n')}\n`);
  writeFileSync(join(directory, 'session-a', 'orders.csv'), 'id:INTEGER,person_id:INTEGER,amount:BIGINT,day:DATE\n1,1,100,2024-01-01\n2,1,250,2024-01-02\n3,2,,2024-01-03\n');
  const vault = ['id:INTEGER,secret:VARCHAR'];
  for (let i = 0; i < 20; i++) vault.push(`${i},${B_SECRET}${String(i).padStart(4, '0')}`);
  writeFileSync(join(directory, 'session-b', 'b_vault.csv'), `${vault.join('\n')}\n`);
  return { directory, remove: () => rmSync(directory, { recursive: true, force: true }) };
}

/** A request with no task inputs or recipients (the TEST-ONLY fixtures ignore them). */
export function request(sessionId: string, queryId: string, sql: string, extra: Partial<ExecuteRequest> = {}): ExecuteRequest {
  return { sessionId, queryId, attempt: 1, sql, inputs: [], recipients: [], ...extra };
}

/** Small limits so bombs hit them fast. */
export const TEST_LIMITS: Partial<ExecutorLimits> = {
  timeoutMs: 4000,
  memoryLimitMb: 128,
  heapMb: 128,
  rssLimitMb: 640,
  maxRows: 10_000,
  maxBytes: 1_000_000,
};

/** An executor over the fixtures, with the strongest sandbox this host allows. */
export function fixtureExecutor(
  directory: string,
  options: { pool?: Partial<PoolOptions>; limits?: Partial<ExecutorLimits>; spares?: number } = {},
): { executor: Executor; sink: TestOnlyPlaintextResultSink; pool: ExecutorPool } {
  const sink = new TestOnlyPlaintextResultSink({ allowTestOnly: true });
  const pool = new ExecutorPool({ maxConcurrent: 2, maxQueued: 200, ...options.pool });
  const executor = createExecutor({
    pool,
    inputs: new TestOnlyPlaintextFixtureInputs({ allowTestOnly: true, directory }),
    sink,
    sandbox: detectSandbox(),
    limits: { ...TEST_LIMITS, ...options.limits },
    ...(options.spares === undefined ? {} : { spares: options.spares }),
  });
  return { executor, sink, pool };
}
