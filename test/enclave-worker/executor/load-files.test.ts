import test from 'ava';
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';
import { mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CleanroomError } from '../../../protocol/errors.ts';
import { failureCode, openLockedDatabase, runSelect } from '../../../enclave-worker/executor/engine.ts';
import { createContextDirectory, inputDirectoryRoot } from '../../../enclave-worker/executor/input-files.ts';
import { loadFiles, warmUp } from '../../../enclave-worker/executor/load-files.ts';
import type { FileInput } from '../../../enclave-worker/executor/ports.ts';
import { WARM_UP_CSV, WARM_UP_FILES, WARM_UP_PARQUET_BASE64 } from '../../../enclave-worker/executor/warm-up.ts';

// The child's loading path, driven in this process against a real context directory: our SQL
// reads the files strictly, checks them against the declared columns and row count, and the
// database can open nothing outside that directory. Each test gets a fresh database.

const directory = createContextDirectory(inputDirectoryRoot().path);
const scratch = mkdtempSync(join(inputDirectoryRoot().path, 'load-files-test-'));
test.after.always(() => {
  rmSync(directory, { recursive: true, force: true });
  rmSync(scratch, { recursive: true, force: true });
});

let counter = 0;
/** Writes `content` as a new input file in the directory and returns its FileInput. */
function file(content: string | Uint8Array, input: Omit<FileInput, 'file' | 'name'> & { name?: string }): FileInput {
  const name = input.name ?? `t${counter++}`;
  const path = join(directory, `${name}.${input.format}`);
  writeFileSync(path, content, { mode: 0o400 });
  return { ...input, name, file: path };
}

const open = (): Promise<DuckDBConnection> => openLockedDatabase({ threads: 1, memoryLimitMb: 64, directory: `${directory}/` });

async function rows(connection: DuckDBConnection, sql: string): Promise<unknown[][]> {
  return (await runSelect(connection, sql, { maxRows: 100, maxBytes: 100_000 })).rows;
}

async function loadCode(input: FileInput): Promise<string> {
  const connection = await open();
  try {
    await loadFiles(connection, `${directory}/`, [input]);
    return 'loaded';
  } catch (error) {
    return error instanceof CleanroomError ? error.code : `not a CleanroomError: ${String(error)}`;
  } finally {
    connection.closeSync();
  }
}

/** Parquet bytes written by an unrestricted in-process DuckDB (test-time only). */
async function parquet(select: string): Promise<Uint8Array> {
  const connection = await (await DuckDBInstance.create(':memory:')).connect();
  const path = join(scratch, `${crypto.randomUUID()}.parquet`);
  await connection.run(`COPY (${select}) TO '${path}' (FORMAT parquet)`);
  connection.closeSync();
  return readFileSync(path);
}

const PEOPLE = [
  { name: 'id', type: 'INTEGER' },
  { name: 'name', type: 'VARCHAR' },
  { name: 'big', type: 'BIGINT' },
  { name: 'ok', type: 'BOOLEAN' },
  { name: 'day', type: 'DATE' },
  { name: 'ts', type: 'TIMESTAMP' },
  { name: 'score', type: 'DOUBLE' },
] as const satisfies FileInput['columns'];

test('load files: a CSV loads with its declared types; quotes, commas, newlines, NULL and empty strings', async (t) => {
  const csv = [
    'id,name,big,ok,day,ts,score',
    '1,"Smith, ""Jo""",9007199254740993,true,2024-02-29,2024-02-29 12:34:56.789012,1.5',
    '2,"two\nlines",-9223372036854775808,false,1970-01-01,1970-01-01 00:00:00,-0.25',
    '3,"",,,,,',
    '',
  ].join('\n');
  const connection = await open();
  try {
    await loadFiles(connection, `${directory}/`, [file(csv, { name: 'people', format: 'csv', columns: [...PEOPLE], rowCount: 3 })]);
    t.deepEqual(await rows(connection, 'SELECT * FROM people ORDER BY id'), [
      [1, 'Smith, "Jo"', '9007199254740993', true, '2024-02-29', '2024-02-29 12:34:56.789012', 1.5],
      [2, 'two\nlines', '-9223372036854775808', false, '1970-01-01', '1970-01-01 00:00:00', -0.25],
      // `""` is an empty string, an empty unquoted cell is NULL.
      [3, '', null, null, null, null, null],
    ]);
    const types = await rows(connection, "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'people' ORDER BY ordinal_position");
    t.deepEqual(
      types,
      PEOPLE.map((c) => [c.name, c.type]),
    );
  } finally {
    connection.closeSync();
  }
});

