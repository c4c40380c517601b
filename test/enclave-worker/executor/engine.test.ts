import test from 'ava';
import type { DuckDBConnection } from '@duckdb/node-api';
import { CleanroomError } from '../../../protocol/errors.ts';
import { failureCode, loadTables, openLockedDatabase, runSelect } from '../../../enclave-worker/executor/engine.ts';

// The child's DuckDB, driven in this process: the lock-down holds even for SQL that the policy
// would have refused (the second wall), and failures map to fixed codes by type alone. One
// connection runs one query at a time (a new query ends a streaming one), so these tests are serial.
let connection: DuckDBConnection;
test.before(async () => {
  connection = await openLockedDatabase({ threads: 1, memoryLimitMb: 64 });
  await loadTables(connection, [
    {
      name: 't',
      columns: [
        { name: 'i', type: 'INTEGER' },
        { name: 'b', type: 'BIGINT' },
        { name: 'd', type: 'DOUBLE' },
        { name: 's', type: 'VARCHAR' },
        { name: 'day', type: 'DATE' },
        { name: 'ts', type: 'TIMESTAMP' },
        { name: 'ok', type: 'BOOLEAN' },
      ],
      rows: [
        [1, '9007199254740993', 1.5, 'secret-value', '2024-02-29', '2024-02-29T12:34:56.789012Z', true],
        [null, null, null, null, null, null, null],
      ],
    },
  ]);
});

async function codeOf(sql: string): Promise<string> {
  try {
    await connection.run(sql);
    return 'ran';
  } catch (error) {
    return failureCode(error);
  }
}

const lockedDown: Array<[string, string, string]> = [
  ['a file read', "SELECT * FROM read_csv('/etc/passwd')", 'POLICY_VIOLATION'],
  ['a quoted path', "SELECT * FROM '/etc/passwd'", 'QUERY_FAILED'],
  ['glob', "SELECT * FROM glob('/*')", 'POLICY_VIOLATION'],
  ['turning external access back on', 'SET enable_external_access = true', 'QUERY_FAILED'],
  ['unlocking the configuration', 'SET lock_configuration = false', 'QUERY_FAILED'],
  ['raising the memory limit', "SET memory_limit = '10GB'", 'QUERY_FAILED'],
  ['re-enabling the local file system', "SET disabled_filesystems = ''", 'QUERY_FAILED'],
  ['COPY TO a file', "COPY t TO '/tmp/engine-test-leak.csv'", 'POLICY_VIOLATION'],
  ['INSTALL', 'INSTALL httpfs', 'POLICY_VIOLATION'],
  ['LOAD', 'LOAD httpfs', 'POLICY_VIOLATION'],
];

for (const [name, sql, code] of lockedDown) {
  test.serial(`engine lock-down: ${name} fails (${code}) even without the policy`, async (t) => {
    t.is(await codeOf(sql), code);
  });
}

test.serial('engine: the configuration reads as locked down', async (t) => {
  const reader = await connection.runAndReadAll(
    "SELECT current_setting('enable_external_access'), current_setting('lock_configuration'), current_setting('autoload_known_extensions'), current_setting('autoinstall_known_extensions'), current_setting('temp_directory'), current_setting('threads')",
  );
  t.deepEqual(reader.getRowsJson()[0], [false, true, false, false, '', '1']);
});

test.serial('engine: values come back JSON-safe with exact integers and ISO dates', async (t) => {
  const result = await runSelect(connection, 'SELECT i, b, d, s, day, ts, ok, 1.25::DECIMAL(5,2) AS dec FROM t ORDER BY i NULLS LAST', { maxRows: 10, maxBytes: 10_000 });
  t.deepEqual(result.rows, [
    [1, '9007199254740993', 1.5, 'secret-value', '2024-02-29', '2024-02-29 12:34:56.789012', true, '1.25'],
    [null, null, null, null, null, null, null, '1.25'],
  ]);
  t.is(result.bytes, Buffer.byteLength(JSON.stringify(result.rows)));
  t.deepEqual(
    result.columns.map((c) => c.type),
    ['INTEGER', 'BIGINT', 'DOUBLE', 'VARCHAR', 'DATE', 'TIMESTAMP', 'BOOLEAN', 'DECIMAL(5,2)'],
  );
});

test.serial('engine: the row and byte caps stop a result instead of truncating it', async (t) => {
  const rows = await t.throwsAsync(runSelect(connection, 'SELECT unnest(range(11))', { maxRows: 10, maxBytes: 10_000 }), { instanceOf: CleanroomError });
  t.is(rows.code, 'RESULT_TOO_LARGE');
  const bytes = await t.throwsAsync(runSelect(connection, "SELECT repeat('x', 2000)", { maxRows: 10, maxBytes: 1024 }), { instanceOf: CleanroomError });
  t.is(bytes.code, 'RESULT_TOO_LARGE');
});

test.serial('engine: the engine itself refuses anything but one SELECT', async (t) => {
  for (const sql of ['SELECT 1; SELECT 2', 'CREATE TABLE x (a INTEGER)', "ATTACH ':memory:' AS m"]) {
    t.is((await t.throwsAsync(runSelect(connection, sql, { maxRows: 10, maxBytes: 1024 }), { instanceOf: CleanroomError })).code, 'POLICY_VIOLATION', sql);
  }
});

test.serial('engine: an error that quotes a row value maps to a bare code', async (t) => {
  const error = await t.throwsAsync(connection.run('SELECT CAST(s AS INTEGER) FROM t'));
  // DuckDB's own message carries the value; only the code leaves the context.
  t.true(error.message.includes('secret-value'));
  t.is(failureCode(error), 'QUERY_FAILED');
});

test('engine: failures map to fixed codes by type only', (t) => {
  const duck = (type: string): Error => new Error(JSON.stringify({ exception_type: type, exception_message: 'value 42 quoted' }));
  t.is(failureCode(duck('Out of Memory')), 'QUERY_MEMORY_LIMIT');
  t.is(failureCode(duck('Interrupt')), 'QUERY_TIMEOUT');
  t.is(failureCode(duck('Permission')), 'POLICY_VIOLATION');
  t.is(failureCode(duck('Conversion')), 'QUERY_FAILED');
  t.is(failureCode(new Error('Conversion Error: not JSON')), 'QUERY_FAILED');
  t.is(failureCode(new RangeError('Invalid string length')), 'RESULT_TOO_LARGE');
  t.is(failureCode(new RangeError('Maximum call stack size exceeded')), 'QUERY_FAILED');
  t.is(failureCode(new CleanroomError('RESULT_TOO_LARGE', 'x')), 'RESULT_TOO_LARGE');
  t.is(failureCode(new CleanroomError('INTERNAL', 'x')), 'QUERY_FAILED');
  t.is(failureCode('a string'), 'QUERY_FAILED');
});

test.serial('engine: an input value that does not fit its column type fails the load', async (t) => {
  const load = (value: unknown) => loadTables(connection, [{ name: `bad_${crypto.randomUUID().slice(0, 8)}`, columns: [{ name: 'i', type: 'INTEGER' }], rows: [[value as number]] }]);
  for (const value of ['1', 2 ** 31, 1.5, true]) {
    t.is((await t.throwsAsync(load(value), { instanceOf: CleanroomError })).code, 'QUERY_FAILED');
  }
});
