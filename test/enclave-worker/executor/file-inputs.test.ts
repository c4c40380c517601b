import test from 'ava';
import { DuckDBInstance } from '@duckdb/node-api';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { DatasetFormat } from '../../../protocol/dataset.ts';
import { ExecutionContext } from '../../../enclave-worker/executor/context.ts';
import { createExecutor, type Executor } from '../../../enclave-worker/executor/executor.ts';
import { createInputFile, inputDirectoryRoot } from '../../../enclave-worker/executor/input-files.ts';
import { resolveLimits } from '../../../enclave-worker/executor/limits.ts';
import { TestOnlyPlaintextResultSink } from '../../../enclave-worker/executor/plaintext-fixtures.ts';
import { ExecutorPool } from '../../../enclave-worker/executor/pool.ts';
import type { ExecuteRequest, FileInput, InputSource, InputTarget } from '../../../enclave-worker/executor/ports.ts';
import { detectSandbox, NO_SANDBOX } from '../../../enclave-worker/executor/sandbox.ts';
import { request, TEST_LIMITS } from './harness.ts';

/**
 * Inputs loaded from files in each context's private directory, through the whole executor with
 * real contexts: the right rows from CSV and Parquet, each load failure with its code, the
 * directory gone whatever happened, and the files gone before the user's SQL runs.
 */

interface Table {
  format: DatasetFormat;
  bytes: Uint8Array;
  columns: FileInput['columns'];
  rowCount: number | null;
}

/** An input source over fixed tables; records where and how it wrote each query's files. */
class StaticInputs implements InputSource {
  readonly targets: InputTarget[] = [];
  readonly written: { mode: number; uid: number; directoryMode: number }[] = [];
  readonly #tables: Record<string, Table>;
  readonly #hang: boolean;

  constructor(tables: Record<string, Table>, options: { hang?: boolean } = {}) {
    this.#tables = tables;
    this.#hang = options.hang ?? false;
  }