const csvCases: Array<[string, string, number | null, string]> = [
  ['a row with an extra cell', 'a,b\n1,x\n2,y,z\n', null, 'DATASET_MALFORMED'],
  ['a row with a missing cell', 'a,b\n1,x\n2\n', null, 'DATASET_MALFORMED'],
  ['a value that is not its type', 'a,b\n1,x\ntwo,y\n', null, 'DATASET_MALFORMED'],
  ['an INTEGER out of range', 'a,b\n2147483648,x\n', null, 'DATASET_MALFORMED'],
  ['an unterminated quote', 'a,b\n1,"x\n', null, 'DATASET_MALFORMED'],
  ['a header naming other columns', 'a,c\n1,x\n', null, 'DATASET_SCHEMA_MISMATCH'],
  ['a header in another order', 'b,a\n1,x\n', null, 'DATASET_SCHEMA_MISMATCH'],
  ['a header with an extra column', 'a,b,c\n1,x\n', null, 'DATASET_SCHEMA_MISMATCH'],
  ['a header in another case', 'A,b\n1,x\n', null, 'DATASET_SCHEMA_MISMATCH'],
  ['no header at all', '', null, 'DATASET_SCHEMA_MISMATCH'],
  ['fewer rows than declared', 'a,b\n1,x\n', 2, 'DATASET_ROW_COUNT_MISMATCH'],
  ['more rows than declared', 'a,b\n1,x\n2,y\n', 1, 'DATASET_ROW_COUNT_MISMATCH'],
  ['the declared row count', 'a,b\n1,x\n2,y\n', 2, 'loaded'],
  ['CRLF line ends throughout', 'a,b\r\n1,x\r\n2,y\r\n', 2, 'loaded'],
  ['mixed line ends', 'a,b\n1,x\r\n2,y\n', null, 'DATASET_MALFORMED'],
  ['only a header, zero rows declared', 'a,b\n', 0, 'loaded'],
  ['gzip bytes named .csv (never decompressed)', '\u001f\u008b\u0008\u0000', null, 'DATASET_SCHEMA_MISMATCH'],
];

for (const [name, content, rowCount, code] of csvCases) {
  test(`load files: CSV with ${name} → ${code}`, async (t) => {
    const columns: FileInput['columns'] = [
      { name: 'a', type: 'INTEGER' },
      { name: 'b', type: 'VARCHAR' },
    ];
    t.is(await loadCode(file(content, { format: 'csv', columns, rowCount })), code);
  });
}

const SEMICOLON = { delimiter: ';', quote: '"', escape: '"', header: true } as const;
const TAB = { delimiter: '\t', quote: '"', escape: '"', header: true } as const;
const AB: FileInput['columns'] = [
  { name: 'a', type: 'INTEGER' },
  { name: 'b', type: 'VARCHAR' },
];

test('load files: a CSV loads under its declared dialect: semicolon, tab, single quotes with backslash escapes, no header row', async (t) => {
  const connection = await open();
  try {
    await loadFiles(connection, `${directory}/`, [
      file('a;b\n1;"x;y"\n2;z\n', { name: 'semicolons', format: 'csv', csv: SEMICOLON, columns: AB, rowCount: 2 }),
      file('a\tb\n1\tx,y\n2\t"q\tr"\n', { name: 'tabs', format: 'csv', csv: TAB, columns: AB, rowCount: 2 }),
      file("a|b\n1|'it\\'s'\n", { name: 'pipes', format: 'csv', csv: { delimiter: '|', quote: "'", escape: '\\', header: true }, columns: AB, rowCount: 1 }),
      file('1,x\n2,y\n', { name: 'headless', format: 'csv', csv: { delimiter: ',', quote: '"', escape: '"', header: false }, columns: AB, rowCount: 2 }),
    ]);
    t.deepEqual(await rows(connection, 'SELECT a, b FROM semicolons ORDER BY a'), [
      [1, 'x;y'],
      [2, 'z'],
    ]);
    t.deepEqual(await rows(connection, 'SELECT a, b FROM tabs ORDER BY a'), [
      [1, 'x,y'],
      [2, 'q\tr'],
    ]);
    t.deepEqual(await rows(connection, 'SELECT a, b FROM pipes'), [[1, "it's"]]);
    t.deepEqual(await rows(connection, 'SELECT a, b FROM headless ORDER BY a'), [
      [1, 'x'],
      [2, 'y'],
    ]);
  } finally {
    connection.closeSync();
  }
});

