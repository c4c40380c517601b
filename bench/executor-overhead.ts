/**
 * Per-query isolation overhead: a trivial query through the full executor (policy parse in a fresh
 * context, policy check, TEST-ONLY fixture inputs, load, run, digest sink, context killed) next to
 * the same query on a warm in-process DuckDB connection holding the same table, in the same run.
 *
 * `node bench/executor-overhead.ts [--runs 40] [--warmup 5] [--starts 8]`
 *
 * - Paced: each query waits until every spare context is warm again, so it measures the latency a
 *   query sees when the worker is not saturated (the target: at most 30 ms over the baseline).
 * - Back to back: one query after another without pause, so contexts are consumed faster than
 *   they start: that latency is bounded by context start-up, which is reported too.
 * Stops by itself.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { ExecutionContext } from '../enclave-worker/executor/context.ts';
import { loadTables, openLockedDatabase, runSelect } from '../enclave-worker/executor/engine.ts';
import { resolveLimits } from '../enclave-worker/executor/limits.ts';
import { detectSandbox, UidPool } from '../enclave-worker/executor/sandbox.ts';
import { benchExecutor, benchTables, machineLine, percentile, sandboxLine, sleep, writeBenchFixtures } from './executor-common.ts';

const SQL = 'SELECT count(*) AS n, sum(amount) AS total FROM orders WHERE amount > 500';
const SESSION = 'bench-session';
const TARGET_EXTRA_MS = 30;
const SPARES = 2;

const { values } = parseArgs({
  options: { runs: { type: 'string', default: '40' }, warmup: { type: 'string', default: '5' }, starts: { type: 'string', default: '8' } },
});
const runs = Number(values.runs);
const warmup = Number(values.warmup);
const starts = Number(values.starts);

const stats = (xs: number[]): string => `median ${percentile(xs, 50).toFixed(2)} ms, p95 ${percentile(xs, 95).toFixed(2)} ms (n=${xs.length})`;

async function baseline(): Promise<number[]> {
  const connection = await openLockedDatabase({ threads: 1, memoryLimitMb: 512 });
  await loadTables(connection, benchTables());
  const caps = { maxRows: 100_000, maxBytes: 64 * 1024 * 1024 };
  for (let i = 0; i < warmup; i++) await runSelect(connection, SQL, caps);
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const started = performance.now();
    await runSelect(connection, SQL, caps);
    times.push(performance.now() - started);
  }
  connection.closeSync();
  return times;
}

/** CPU seconds a process has used so far (user + system), from /proc. */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

async function contextStartup(): Promise<{ wall: number[]; cpu: number[] }> {
  const limits = resolveLimits();
  const sandbox = detectSandbox();
  const uids = sandbox.users ? new UidPool(sandbox.users) : undefined;
  const wall: number[] = [];
  const cpu: number[] = [];
  for (let i = 0; i < starts; i++) {
    const started = performance.now();
    const context = new ExecutionContext({ limits, sandbox, ...(uids ? { uids } : {}) });
    await context.ready;
    wall.push(performance.now() - started);
    cpu.push(cpuSeconds(context.pid!) * 1000);
    context.kill();
    await context.exited;
  }
  return { wall, cpu };
}

async function main(): Promise<void> {
  process.stdout.write(`${machineLine()}\nquery: ${SQL}\n`);
  const fixtures = writeBenchFixtures([SESSION]);
  const { executor, sandbox } = benchExecutor(fixtures.directory, { pool: { maxConcurrent: 2, maxQueued: 100 }, spares: SPARES });
  process.stdout.write(`${sandboxLine(sandbox)}; ${SPARES} spare contexts\n\n`);
  const warmSpares = async (): Promise<void> => {
    while (executor.status().contexts.ready < SPARES) await sleep(5);
  };
  const once = async (i: number): Promise<number> => {
    const started = performance.now();
    const outcome = await executor.execute({ sessionId: SESSION, queryId: `q-${i}`, attempt: 1, sql: SQL, inputs: [], recipients: [] });
    if (outcome.status !== 'SUCCEEDED') throw new Error(`query failed: ${JSON.stringify(outcome)}`);
    return performance.now() - started;
  };
  try {
    const base = await baseline();
    for (let i = 0; i < warmup; i++) {
      await warmSpares();
      await once(-1 - i);
    }
    const paced: number[] = [];
    for (let i = 0; i < runs; i++) {
      await warmSpares();
      paced.push(await once(i));
    }
    await warmSpares();
    const backToBack: number[] = [];
    const burstStarted = performance.now();
    for (let i = 0; i < runs; i++) backToBack.push(await once(runs + i));
    const perSecond = runs / ((performance.now() - burstStarted) / 1000);
    await executor.close();
    const startup = await contextStartup();

    const extra = percentile(paced, 50) - percentile(base, 50);
    process.stdout.write(
      [
        `baseline, warm in-process DuckDB connection: ${stats(base)}`,
        `full executor, paced (spares warm):          ${stats(paced)}`,
        `  extra per query (median − median): ${extra.toFixed(2)} ms; ratio ${(percentile(paced, 50) / percentile(base, 50)).toFixed(1)}×`,
        `full executor, back to back:                 ${stats(backToBack)}; ${perSecond.toFixed(1)} queries/s`,
        `context start-up (spawn to ready, not on the paced path): wall ${stats(startup.wall)}; CPU median ${percentile(startup.cpu, 50).toFixed(0)} ms`,
        '',
        `Target: at most ${TARGET_EXTRA_MS} ms extra (paced median): ${extra <= TARGET_EXTRA_MS ? 'MET' : 'MISSED'} (${extra.toFixed(2)} ms)`,
        `${machineLine()} (after)`,
        '',
      ].join('\n'),
    );
  } finally {
    await executor.close();
    fixtures.remove();
  }
}

await main();
