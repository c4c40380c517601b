import test from 'ava';
import { createHash } from 'node:crypto';
import { createExecutor } from '../../../enclave-worker/executor/executor.ts';
import { canonicalResultJson, DigestOnlySink } from '../../../enclave-worker/executor/digest-sink.ts';
import { TestOnlyPlaintextFixtureInputs } from '../../../enclave-worker/executor/plaintext-fixtures.ts';
import { ExecutorPool } from '../../../enclave-worker/executor/pool.ts';
import type { InputSource } from '../../../enclave-worker/executor/ports.ts';
import { detectSandbox } from '../../../enclave-worker/executor/sandbox.ts';
import { fixtureExecutor, request, TEST_LIMITS, writeFixtures } from './harness.ts';

const fixtures = writeFixtures();
const { executor, sink } = fixtureExecutor(fixtures.directory, { pool: { maxConcurrent: 1, maxQueued: 1 }, spares: 1 });
test.after.always(async () => {
  await executor.close();
  fixtures.remove();
});

// One executor with a single slot and a one-place queue: these tests share it, one at a time.

test.serial('executor: a SELECT over the session tables succeeds and the sink gets its rows in order', async (t) => {
  const outcome = await executor.execute(request('session-a', 'q-join', 'SELECT o.id, p.name, o.amount, o.day, p.score FROM orders o JOIN people p ON p.id = o.person_id ORDER BY o.id'));
  t.like(outcome, { status: 'SUCCEEDED', result: { ref: 'test-only-plaintext:session-a/q-join', rows: 3 } });
  const result = sink.read('session-a', 'q-join');
  t.deepEqual(result?.columns, [
    { name: 'id', type: 'INTEGER' },
    { name: 'name', type: 'VARCHAR' },
    { name: 'amount', type: 'BIGINT' },
    { name: 'day', type: 'DATE' },
    { name: 'score', type: 'DOUBLE' },
  ]);
  // 64-bit integers as exact decimal strings, dates as ISO text, NULL as null.
  t.deepEqual(result?.rows, [
    [1, 'person 1, the 1th', '100', '2024-01-01', 0.25],
    [2, 'person 1, the 1th', '250', '2024-01-02', 0.25],
    [3, 'person 2, the 2th', null, '2024-01-03', 0.5],
  ]);
  t.is(outcome.status === 'SUCCEEDED' ? outcome.result.bytes : -1, Buffer.byteLength(JSON.stringify(result?.rows)));
});

test.serial('executor: a session sees only its own tables', async (t) => {
  t.deepEqual(await executor.execute(request('session-a', 'a-reads-b', 'SELECT * FROM b_vault')), { status: 'FAILED', code: 'POLICY_VIOLATION' });
  t.like(await executor.execute(request('session-b', 'b-reads-b', 'SELECT count(*) FROM b_vault')), { status: 'SUCCEEDED' });
  t.deepEqual(await executor.execute(request('session-b', 'b-reads-a', 'SELECT * FROM people')), { status: 'FAILED', code: 'POLICY_VIOLATION' });
  t.deepEqual(await executor.execute(request('unknown-session', 'u', 'SELECT * FROM people')), { status: 'FAILED', code: 'POLICY_VIOLATION' });
});

test.serial('executor: aborting the signal kills the running query, a full queue answers EXECUTOR_BUSY, then it serves again', async (t) => {
  const controller = new AbortController();
  const endless = executor.execute(request('session-a', 'endless', 'WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r', { signal: controller.signal }));
  await new Promise((resolve) => setTimeout(resolve, 200));
  const queued = executor.execute(request('session-b', 'queued', 'SELECT 1'));
  t.deepEqual(await executor.execute(request('session-b', 'refused', 'SELECT 1')), { status: 'FAILED', code: 'EXECUTOR_BUSY' });
  t.deepEqual(executor.status().pool.slots, { max: 1, running: 1, queued: 1 });
  const started = performance.now();
  controller.abort(new Error('task request closed'));
  t.deepEqual(await endless, { status: 'CANCELLED' });
  t.true(performance.now() - started < 1000);
  t.like(await queued, { status: 'SUCCEEDED' });
});

