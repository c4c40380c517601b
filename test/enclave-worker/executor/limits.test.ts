import test from 'ava';
import { fixtureExecutor, request, writeFixtures } from './harness.ts';

// Each limit stops its query with a clear code, and the next query on the same executor runs.
// An idle context holds about 120 MiB; the watchdog's 256 MiB leaves DuckDB's 64 MiB room.
const fixtures = writeFixtures();
const { executor } = fixtureExecutor(fixtures.directory, {
  pool: { maxConcurrent: 1, maxQueued: 4 },
  spares: 1,
  limits: { timeoutMs: 3000, memoryLimitMb: 64, rssLimitMb: 256, maxRows: 1000, maxBytes: 100_000 },
});
test.after.always(async () => {
  await executor.close();
  fixtures.remove();
});

const NEXT = 'SELECT count(*) FROM people';

const cases: Array<[string, string, string]> = [
  [
    'DuckDB memory limit (a hash table past memory_limit; nothing spills)',
    'SELECT count(DISTINCT a.secret_col || b.secret_col || c.secret_col) FROM people a, people b, people c',
    'QUERY_MEMORY_LIMIT',
  ],
  ['resident memory watchdog (a string DuckDB does not account for)', "SELECT length(repeat('x', 400000000))", 'QUERY_MEMORY_LIMIT'],
  ['wall-clock timeout (the context is killed)', 'WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r', 'QUERY_TIMEOUT'],
  ['row cap', 'SELECT unnest(range(1001))', 'RESULT_TOO_LARGE'],
  ['byte cap', "SELECT repeat('x', 1000) FROM people", 'RESULT_TOO_LARGE'],
];

cases.forEach(([name, sql, code], i) => {
  test.serial(`limits: ${name} stops the query with ${code}, and the next query runs`, async (t) => {
    t.deepEqual(await executor.execute(request('session-a', `limit-${i}`, sql)), { status: 'FAILED', code });
    t.like(await executor.execute(request('session-a', `next-${i}`, NEXT)), { status: 'SUCCEEDED', result: { rows: 1 } });
  });
});

test.serial('limits: a result just under the caps is returned whole', async (t) => {
  t.like(await executor.execute(request('session-a', 'under', 'SELECT unnest(range(1000))')), { status: 'SUCCEEDED', result: { rows: 1000 } });
});
