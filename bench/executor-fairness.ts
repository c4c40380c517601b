/**
 * Fairness across sessions: 20 sessions send small queries at a fixed rate, first alone (the
 * baseline) and then while one more session floods the executor with heavy, CPU-bound queries (it
 * keeps `--flood` of them outstanding, more than its share of the queue, and retries a refused one
 * after the 1 s Retry-After). Same run, same executor.
 *
 * `node bench/executor-fairness.ts [--duration 20] [--rate 3] [--flood 40] [--warmup 4]`
 *
 * Small queries are sent open loop (on schedule, whatever the executor does) and their latency
 * counts from the time each was due, so queueing behind the flood cannot hide. Reported: small-
 * query p95 with the flood divided by p95 without (target at most 1.5). Stops by itself.
 */
import { parseArgs } from 'node:util';
import type { Executor } from '../enclave-worker/executor/executor.ts';
import { benchExecutor, machineLine, percentile, sandboxLine, sleep, writeBenchFixtures } from './executor-common.ts';

const SMALL_SQL = 'SELECT count(*) AS n, sum(amount) AS total FROM orders WHERE amount > 500';
// About a billion-row-free second or more of one core: a cross product folded into one aggregate.
const HEAVY_SQL = 'SELECT sum(hash(a.id + b.id * 1000 + c.id * 1000000 + d.id) % 1000) FROM people a, people b, people c, (SELECT id FROM orders WHERE id < 3) d';
const SMALL_SESSIONS = Array.from({ length: 20 }, (_, i) => `small-${String(i).padStart(2, '0')}`);
const HEAVY_SESSION = 'heavy';
const TARGET_RATIO = 1.5;

const { values } = parseArgs({
  options: {
    duration: { type: 'string', default: '20' },
    rate: { type: 'string', default: '3' },
    flood: { type: 'string', default: '40' },
    warmup: { type: 'string', default: '4' },
  },
});
const duration = Number(values.duration) * 1000;
const rate = Number(values.rate);
const floodDepth = Number(values.flood);
const warmup = Number(values.warmup) * 1000;

interface SmallRun {
  latencies: number[];
  failures: Map<string, number>;
}

/** Sends small queries on a fixed schedule, round-robin over the small sessions, for `ms`. */
async function smallLoad(executor: Executor, ms: number, tag: string): Promise<SmallRun> {
  const latencies: number[] = [];
  const failures = new Map<string, number>();
  const interval = 1000 / rate;
  const start = performance.now();
  const inFlight: Promise<void>[] = [];
  for (let i = 0; ; i++) {
    const due = start + i * interval;
    if (due - start >= ms) break;
    const wait = due - performance.now();
    if (wait > 0) await sleep(wait);
    const session = SMALL_SESSIONS[i % SMALL_SESSIONS.length]!;
    inFlight.push(
      executor.execute({ sessionId: session, queryId: `${tag}-${i}`, attempt: 1, sql: SMALL_SQL, inputs: [], recipients: [] }).then((outcome) => {
        if (outcome.status === 'SUCCEEDED') latencies.push(performance.now() - due);
        else {
          const key = outcome.status === 'FAILED' ? outcome.code : outcome.status;
          failures.set(key, (failures.get(key) ?? 0) + 1);
        }
      }),
    );
  }
  await Promise.all(inFlight);
  return { latencies, failures };
}

/** Keeps `depth` heavy queries outstanding for one session until `stop` resolves. */
async function flood(executor: Executor, depth: number, stop: Promise<void>): Promise<{ done: number; refused: number; other: Map<string, number> }> {
  let stopped = false;
  void stop.then(() => (stopped = true));
  let done = 0;
  let refused = 0;
  const other = new Map<string, number>();
  let n = 0;
  const loop = async (): Promise<void> => {
    while (!stopped) {
      const outcome = await executor.execute({ sessionId: HEAVY_SESSION, queryId: `heavy-${n++}`, attempt: 1, sql: HEAVY_SQL, inputs: [], recipients: [] });
      if (outcome.status === 'SUCCEEDED') done++;
      else if (outcome.status === 'FAILED' && outcome.code === 'EXECUTOR_BUSY') {
        // Refused with 429: retry after the hinted second, as Cloud Tasks' backoff would.
        refused++;
        await sleep(1000);
      } else {
        const key = outcome.status === 'FAILED' ? outcome.code : outcome.status;
        other.set(key, (other.get(key) ?? 0) + 1);
      }
    }
  };
  await Promise.all(Array.from({ length: depth }, loop));
  return { done, refused, other };
}

const line = (label: string, run: SmallRun): string =>
  `${label}: p50 ${percentile(run.latencies, 50).toFixed(1)} ms, p95 ${percentile(run.latencies, 95).toFixed(1)} ms, p99 ${percentile(run.latencies, 99).toFixed(1)} ms (n=${run.latencies.length}${
    run.failures.size > 0 ? `; FAILED ${[...run.failures].map(([k, v]) => `${k}×${v}`).join(' ')}` : ''
  })`;

async function main(): Promise<void> {
  const fixtures = writeBenchFixtures([...SMALL_SESSIONS, HEAVY_SESSION]);
  const pool = { maxConcurrent: 4, maxQueued: 64 };
  const { executor, sandbox } = benchExecutor(fixtures.directory, { pool, spares: 4, limits: { timeoutMs: 60_000 } });
  process.stdout.write(
    [
      machineLine(),
      `${sandboxLine(sandbox)}; pool: ${pool.maxConcurrent} slots (a session may hold ${Math.ceil(pool.maxConcurrent / 2)}), queue ${pool.maxQueued}; 4 spare contexts`,
      `small: ${SMALL_SESSIONS.length} sessions, ${rate} queries/s in all, open loop; heavy: 1 session keeping ${floodDepth} outstanding`,
      `phases: ${warmup / 1000} s warm-up, ${duration / 1000} s without the flood, ${duration / 1000} s with it`,
      '',
    ].join('\n'),
  );
  try {
    await smallLoad(executor, warmup, 'warmup');
    const baseline = await smallLoad(executor, duration, 'base');
    let endFlood!: () => void;
    const floodStop = new Promise<void>((resolve) => (endFlood = resolve));
    const heavy = flood(executor, floodDepth, floodStop);
    // Let the flood fill its share of the pool before measuring.
    await sleep(2000);
    const flooded = await smallLoad(executor, duration, 'flood');
    endFlood();
    const heavyStats = await heavy;
    const ratio = percentile(flooded.latencies, 95) / percentile(baseline.latencies, 95);
    process.stdout.write(
      [
        line('small queries, no flood  ', baseline),
        line('small queries, with flood', flooded),
        `heavy session: ${heavyStats.done} heavy queries finished, ${heavyStats.refused} refused with EXECUTOR_BUSY (429)${
          heavyStats.other.size > 0 ? `, other: ${[...heavyStats.other].map(([k, v]) => `${k}×${v}`).join(' ')}` : ''
        }`,
        `p95 with flood / p95 without: ${ratio.toFixed(2)}`,
        '',
        `Target: at most ${TARGET_RATIO}: ${ratio <= TARGET_RATIO ? 'MET' : 'MISSED'} (${ratio.toFixed(2)})`,
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