test('load files: a file written in another dialect than declared fails with a DATASET_* code, never loads as something else', async (t) => {
  // A comma file declared as semicolon: one cell per row where two are declared.
  t.is(await loadCode(file('a,b\n1,x\n', { format: 'csv', csv: SEMICOLON, columns: AB, rowCount: 1 })), 'DATASET_MALFORMED');
  // A semicolon file loaded as the default comma (a registration without a dialect).
  t.is(await loadCode(file('a;b\n1;x\n', { format: 'csv', columns: AB, rowCount: 1 })), 'DATASET_MALFORMED');
  // A tab file declared as comma whose header happens to be one cell: the header check refuses it.
  t.is(await loadCode(file('a\tb\n1\tx\n', { format: 'csv', csv: { ...SEMICOLON, delimiter: ',' }, columns: AB, rowCount: 1 })), 'DATASET_MALFORMED');
  // Declared without a header row, a file with one: its header is a row whose `a` is not an INTEGER.
  t.is(await loadCode(file('a,b\n1,x\n', { format: 'csv', csv: { ...SEMICOLON, delimiter: ',', header: false }, columns: AB, rowCount: 1 })), 'DATASET_MALFORMED');
});

test('load files: DECIMAL(p,s) columns load exactly from CSV, and a sum of money stays exact', async (t) => {
  const connection = await open();
  try {
    const columns: FileInput['columns'] = [
      { name: 'item', type: 'VARCHAR' },
      { name: 'price', type: 'DECIMAL(6,2)' },
    ];
    await loadFiles(connection, `${directory}/`, [file('item,price\na,12.50\nb,0.10\nc,0.20\nd,\n', { name: 'prices', format: 'csv', columns, rowCount: 4 })]);
    // 0.1 + 0.2 is 0.30000000000000004 in DOUBLE; in DECIMAL it is 0.30, and the total 12.80.
    t.deepEqual(await rows(connection, "SELECT sum(price), sum(price) FILTER (WHERE item IN ('b', 'c')) FROM prices"), [['12.80', '0.30']]);
    t.deepEqual(await rows(connection, "SELECT data_type FROM information_schema.columns WHERE table_name = 'prices' AND column_name = 'price'"), [['DECIMAL(6,2)']]);
  } finally {
    connection.closeSync();
  }
  // More digits than declared is refused, never rounded; so is anything but a plain decimal.
  const money: FileInput['columns'] = [{ name: 'a', type: 'DECIMAL(4,2)' }, AB[1]!];
  for (const cell of ['1.234', '123.4', '1e2', '01.5', '1.', '.5', 'x', '""']) {
    t.is(await loadCode(file(`a,b\n${cell},x\n`, { format: 'csv', columns: money, rowCount: 1 })), 'DATASET_MALFORMED', cell);
  }
  for (const cell of ['12.34', '-12.3', '+0.5', '7', '"12.5"']) {
    t.is(await loadCode(file(`a,b\n${cell},x\n`, { format: 'csv', columns: money, rowCount: 1 })), 'loaded', cell);
  }
  t.is(await loadCode(file('a,b\n0.5,x\n', { format: 'csv', columns: [{ name: 'a', type: 'DECIMAL(2,2)' }, AB[1]!], rowCount: 1 })), 'loaded');
  t.is(await loadCode(file('a,b\n1.5,x\n', { format: 'csv', columns: [{ name: 'a', type: 'DECIMAL(2,2)' }, AB[1]!], rowCount: 1 })), 'DATASET_MALFORMED');
  t.is(await loadCode(file('a,b\n15,x\n', { format: 'csv', columns: [{ name: 'a', type: 'DECIMAL(2,0)' }, AB[1]!], rowCount: 1 })), 'loaded');
  t.is(await loadCode(file('a,b\n1.5,x\n', { format: 'csv', columns: [{ name: 'a', type: 'DECIMAL(2,0)' }, AB[1]!], rowCount: 1 })), 'DATASET_MALFORMED');
});