test.serial('executor: the digest-only sink keeps a count and the SHA-256 of the canonical result, no rows', async (t) => {
  const digests = new DigestOnlySink();
  const digestExecutor = createExecutor({
    pool: new ExecutorPool({ maxConcurrent: 1, maxQueued: 1 }),
    inputs: new TestOnlyPlaintextFixtureInputs({ allowTestOnly: true, directory: fixtures.directory }),
    sink: digests,
    sandbox: detectSandbox(),
    limits: TEST_LIMITS,
    spares: 0,
  });
  try {
    const outcome = await digestExecutor.execute(request('session-a', 'd1', 'SELECT id, amount FROM orders ORDER BY id'));
    const expected = createHash('sha256')
      .update(
        canonicalResultJson({
          columns: [
            { name: 'id', type: 'INTEGER' },
            { name: 'amount', type: 'BIGINT' },
          ],
          rows: [
            [1, '100'],
            [2, '250'],
            [3, null],
          ],
        }),
      )
      .digest('hex');
    t.like(outcome, { status: 'SUCCEEDED', result: { ref: `sha256:${expected}`, rows: 3 } });
    t.deepEqual(Object.keys(digests.get('session-a', 'd1') ?? {}).sort(), ['bytes', 'rows', 'sha256']);
  } finally {
    await digestExecutor.close();
  }
});

test.serial('executor: only the tables the query names are materialized, and none for a refused query', async (t) => {
  const calls: string[][] = [];
  const base = new TestOnlyPlaintextFixtureInputs({ allowTestOnly: true, directory: fixtures.directory });
  const recording: InputSource = {
    tableNames: (req) => base.tableNames(req),
    materialize: (req, names, target) => {
      calls.push([...names]);
      return base.materialize(req, names, target);
    },
  };
  const recordingExecutor = createExecutor({
    pool: new ExecutorPool({ maxConcurrent: 1, maxQueued: 1 }),
    inputs: recording,
    sink,
    sandbox: detectSandbox(),
    limits: TEST_LIMITS,
    spares: 0,
  });
  try {
    t.like(await recordingExecutor.execute(request('session-a', 'r1', 'SELECT count(*) FROM orders')), { status: 'SUCCEEDED' });
    t.like(await recordingExecutor.execute(request('session-a', 'r2', "SELECT * FROM orders, read_csv('/etc/passwd')")), { status: 'FAILED' });
    t.like(await recordingExecutor.execute(request('session-a', 'r3', 'SELECT 1 AS one')), { status: 'SUCCEEDED' });
    t.deepEqual(calls, [['orders']]);
  } finally {
    await recordingExecutor.close();
  }
});

test.serial('executor: the sink is told which task inputs the query loaded, sorted by dataset id', async (t) => {
  const input = (table: string, datasetId: string) => ({ table, dataset_id: datasetId, ciphertext_sha256: datasetId.replaceAll('-', '').padEnd(64, '0') }) as never;
  const inputs = [input('people', 'ffffffff-0000-4000-8000-000000000000'), input('orders', '00000000-0000-4000-8000-000000000000'), input('unused', '11111111-0000-4000-8000-000000000000')];
  t.like(await executor.execute(request('session-a', 'with-inputs', 'SELECT count(*) FROM people p JOIN orders o ON o.person_id = p.id', { inputs })), { status: 'SUCCEEDED' });
  t.deepEqual(
    sink.read('session-a', 'with-inputs')?.inputs.map((i) => i.dataset_id),
    ['00000000-0000-4000-8000-000000000000', 'ffffffff-0000-4000-8000-000000000000'],
  );
});

test('executor: empty or over-long SQL is refused without a context', async (t) => {
  t.deepEqual(await executor.execute(request('session-a', 'e', '')), { status: 'FAILED', code: 'POLICY_VIOLATION' });
  t.deepEqual(await executor.execute(request('session-a', 'l', `SELECT 1${' '.repeat(100_000)}`)), { status: 'FAILED', code: 'POLICY_VIOLATION' });
});
