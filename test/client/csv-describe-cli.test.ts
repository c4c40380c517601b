import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import test from 'ava';
import { describeCsvFile } from '../../client/cli/csv-duckdb.ts';
import { openFileStream } from '../../client/cli/files.ts';
import { describeCsv } from '../../client/sdk/csv-describe.ts';
import { loadFiles } from '../../enclave-worker/executor/load-files.ts';
import type { CsvDialect } from '../../protocol/csv-dialect.ts';
import type { ErrorCode } from '../../protocol/errors.ts';

// The CLI's CSV describer (DuckDB's sniffer, then one strict pass with the worker's options):
// it agrees with the SDK's reader on comma files, finds other dialects, and whatever it accepts
// the worker's loader reads with exactly that dialect, schema and row count.

let dir: string;
test.before(() => {
  dir = mkdtempSync(join(tmpdir(), 'cleanroom-csv-cli-'));
});
test.after.always(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

let counter = 0;
function write(content: string | Uint8Array): string {
  const path = join(dir, `f${counter++}.csv`);
  writeFileSync(path, content);
  return path;
}

/** Loads `path` as the worker would with what the describer said, and returns the loaded table's columns. */
async function loadAsWorker(path: string, described: Awaited<ReturnType<typeof describeCsvFile>>) {
  const instance = await DuckDBInstance.create(':memory:');
  const connection = await instance.connect();
  try {
    await loadFiles(connection, `${dir}/`, [{ name: 't', file: path, format: 'csv', ...(described.csv ? { csv: described.csv } : {}), columns: described.schema, rowCount: described.rowCount }]);
    return (await connection.runAndReadAll('DESCRIBE t')).getRowObjectsJson().map((c) => ({ name: c.column_name, type: c.column_type }));
  } finally {
    connection.closeSync();
    instance.closeSync();
  }
}

const RFC4180: CsvDialect = { delimiter: ',', quote: '"', escape: '"', header: true };

// Comma files both readers take: the same schema, rows and dialect.
const commaCorpus: Array<[string, string | Uint8Array]> = [
  ['every inferred type', 'b,i,l,d,dt,ts,s\ntrue,1,2147483648,1.5,2024-02-29,2024-02-29 23:59:59.123456,x\nFALSE,-2,-9223372036854775808,1e3,1999-12-31,2024-01-01,y\n'],
  ['money', 'item,price\na,12.50\nb,0.10\nc,1000\n'],
  ['exact decimals of every size', 'a,b,c,d\n+0.5,12345678901234567890,1234567890123456789012345678.0123456789,0.1\n-1.25,-1,1,1e2\n'],
  ['NULLs and empty strings', 'a,b,c\n1,,""\n,true,\n3,false,z\n'],
  ['quoting and line breaks, CRLF', 'id,note\r\n1,"a, b"\r\n2,"say ""hi"""\r\n3,"two\nlines"\r\n4,"crlf\r\ninside"\r\n'],
  ['no final line break', 'a,b\n1,2'],
  ['leading zeros as text', 'zip\n007\n12\n'],
  ['not a calendar date, hour 24, year 0', 'd,t,z\n2023-02-29,2024-01-01 24:00:00,0000-01-01\n2024-01-01,2024-01-01 10:00:00,2024-01-01\n'],
  ['booleans and numbers mixed', 'a,b\ntrue,1\n1,x\n'],
  ['past 64 bits and 38 digits', 'a,b\n9223372036854775808,123456789012345678901234567890123456789\n'],
  ['unicode', 'name,n\n"Zoë, café",1\nÅsa,2\n✓,3\n'],
  ['a byte order mark', new Uint8Array([0xef, 0xbb, 0xbf, ...new TextEncoder().encode('id,v\n1,a\n')])],
];
for (const [name, content] of commaCorpus) {
  test(`cli csv describer: agrees with the SDK's reader and the worker's loader on ${name}`, async (t) => {
    const path = write(content);
    const cli = await describeCsvFile(path);
    const sdk = await describeCsv(openFileStream(path));
    t.deepEqual(cli, sdk);
    t.deepEqual(cli.csv, RFC4180);
    t.deepEqual(await loadAsWorker(path, cli), cli.schema);
  });
}

const dialects: Array<[string, string, Partial<CsvDialect>, string[], number]> = [
  ['semicolons with quoted semicolons', 'id;amount;name\n1;12.50;"a;b"\n2;3.10;x\n', { delimiter: ';' }, ['INTEGER', 'DECIMAL(4,2)', 'VARCHAR'], 2],
  ['tabs', 'id\tamount\tname\n1\t12.50\ta b\n2\t3.1\t"c\td"\n', { delimiter: '\t' }, ['INTEGER', 'DECIMAL(4,2)', 'VARCHAR'], 2],
  ['pipes', 'a|b\n1|x\n2|y\n3|z\n', { delimiter: '|' }, ['INTEGER', 'VARCHAR'], 3],
  ['a decimal comma stays text', 'id;amount\n1;12,50\n2;3,10\n', { delimiter: ';' }, ['INTEGER', 'VARCHAR'], 2],
  ['a tab file with a stray quote inside a field', 'id\tname\n1\t5" screen\n2\tb\n', { delimiter: '\t' }, ['INTEGER', 'VARCHAR'], 2],
];
for (const [name, content, dialect, types, rows] of dialects) {
  test(`cli csv describer: finds the dialect of ${name}, and the worker loads it so`, async (t) => {
    const path = write(content);
    const described = await describeCsvFile(path);
    t.like(described.csv, dialect);
    t.deepEqual(
      described.schema.map((c) => c.type),
      types,
    );
    t.is(described.rowCount, rows);
    t.deepEqual(await loadAsWorker(path, described), described.schema);
  });
}

test('cli csv describer: --delimiter and --no-header override the sniffer', async (t) => {
  const path = write('1,12.50\n2,3\n3,4.25\n');
  const headless = await describeCsvFile(path, { header: false });
  t.is(headless.csv?.header, false);
  t.deepEqual(headless.schema, [
    { name: 'column0', type: 'INTEGER' },
    { name: 'column1', type: 'DECIMAL(4,2)' },
  ]);
  t.is(headless.rowCount, 3);
  t.deepEqual(await loadAsWorker(path, headless), headless.schema);

  // A file where a comma appears in every line but the columns are separated by semicolons.
  const semi = write('a;b\n1,5;x\n2,5;y\n');
  const forced = await describeCsvFile(semi, { delimiter: ';' });
  t.is(forced.csv?.delimiter, ';');
  t.deepEqual(
    forced.schema.map((c) => c.name),
    ['a', 'b'],
  );
});

const refusals: Array<[string, string, ErrorCode]> = [
  ['an empty file', '', 'DATASET_MALFORMED'],
  ['a row with too many cells', 'a,b\n1,2\n3,4,5\n', 'DATASET_MALFORMED'],
  ['an unterminated quote', 'a,b\n1,"open\n2,3\n', 'DATASET_MALFORMED'],
  ['lines before the header', 'exported by tool\nsecond junk line\na,b\n1,2\n3,4\n', 'DATASET_MALFORMED'],
  ['a duplicate column name', 'a,A\n1,2\n', 'VALIDATION_FAILED'],
  ['an empty column name', 'a,,c\n1,2,3\n', 'VALIDATION_FAILED'],
];
for (const [name, content, code] of refusals) {
  test(`cli csv describer: refuses ${name} with ${code} before anything is encrypted`, async (t) => {
    await t.throwsAsync(describeCsvFile(write(content)), { code });
  });
}