test('load files: Parquet loads when names match and each type is the declared one or widens to it exactly', async (t) => {
  const bytes = await parquet(
    "SELECT 1::INTEGER AS id, 'x' AS name, 2::SMALLINT AS small, 3::INTEGER AS wide, 1.5::FLOAT AS f, TIMESTAMP '2024-01-01 01:02:03.456' ::TIMESTAMP_MS AS ms, DATE '2024-01-01' AS day",
  );
  const connection = await open();
  try {
    await loadFiles(connection, `${directory}/`, [
      file(bytes, {
        name: 'p',
        format: 'parquet',
        columns: [
          { name: 'id', type: 'INTEGER' },
          { name: 'name', type: 'VARCHAR' },
          { name: 'small', type: 'INTEGER' },
          { name: 'wide', type: 'BIGINT' },
          { name: 'f', type: 'DOUBLE' },
          { name: 'ms', type: 'TIMESTAMP' },
          { name: 'day', type: 'DATE' },
        ],
        rowCount: 1,
      }),
    ]);
    const result = await runSelect(connection, 'SELECT * FROM p', { maxRows: 10, maxBytes: 10_000 });
    t.deepEqual(result.rows, [[1, 'x', 2, '3', 1.5, '2024-01-01 01:02:03.456', '2024-01-01']]);
    t.deepEqual(
      result.columns.map((c) => c.type),
      ['INTEGER', 'VARCHAR', 'INTEGER', 'BIGINT', 'DOUBLE', 'TIMESTAMP', 'DATE'],
    );
  } finally {
    connection.closeSync();
  }
});

const parquetCases: Array<[string, string, FileInput['columns'], number | null, string]> = [
  ['a column of another type', "SELECT 'x' AS a", [{ name: 'a', type: 'INTEGER' }], null, 'DATASET_SCHEMA_MISMATCH'],
  ['a narrowing (BIGINT into INTEGER)', 'SELECT 1::BIGINT AS a', [{ name: 'a', type: 'INTEGER' }], null, 'DATASET_SCHEMA_MISMATCH'],
  ['a lossy timestamp (nanoseconds)', "SELECT '2024-01-01'::TIMESTAMP_NS AS a", [{ name: 'a', type: 'TIMESTAMP' }], null, 'DATASET_SCHEMA_MISMATCH'],
  ['a DECIMAL for a DOUBLE', 'SELECT 1.5::DECIMAL(4,2) AS a', [{ name: 'a', type: 'DOUBLE' }], null, 'DATASET_SCHEMA_MISMATCH'],
  ['another column name', 'SELECT 1::INTEGER AS b', [{ name: 'a', type: 'INTEGER' }], null, 'DATASET_SCHEMA_MISMATCH'],
  ['a name in another case', 'SELECT 1::INTEGER AS A', [{ name: 'a', type: 'INTEGER' }], null, 'DATASET_SCHEMA_MISMATCH'],
  ['an extra column', 'SELECT 1::INTEGER AS a, 2::INTEGER AS b', [{ name: 'a', type: 'INTEGER' }], null, 'DATASET_SCHEMA_MISMATCH'],
  [
    'a missing column',
    'SELECT 1::INTEGER AS a',
    [
      { name: 'a', type: 'INTEGER' },
      { name: 'b', type: 'INTEGER' },
    ],
    null,
    'DATASET_SCHEMA_MISMATCH',
  ],
  ['another row count', 'SELECT unnest(range(5))::INTEGER AS a', [{ name: 'a', type: 'INTEGER' }], 4, 'DATASET_ROW_COUNT_MISMATCH'],
  ['the declared row count', 'SELECT unnest(range(5))::INTEGER AS a', [{ name: 'a', type: 'INTEGER' }], 5, 'loaded'],
];

for (const [name, select, columns, rowCount, code] of parquetCases) {
  test(`load files: Parquet with ${name} → ${code}`, async (t) => {
    t.is(await loadCode(file(await parquet(select), { format: 'parquet', columns, rowCount })), code);
  });
}