  async tableNames(): Promise<string[]> {
    return Object.keys(this.#tables).sort();
  }

  async materialize(req: ExecuteRequest, names: readonly string[], target: InputTarget): Promise<FileInput[]> {
    this.targets.push(target);
    const inputs: FileInput[] = [];
    for (const name of names) {
      const table = this.#tables[name]!;
      const { file, handle } = await createInputFile(target, name, table.format);
      try {
        await handle.writeFile(table.bytes);
      } finally {
        await handle.close();
      }
      const stat = statSync(file);
      this.written.push({ mode: stat.mode & 0o777, uid: stat.uid, directoryMode: statSync(target.directory).mode & 0o777 });
      inputs.push({ name, file, format: table.format, columns: table.columns, rowCount: table.rowCount });
    }
    // A writer that never finishes on its own: it stops when the context dies.
    if (this.#hang) await new Promise((_, reject) => req.signal?.addEventListener('abort', () => reject(req.signal?.reason)));
    return inputs;
  }
}

const csv = (text: string, columns: FileInput['columns'], rowCount: number | null = null): Table => ({ format: 'csv', bytes: Buffer.from(text), columns, rowCount });

const scratch = mkdtempSync(join(inputDirectoryRoot().path, 'file-inputs-test-'));
// Parquet bytes are written at test time by an unrestricted in-process DuckDB.
const writer = await (await DuckDBInstance.create(':memory:')).connect();
await writer.run(
  `COPY (SELECT * FROM (VALUES (1, 'gold', 3.5::DOUBLE), (2, 'silver', 1.25::DOUBLE), (3, NULL, NULL)) v(person_id, tier, weight)) TO '${join(scratch, 'tiers.parquet')}' (FORMAT parquet)`,
);
writer.closeSync();
const TIERS: Table = {
  format: 'parquet',
  bytes: readFileSync(join(scratch, 'tiers.parquet')),
  columns: [
    { name: 'person_id', type: 'BIGINT' },
    { name: 'tier', type: 'VARCHAR' },
    { name: 'weight', type: 'DOUBLE' },
  ],
  rowCount: 3,
};
const PEOPLE = csv(
  'id,name\n1,"Ada, A."\n2,Bo\n3,Cy\n',
  [
    { name: 'id', type: 'INTEGER' },
    { name: 'name', type: 'VARCHAR' },
  ],
  3,
);
const ORDERS = csv(
  'id,person_id,amount\n10,1,100\n11,1,250\n12,2,\n',
  [
    { name: 'id', type: 'INTEGER' },
    { name: 'person_id', type: 'INTEGER' },
    { name: 'amount', type: 'BIGINT' },
  ],
  3,
);

const executors: Executor[] = [];
test.after.always(async () => {
  await Promise.all(executors.map((e) => e.close()));
  rmSync(scratch, { recursive: true, force: true });
});

function executorOver(inputs: InputSource, limits = {}): { executor: Executor; sink: TestOnlyPlaintextResultSink } {
  const sink = new TestOnlyPlaintextResultSink({ allowTestOnly: true });
  const executor = createExecutor({
    pool: new ExecutorPool({ maxConcurrent: 2, maxQueued: 20 }),
    inputs,
    sink,
    sandbox: detectSandbox(),
    limits: { ...TEST_LIMITS, ...limits },
    spares: 1,
  });
  executors.push(executor);
  return { executor, sink };
}

test('file inputs: a query over two CSV inputs and a Parquet input gives the right rows', async (t) => {
  const inputs = new StaticInputs({ people: PEOPLE, orders: ORDERS, tiers: TIERS });
  const { executor, sink } = executorOver(inputs);
  const sql = `SELECT p.name, t.tier, count(o.id) AS orders, sum(o.amount) AS total, max(t.weight) AS weight
    FROM people p LEFT JOIN orders o ON o.person_id = p.id LEFT JOIN tiers t ON t.person_id = p.id
    GROUP BY p.name, t.tier ORDER BY p.name`;
  t.like(await executor.execute(request('s1', 'q1', sql)), { status: 'SUCCEEDED', result: { rows: 3 } });
  t.deepEqual(sink.read('s1', 'q1')?.rows, [
    ['Ada, A.', 'gold', '2', '350', 3.5],
    ['Bo', 'silver', '1', null, 1.25],
    ['Cy', null, '0', null, null],
  ]);
  // Each file was readable by the context's own uid only, in a directory it cannot list.
  const sandbox = detectSandbox();
  t.is(inputs.written.length, 3);
  for (const written of inputs.written) {
    t.is(written.mode, 0o400);
    t.is(written.directoryMode, 0o711);
    if (sandbox.users) t.is(written.uid, inputs.targets[0]!.uid!);
  }
  if (sandbox.users) t.true(inputs.targets[0]!.uid! >= sandbox.users.first);
  else t.log('SANDBOX UNAVAILABLE: files are owned by the worker, not a context uid');
});

const failures: Array<[string, Record<string, Table>, string, string]> = [
  [
    'a malformed CSV row',
    {
      t: csv('a,b\n1,x\n2,y,z\n', [
        { name: 'a', type: 'INTEGER' },
        { name: 'b', type: 'VARCHAR' },
      ]),
    },
    'SELECT * FROM t',
    'DATASET_MALFORMED',
  ],
  ['a value that is not its declared type', { t: csv('a\n1\nsecret-value\n', [{ name: 'a', type: 'INTEGER' }]) }, 'SELECT * FROM t', 'DATASET_MALFORMED'],
  ['a wrong row count', { t: csv('a\n1\n2\n', [{ name: 'a', type: 'INTEGER' }], 3) }, 'SELECT * FROM t', 'DATASET_ROW_COUNT_MISMATCH'],
  ['a CSV header naming other columns', { t: csv('x\n1\n', [{ name: 'a', type: 'INTEGER' }]) }, 'SELECT * FROM t', 'DATASET_SCHEMA_MISMATCH'],
  ['a Parquet file with other column types', { t: { ...TIERS, columns: [...TIERS.columns.slice(0, 2), { name: 'weight', type: 'INTEGER' }] } }, 'SELECT * FROM t', 'DATASET_SCHEMA_MISMATCH'],
  ['a Parquet file with another row count', { t: { ...TIERS, rowCount: 2 } }, 'SELECT * FROM t', 'DATASET_ROW_COUNT_MISMATCH'],
];

for (const [name, tables, sql, code] of failures) {
  test(`file inputs: ${name} fails with ${code} and its directory is gone`, async (t) => {
    const inputs = new StaticInputs(tables);
    const { executor, sink } = executorOver(inputs);
    const outcome = await executor.execute(request('s1', 'q', sql));
    t.deepEqual(outcome, { status: 'FAILED', code });
    t.is(sink.read('s1', 'q'), undefined);
    t.false(JSON.stringify(outcome).includes('secret-value'));
    t.is(inputs.targets.length, 1);
    t.false(existsSync(inputs.targets[0]!.directory));
  });
}

test('file inputs: the context directory is gone after success, a query failure, a timeout and an abort', async (t) => {
  const inputs = new StaticInputs({ people: PEOPLE });
  const { executor } = executorOver(inputs, { timeoutMs: 1500 });
  const endless = 'WITH RECURSIVE r(n) AS (SELECT count(*) FROM people UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r';
  t.like(await executor.execute(request('s1', 'ok', 'SELECT count(*) FROM people')), { status: 'SUCCEEDED' });
  t.deepEqual(await executor.execute(request('s1', 'bad', 'SELECT CAST(name AS INTEGER) FROM people')), { status: 'FAILED', code: 'QUERY_FAILED' });
  t.deepEqual(await executor.execute(request('s1', 'slow', endless)), { status: 'FAILED', code: 'QUERY_TIMEOUT' });
  const controller = new AbortController();
  const aborted = executor.execute(request('s1', 'abort', endless, { signal: controller.signal }));
  setTimeout(() => controller.abort(new Error('task request closed')), 400);
  t.deepEqual(await aborted, { status: 'CANCELLED' });
  t.is(inputs.targets.length, 4);
  for (const target of inputs.targets) t.false(existsSync(target.directory), target.directory);
});

test('file inputs: a writer still busy when the clock runs out is stopped; QUERY_TIMEOUT, directory gone', async (t) => {
  const inputs = new StaticInputs({ people: PEOPLE }, { hang: true });
  const { executor } = executorOver(inputs, { timeoutMs: 800 });
  // The writer would wait forever: only the context's clock ends it.
  t.deepEqual(await executor.execute(request('s1', 'q', 'SELECT * FROM people')), { status: 'FAILED', code: 'QUERY_TIMEOUT' });
  t.false(existsSync(inputs.targets[0]!.directory));
});

test('file inputs: an input source that returns other tables or paths than asked fails INTERNAL', async (t) => {
  const base = new StaticInputs({ people: PEOPLE, orders: ORDERS });
  const lying: Array<(files: FileInput[]) => FileInput[]> = [
    (files) => files.map((f) => ({ ...f, name: 'orders' })),
    (files) => [...files, { ...files[0]!, name: 'orders' }],
    (files) => files.map((f) => ({ ...f, file: '/etc/passwd' })),
    (files) => files.map((f) => ({ ...f, columns: [] })),
  ];
  for (const [i, lie] of lying.entries()) {
    const source: InputSource = { tableNames: () => base.tableNames(), materialize: async (request, names, target) => lie(await base.materialize(request, names, target)) };
    const { executor } = executorOver(source);
    t.deepEqual(await executor.execute(request('s1', `lie-${i}`, 'SELECT * FROM people')), { status: 'FAILED', code: 'INTERNAL' }, String(i));
  }
});

test('file inputs: the user SQL cannot read an input file by path (refused by the policy before anything is written)', async (t) => {
  const inputs = new StaticInputs({ people: PEOPLE });
  const { executor } = executorOver(inputs);
  const guess = join(inputDirectoryRoot().path, 'cleanroom-ctx-1-x', 'people.csv');
  for (const sql of [`SELECT * FROM people, read_csv('${guess}')`, `SELECT * FROM '${guess}'`, `SELECT * FROM people, glob('${inputDirectoryRoot().path}/*')`]) {
    t.deepEqual(await executor.execute(request('s1', 'q', sql)), { status: 'FAILED', code: 'POLICY_VIOLATION' }, sql);
  }
  t.is(inputs.targets.length, 0);
});

test('file inputs: the files are deleted once loaded, before the query runs', async (t) => {
  const context = new ExecutionContext({ limits: resolveLimits(TEST_LIMITS), sandbox: NO_SANDBOX });
  try {
    await context.ready;
    context.arm();
    await context.parse('SELECT count(*) FROM people');
    const [input] = await new StaticInputs({ people: PEOPLE }).materialize(request('s1', 'q', ''), ['people'], context.target);
    t.deepEqual(readdirSync(context.directory), ['people.csv']);
    await context.load([input!]);
    t.deepEqual(readdirSync(context.directory), []);
    t.deepEqual((await context.run()).rows, [['3']]);
  } finally {
    await context.dispose();
  }
  t.false(existsSync(context.directory));
});

test('file inputs: a context refuses to load a file outside its directory', async (t) => {
  const context = new ExecutionContext({ limits: resolveLimits(TEST_LIMITS), sandbox: NO_SANDBOX });
  try {
    await context.ready;
    context.arm();
    await context.parse('SELECT 1');
    const columns: FileInput['columns'] = [{ name: 'a', type: 'INTEGER' }];
    for (const file of ['/etc/passwd', join(context.directory, '..', 'x.csv'), join(context.directory, 'other.csv')]) {
      await t.throwsAsync(context.load([{ name: 'x', file, format: 'csv', columns, rowCount: null }]), { instanceOf: TypeError }, file);
    }
  } finally {
    await context.dispose();
  }
});

test('file inputs: an executor removes context directories left by workers that died, never live ones', async (t) => {
  const root = mkdtempSync(join(scratch, 'root-'));
  // A pid far above pid_max is never running.
  mkdirSync(join(root, 'cleanroom-ctx-999999999-dead'));
  mkdirSync(join(root, `cleanroom-ctx-${process.pid}-mine`));
  mkdirSync(join(root, 'cleanroom-ctx-1-init'));
  mkdirSync(join(root, 'unrelated'));
  const executor = createExecutor({
    pool: new ExecutorPool({ maxConcurrent: 1, maxQueued: 1 }),
    inputs: new StaticInputs({}),
    sink: new TestOnlyPlaintextResultSink({ allowTestOnly: true }),
    sandbox: NO_SANDBOX,
    spares: 0,
    inputDirectory: { path: root, tmpfs: false },
  });
  await executor.close();
  t.deepEqual(readdirSync(root).sort(), ['cleanroom-ctx-1-init', `cleanroom-ctx-${process.pid}-mine`, 'unrelated'].sort());
  t.deepEqual(executor.status().inputDirectory, { path: root, tmpfs: false });
});

/** Announces each file as it is written and waits until the context has loaded (deleted) it before writing the next. */
class AnnouncingInputs extends StaticInputs {
  readonly loadedBeforeNextWritten: boolean[] = [];

  override async materialize(req: ExecuteRequest, names: readonly string[], target: InputTarget, ready?: (file: FileInput) => void): Promise<FileInput[]> {
    const files: FileInput[] = [];
    for (const name of names) {
      const [file] = await super.materialize(req, [name], target);
      files.push(file!);
      ready?.(file!);
      // The executor loads an announced file while the source goes on; the context deletes it once loaded.
      const deadline = Date.now() + 10_000;
      while (existsSync(file!.file) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
      this.loadedBeforeNextWritten.push(!existsSync(file!.file));
    }
    return files;
  }
}

test('file inputs: an input the source announces is loaded while the next one is written', async (t) => {
  const inputs = new AnnouncingInputs({ people: PEOPLE, orders: ORDERS, tiers: TIERS });
  const { executor, sink } = executorOver(inputs);
  const sql =
    'SELECT p.name, count(o.id) AS orders, max(t.tier) AS tier FROM people p LEFT JOIN orders o ON o.person_id = p.id LEFT JOIN tiers t ON t.person_id = p.id GROUP BY p.name ORDER BY p.name';
  t.like(await executor.execute(request('s1', 'announced', sql)), { status: 'SUCCEEDED' });
  t.deepEqual(inputs.loadedBeforeNextWritten, [true, true, true]);
  t.deepEqual(sink.read('s1', 'announced')?.rows, [
    ['Ada, A.', '2', 'gold'],
    ['Bo', '1', 'silver'],
    ['Cy', '0', null],
  ]);
});

test('file inputs: an announced input that fails to load ends the query with its own code, and no directory is left', async (t) => {
  const bad = csv('a\n1\n2\n', [{ name: 'a', type: 'INTEGER' }], 3);
  const inputs = new AnnouncingInputs({ t: bad, people: PEOPLE });
  const { executor } = executorOver(inputs);
  t.deepEqual(await executor.execute(request('s1', 'announced-bad', 'SELECT count(*) FROM t, people')), { status: 'FAILED', code: 'DATASET_ROW_COUNT_MISMATCH' });
  t.false(existsSync(inputs.targets[0]!.directory));
});
