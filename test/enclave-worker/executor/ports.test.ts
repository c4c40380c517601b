import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as v from 'valibot';
import { canonicalResultJson, DigestOnlySink } from '../../../enclave-worker/executor/digest-sink.ts';
import { encodeFrame, FrameReader } from '../../../enclave-worker/executor/framing.ts';
import { parseCsv, parseFixture, TestOnlyPlaintextFixtureInputs, TestOnlyPlaintextResultSink } from '../../../enclave-worker/executor/plaintext-fixtures.ts';
import { resolveLimits } from '../../../enclave-worker/executor/limits.ts';
import { InputTableSchema, TableNameSchema } from '../../../enclave-worker/executor/ports.ts';

test('plaintext fixtures: both TEST-ONLY adapters refuse to be built without allowTestOnly', (t) => {
  t.throws(() => new TestOnlyPlaintextFixtureInputs({ directory: '/tmp' } as never), { instanceOf: TypeError, message: /TEST-ONLY/ });
  t.throws(() => new TestOnlyPlaintextResultSink({} as never), { instanceOf: TypeError, message: /TEST-ONLY/ });
  t.throws(() => new TestOnlyPlaintextResultSink({ allowTestOnly: 'yes' } as never), { instanceOf: TypeError });
});

test('plaintext fixtures: CSV cells may hold quotes, commas and newlines; empty unquoted cells are null', (t) => {
  t.deepEqual(parseCsv('a,b,c\r\n"x, ""y""",,""\n"multi\nline",2,3'), [
    ['a', 'b', 'c'],
    ['x, "y"', null, ''],
    ['multi\nline', '2', '3'],
  ]);
  t.deepEqual(parseFixture('t', 'n:INTEGER,big:BIGINT,ok:BOOLEAN,s:VARCHAR\n1,9007199254740993,true,\n'), {
    name: 't',
    columns: [
      { name: 'n', type: 'INTEGER' },
      { name: 'big', type: 'BIGINT' },
      { name: 'ok', type: 'BOOLEAN' },
      { name: 's', type: 'VARCHAR' },
    ],
    rows: [[1, '9007199254740993', true, null]],
  });
  t.throws(() => parseFixture('t', 'n:SOMETYPE\n1\n'), { instanceOf: TypeError });
});

test('plaintext fixtures: a session reads only its own directory; ids cannot climb out', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fixtures-'));
  try {
    mkdirSync(join(dir, 's1'));
    writeFileSync(join(dir, 's1', 'mine.csv'), 'a:INTEGER\n1\n');
    writeFileSync(join(dir, 'top.csv'), 'a:INTEGER\n1\n');
    const inputs = new TestOnlyPlaintextFixtureInputs({ allowTestOnly: true, directory: dir });
    t.deepEqual(await inputs.tableNames('s1'), ['mine']);
    t.deepEqual(await inputs.tableNames('s2'), []);
    t.deepEqual(await inputs.tableNames('..'), []);
    t.deepEqual(await inputs.tableNames('s1/..'), []);
    await t.throwsAsync(inputs.tables('s1', ['top']), { instanceOf: TypeError });
    t.deepEqual(await inputs.tables('s1', ['mine']), [{ name: 'mine', columns: [{ name: 'a', type: 'INTEGER' }], rows: [[1]] }]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('input tables: names are plain identifiers that are not paths or catalog names', (t) => {
  for (const name of ['orders', 'a1', 'customer_list']) t.true(v.is(TableNameSchema, name), name);
  for (const name of ['', 'Orders', '1a', 'x.csv', '/etc/passwd', 'a-b', 'duckdb_tables', 'pg_class', 'information_schema', 'main', 'x'.repeat(64)]) {
    t.false(v.is(TableNameSchema, name), name);
  }
  const table = { name: 't', columns: [{ name: 'a', type: 'INTEGER' }], rows: [[1]] };
  t.true(v.is(InputTableSchema, table));
  t.false(v.is(InputTableSchema, { ...table, rows: [[1, 2]] }));
  t.false(v.is(InputTableSchema, { ...table, columns: [{ name: 'a', type: 'BLOB' }] }));
  t.false(v.is(InputTableSchema, { ...table, columns: [{ name: 'a', type: 'INTEGER' }, { name: 'A', type: 'INTEGER' }] }));
});

test('digest sink: canonical JSON sorts keys and keeps row order; the digest is stable', async (t) => {
  t.is(canonicalResultJson({ columns: [{ type: 'X', name: 'n' }], rows: [[{ b: 1, a: [2, 'x'] }], [null]] }), '{"columns":[{"name":"n","type":"X"}],"rows":[[{"a":[2,"x"],"b":1}],[null]]}');
  const sink = new DigestOnlySink({ capacity: 2 });
  const result = { columns: [{ name: 'n', type: 'INTEGER' }], rows: [[1], [2]], bytes: 9 };
  const first = await sink.write('s', 'q1', result);
  const again = await sink.write('s', 'q2', { ...result, rows: [[1], [2]] });
  t.is(first.ref, again.ref);
  t.regex(first.ref, /^sha256:[0-9a-f]{64}$/);
  t.deepEqual(first, { ref: first.ref, rows: 2, bytes: 9 });
  t.not((await sink.write('s', 'q3', { ...result, rows: [[2], [1]] })).ref, first.ref);
  // Capacity 2: the oldest digest is gone; no rows are kept anywhere.
  t.is(sink.get('s', 'q1'), undefined);
  t.deepEqual(sink.get('s', 'q2'), { rows: 2, bytes: 9, sha256: first.ref.slice(7) });
});

test('framing: frames split across chunks are reassembled; an endless frame is cut off once', (t) => {
  const frames: string[] = [];
  let overflows = 0;
  const reader = new FrameReader(16, (text) => frames.push(text), () => overflows++);
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
