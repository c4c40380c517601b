import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import test from 'ava';
import { describeCsv } from '../../client/sdk/csv-describe.ts';
import { openFileStream } from '../../client/cli/files.ts';
import { describeParquet } from '../../client/cli/parquet.ts';
import { CleanroomError } from '../../protocol/errors.ts';
import { loadFiles } from '../../enclave-worker/executor/load-files.ts';

// The contract between the owner's description and the worker's strict load: whatever describeCsv
// or describeParquet accepts, the worker's loader reads with exactly that schema and row count.

let dir: string;
test.before(() => {
  dir = mkdtempSync(join(tmpdir(), 'cleanroom-csv-'));
});
test.after.always(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const corpus: Array<[string, string | Uint8Array]> = [
  ['every inferred type', 'b,i,l,d,dt,ts,s\ntrue,1,2147483648,1.5,2024-02-29,2024-02-29 23:59:59.123456,x\nFALSE,-2,-9223372036854775808,1e3,1999-12-31,2024-01-01,y\n'],
  ['NULLs and empty strings', 'a,b,c\n1,,""\n,true,\n3,false,z\n'],
  ['quoting and line breaks, CRLF', 'id,note\r\n1,"a, b"\r\n2,"say ""hi"""\r\n3,"two\nlines"\r\n4,"crlf\r\ninside"\r\n'],
  ['no final line break', 'a,b\n1,2'],
  ['header only', 'a,b\n'],
  ['one column with an empty string', 'only\nx\n""\ny\n'],
  ['leading zeros as text', 'zip\n007\n12\n'],
  ['unicode', 'name,n\n"Zoë, café",1\nÅsa,2\n✓,3\n'],
  ['money and exact decimals', 'price,rate,big\n12.50,0.125,12345678901234567890\n3.1,-7,1\n,+0.5,\n'],
  ['a byte order mark', new Uint8Array([0xef, 0xbb, 0xbf, ...new TextEncoder().encode('id,v\n1,a\n')])],
];

for (const [name, csv] of corpus) {
  test(`describeCsv and the worker's CSV loader agree: ${name}`, async (t) => {
    const file = join(dir, `${name.replace(/\W+/g, '-')}.csv`);
    writeFileSync(file, csv);
    const described = await describeCsv(openFileStream(file));
    const instance = await DuckDBInstance.create(':memory:');
    const connection = await instance.connect();
    t.teardown(() => {
      connection.closeSync();
      instance.closeSync();
    });
    await loadFiles(connection, `${dir}/`, [{ name: 't', file, format: 'csv', columns: described.schema, rowCount: described.rowCount }]);
    const columns = (await connection.runAndReadAll('DESCRIBE t')).getRowObjectsJson();
    t.deepEqual(
      columns.map((c) => ({ name: c.column_name, type: c.column_type })),
      described.schema,
    );
  });
}

test("describeParquet and the worker's Parquet loader agree; exact casts are declared as the wider type", async (t) => {
  const file = join(dir, 'typed.parquet');
  const instance = await DuckDBInstance.create(':memory:');
  const connection = await instance.connect();
  t.teardown(() => {
    connection.closeSync();
    instance.closeSync();
  });
  await connection.run(`COPY (SELECT i::BIGINT AS id, (i % 7)::SMALLINT AS small, (i / 3)::FLOAT AS ratio, 'r' || (i % 3) AS region,
    DATE '2024-01-01' + i::INTEGER AS day, TIMESTAMP '2024-01-01 00:00:00' + INTERVAL (i) MINUTE AS at, i % 2 = 0 AS even
    FROM range(1000) t(i)) TO '${file}' (FORMAT parquet)`);
  const described = await describeParquet(file);
  t.is(described.rowCount, 1000);
  t.deepEqual(described.schema, [
    { name: 'id', type: 'BIGINT' },
    { name: 'small', type: 'INTEGER' },
    { name: 'ratio', type: 'DOUBLE' },
    { name: 'region', type: 'VARCHAR' },
    { name: 'day', type: 'DATE' },
    { name: 'at', type: 'TIMESTAMP' },
    { name: 'even', type: 'BOOLEAN' },
  ]);
  await loadFiles(connection, `${dir}/`, [{ name: 't', file, format: 'parquet', columns: described.schema, rowCount: described.rowCount }]);
  t.is((await connection.runAndReadAll('SELECT count(DISTINCT region) FROM t')).getRows()[0]![0], 3n);
});

test('describeParquet: a DECIMAL column is declared as that DECIMAL and loads exactly', async (t) => {
  const file = join(dir, 'money.parquet');
  const instance = await DuckDBInstance.create(':memory:');
  const connection = await instance.connect();
  t.teardown(() => {
    connection.closeSync();
    instance.closeSync();
  });
  await connection.run(`COPY (SELECT (i * 0.05)::DECIMAL(10,2) AS price FROM range(1, 11) t(i)) TO '${file}' (FORMAT parquet)`);
  const described = await describeParquet(file);
  t.deepEqual(described.schema, [{ name: 'price', type: 'DECIMAL(10,2)' }]);
  await loadFiles(connection, `${dir}/`, [{ name: 'prices', file, format: 'parquet', columns: described.schema, rowCount: described.rowCount }]);
  t.is((await connection.runAndReadAll('SELECT sum(price)::VARCHAR FROM prices')).getRows()[0]![0], '2.75');
  // Declared as another DECIMAL, the same file is refused: no rounding cast.
  await t.throwsAsync(loadFiles(connection, `${dir}/`, [{ name: 'prices2', file, format: 'parquet', columns: [{ name: 'price', type: 'DECIMAL(9,1)' }], rowCount: null }]), {
    code: 'DATASET_SCHEMA_MISMATCH',
  });
});

test('describeParquet: an unsupported column type is VALIDATION_FAILED; a file that is not Parquet is DATASET_MALFORMED', async (t) => {
  const file = join(dir, 'list.parquet');
  const instance = await DuckDBInstance.create(':memory:');
  const connection = await instance.connect();
  t.teardown(() => {
    connection.closeSync();
    instance.closeSync();
  });
  await connection.run(`COPY (SELECT [1, 2] AS list) TO '${file}' (FORMAT parquet)`);
  t.is(((await t.throwsAsync(describeParquet(file))) as CleanroomError).code, 'VALIDATION_FAILED');
  const text = join(dir, 'not.parquet');
  writeFileSync(text, 'a,b\n1,2\n');
  t.is(((await t.throwsAsync(describeParquet(text))) as CleanroomError).code, 'DATASET_MALFORMED');
});