test('load files: bytes that are not Parquet → DATASET_MALFORMED', async (t) => {
  t.is(await loadCode(file('a,b\n1,2\n', { format: 'parquet', columns: [{ name: 'a', type: 'INTEGER' }], rowCount: null })), 'DATASET_MALFORMED');
});

test('load files: a path outside the directory is refused before DuckDB sees it', async (t) => {
  const connection = await open();
  try {
    const columns: FileInput['columns'] = [{ name: 'a', type: 'INTEGER' }];
    for (const path of ['/etc/passwd', `${directory}/../x.csv`, `${directory}x/t.csv`, `${directory}/`, `${directory}/sub/t.csv`]) {
      await t.throwsAsync(loadFiles(connection, `${directory}/`, [{ name: 't', file: path, format: 'csv', columns, rowCount: null }]), { instanceOf: TypeError }, path);
    }
  } finally {
    connection.closeSync();
  }
});

test('load files: names and column names cannot inject SQL (quoted as identifiers and literals)', async (t) => {
  const connection = await open();
  try {
    const columns: FileInput['columns'] = [
      { name: "it's", type: 'INTEGER' },
      { name: 'a) AS x; DROP TABLE y; --', type: 'VARCHAR' },
    ];
    await loadFiles(connection, `${directory}/`, [file(`"it's","a) AS x; DROP TABLE y; --"\n1,x\n`, { name: 'odd', format: 'csv', columns, rowCount: 1 })]);
    t.deepEqual(await rows(connection, 'SELECT * FROM odd'), [[1, 'x']]);
  } finally {
    connection.closeSync();
  }
});

test('load files: the database opens files in its directory only, and a deleted input cannot be read again', async (t) => {
  const connection = await open();
  try {
    const input = file('a\n1\n', { format: 'csv', columns: [{ name: 'a', type: 'INTEGER' }], rowCount: 1 });
    await loadFiles(connection, `${directory}/`, [input]);
    // While the file exists, SQL could read it (what the policy walker and the deletion prevent)...
    t.deepEqual(await rows(connection, `SELECT count(*) FROM read_csv('${input.file}', buffer_size = 65536)`), [['1']]);
    unlinkSync(input.file);
    // ...once the worker has deleted it there is nothing to read; the loaded table stays.
    t.is(await codeOf(connection, `SELECT * FROM read_csv('${input.file}', buffer_size = 65536)`), 'QUERY_FAILED');
    t.deepEqual(await rows(connection, `SELECT * FROM ${input.name}`), [[1]]);
    // Elsewhere, file access is refused outright, and the confinement cannot be changed.
    for (const sql of ["SELECT * FROM read_csv('/etc/passwd')", `SELECT * FROM read_csv('${directory}/../../etc/passwd')`, "SELECT * FROM glob('/dev/shm/*')"]) {
      t.is(await codeOf(connection, sql), 'POLICY_VIOLATION', sql);
    }
    for (const sql of ["SET allowed_directories = ['/']", "SET allowed_paths = ['/etc/passwd']", 'SET enable_external_access = true']) {
      t.is(await codeOf(connection, sql), 'QUERY_FAILED', sql);
    }
  } finally {
    connection.closeSync();
  }
});

async function codeOf(connection: DuckDBConnection, sql: string): Promise<string> {
  try {
    await connection.run(sql);
    return 'ran';
  } catch (error) {
    return failureCode(error);
  }
}

test('load files: the warm-up files load and leave no table behind', async (t) => {
  writeFileSync(join(directory, WARM_UP_FILES.csv), WARM_UP_CSV);
  writeFileSync(join(directory, WARM_UP_FILES.parquet), Buffer.from(WARM_UP_PARQUET_BASE64, 'base64'));
  const connection = await open();
  try {
    await warmUp(connection, `${directory}/`);
    t.deepEqual(await rows(connection, 'SELECT count(*) FROM duckdb_tables()'), [['0']]);
  } finally {
    connection.closeSync();
    unlinkSync(join(directory, WARM_UP_FILES.csv));
    unlinkSync(join(directory, WARM_UP_FILES.parquet));
  }
});
