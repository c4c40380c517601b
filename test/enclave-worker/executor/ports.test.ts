import test from 'ava';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as v from 'valibot';
import { canonicalResultJson, DigestOnlySink } from '../../../enclave-worker/executor/digest-sink.ts';
import { encodeFrame, FrameReader } from '../../../enclave-worker/executor/framing.ts';
import { createInputFile } from '../../../enclave-worker/executor/input-files.ts';
import { parseFixture, TestOnlyPlaintextFixtureInputs, TestOnlyPlaintextResultSink } from '../../../enclave-worker/executor/plaintext-fixtures.ts';
import { resolveLimits } from '../../../enclave-worker/executor/limits.ts';
import { FileInputSchema, type ExecuteRequest } from '../../../enclave-worker/executor/ports.ts';
import { TableNameSchema } from '../../../protocol/dataset.ts';

test('plaintext fixtures: both TEST-ONLY adapters refuse to be built without allowTestOnly', (t) => {
  t.throws(() => new TestOnlyPlaintextFixtureInputs({ directory: '/tmp' } as never), { instanceOf: TypeError, message: /TEST-ONLY/ });
  t.throws(() => new TestOnlyPlaintextResultSink({} as never), { instanceOf: TypeError, message: /TEST-ONLY/ });
  t.throws(() => new TestOnlyPlaintextResultSink({ allowTestOnly: 'yes' } as never), { instanceOf: TypeError });
});

test('plaintext fixtures: the name:TYPE header row gives the declared columns; the rows are kept as they are', (t) => {
  t.deepEqual(parseFixture('n:INTEGER,big:BIGINT,ok:BOOLEAN,s:VARCHAR\r\n1,9007199254740993,true,"a, b"\n'), {
    columns: [
      { name: 'n', type: 'INTEGER' },
      { name: 'big', type: 'BIGINT' },
      { name: 'ok', type: 'BOOLEAN' },
      { name: 's', type: 'VARCHAR' },
    ],
    body: '1,9007199254740993,true,"a, b"\n',
  });
  t.throws(() => parseFixture('n:SOMETYPE\n1\n'), { instanceOf: TypeError });
  t.throws(() => parseFixture('n\n1\n'), { instanceOf: TypeError });
  t.throws(() => parseFixture(''), { instanceOf: TypeError });
});

test('plaintext fixtures: a session reads only its own directory; ids cannot climb out', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fixtures-'));
  const target = mkdtempSync(join(tmpdir(), 'fixtures-target-'));
  try {
    mkdirSync(join(dir, 's1'));
    writeFileSync(join(dir, 's1', 'mine.csv'), 'a:INTEGER,b x:VARCHAR\n1,x\n');
    writeFileSync(join(dir, 'top.csv'), 'a:INTEGER\n1\n');
    const inputs = new TestOnlyPlaintextFixtureInputs({ allowTestOnly: true, directory: dir });
    const req = (sessionId: string) => ({ sessionId, queryId: 'q', attempt: 1, sql: 'SELECT 1', inputs: [], recipients: [] });
    t.deepEqual(await inputs.tableNames(req('s1')), ['mine']);
    t.deepEqual(await inputs.tableNames(req('s2')), []);
    t.deepEqual(await inputs.tableNames(req('..')), []);
    t.deepEqual(await inputs.tableNames(req('s1/..')), []);
    await t.throwsAsync(inputs.materialize(req('s1'), ['top'], { directory: target }), { instanceOf: TypeError });
    const [file] = await inputs.materialize(req('s1'), ['mine'], { directory: target });
    t.deepEqual(file, {
      name: 'mine',
      file: join(target, 'mine.csv'),
      format: 'csv',
      columns: [
        { name: 'a', type: 'INTEGER' },
        { name: 'b x', type: 'VARCHAR' },
      ],
      rowCount: null,
    });
    // A plain header row of names, then the rows as they were; readable by its owner only.
    t.is(readFileSync(join(target, 'mine.csv'), 'utf8'), 'a,b x\n1,x\n');
    t.is(statSync(join(target, 'mine.csv')).mode & 0o777, 0o400);
    // Never over an existing file.
    await t.throwsAsync(inputs.materialize(req('s1'), ['mine'], { directory: target }), { code: 'EEXIST' });
  } finally {
    rmSync(dir, { recursive: true, force: true });
    rmSync(target, { recursive: true, force: true });
  }
});

test('input files: names are plain identifiers that are not paths or catalog names', async (t) => {
  for (const name of ['orders', 'a1', 'customer_list']) t.true(v.is(TableNameSchema, name), name);
  for (const name of ['', 'Orders', '1a', 'x.csv', '/etc/passwd', 'a-b', 'duckdb_tables', 'pg_class', 'information_schema', 'main', 'x'.repeat(64)]) {
    t.false(v.is(TableNameSchema, name), name);
  }
  const input = { name: 't', file: '/dev/shm/x/t.csv', format: 'csv', columns: [{ name: 'a', type: 'INTEGER' }], rowCount: 1 };
  t.true(v.is(FileInputSchema, input));
  t.true(v.is(FileInputSchema, { ...input, rowCount: null }));
  t.false(v.is(FileInputSchema, { ...input, name: '../t' }));
  t.false(v.is(FileInputSchema, { ...input, format: 'json' }));
  t.false(v.is(FileInputSchema, { ...input, columns: [{ name: 'a', type: 'BLOB' }] }));
  t.false(
    v.is(FileInputSchema, {
      ...input,
      columns: [
        { name: 'a', type: 'INTEGER' },
        { name: 'A', type: 'INTEGER' },
      ],
    }),
  );
  t.false(v.is(FileInputSchema, { ...input, columns: [{ name: 'a"b', type: 'INTEGER' }] }));
  t.false(v.is(FileInputSchema, { ...input, rowCount: -1 }));
  // The file name is the table's: nothing else can be created in a context directory.
  const target = mkdtempSync(join(tmpdir(), 'input-file-'));
  try {
    for (const name of ['../escape', 'a/b', 'X']) await t.throwsAsync(createInputFile({ directory: target }, name, 'csv'), { instanceOf: TypeError }, name);
    await t.throwsAsync(createInputFile({ directory: target }, 't', 'exe' as never), { instanceOf: TypeError });
    t.deepEqual(readdirSync(target), []);
  } finally {
    rmSync(target, { recursive: true, force: true });
  }
});

test('digest sink: canonical JSON sorts keys and keeps row order; the digest is stable', async (t) => {
  t.is(canonicalResultJson({ columns: [{ type: 'X', name: 'n' }], rows: [[{ b: 1, a: [2, 'x'] }], [null]] }), '{"columns":[{"name":"n","type":"X"}],"rows":[[{"a":[2,"x"],"b":1}],[null]]}');
  const sink = new DigestOnlySink({ capacity: 2 });
  const q = (queryId: string): ExecuteRequest => ({ sessionId: 's', queryId, attempt: 1, sql: 'SELECT 1', inputs: [], recipients: [] });
  const result = { columns: [{ name: 'n', type: 'INTEGER' }], rows: [[1], [2]], bytes: 9 };
  const first = await sink.write(q('q1'), result);
  const again = await sink.write(q('q2'), { ...result, rows: [[1], [2]] });
  t.is(first.ref, again.ref);
  t.regex(first.ref, /^sha256:[0-9a-f]{64}$/);
  t.deepEqual(first, { ref: first.ref, rows: 2, bytes: 9 });
  t.not((await sink.write(q('q3'), { ...result, rows: [[2], [1]] })).ref, first.ref);
  // Capacity 2: the oldest digest is gone; no rows are kept anywhere.
  t.is(sink.get('s', 'q1'), undefined);
  t.deepEqual(sink.get('s', 'q2'), { rows: 2, bytes: 9, sha256: first.ref.slice(7) });
});

test('framing: frames split across chunks are reassembled; an endless frame is cut off once', (t) => {
  const frames: string[] = [];
  let overflows = 0;
  const reader = new FrameReader(
    16,
    (text) => frames.push(text),
    () => overflows++,
  );
  const bytes = Buffer.from(encodeFrame({ a: 1 }) + encodeFrame({ b: 'x' }));
  reader.push(bytes.subarray(0, 3));
  reader.push(bytes.subarray(3, 11));
  reader.push(bytes.subarray(11));
  t.deepEqual(frames, ['{"a":1}', '{"b":"x"}']);
  reader.push(Buffer.from('x'.repeat(10)));
  reader.push(Buffer.from('x'.repeat(10)));
  reader.push(Buffer.from('\n{"c":2}\n'));
  t.is(overflows, 1);
  t.deepEqual(frames, ['{"a":1}', '{"b":"x"}']);
});

test('limits: the resident-memory cap follows the DuckDB and heap budgets unless set', (t) => {
  t.is(resolveLimits().rssLimitMb, 1024);
  t.is(resolveLimits({ memoryLimitMb: 2048 }).rssLimitMb, 2048 + 256 + 256);
  t.is(resolveLimits({ memoryLimitMb: 2048, rssLimitMb: 300 }).rssLimitMb, 300);
  t.throws(() => resolveLimits({ threads: 0 }), { instanceOf: TypeError });
});
