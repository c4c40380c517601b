import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';
import * as v from 'valibot';
import { CSV_DELIMITERS, CSV_ESCAPES, CSV_QUOTES, CsvDialectSchema, duckdbCsvOptions, type CsvDialect } from '../../protocol/csv-dialect.ts';
import { DatasetSchemaSchema, MAX_DECIMAL_PRECISION } from '../../protocol/dataset.ts';
import { CleanroomError } from '../../protocol/errors.ts';
import { ANY_TYPE, TYPE_BITS, VALUE_PATTERNS, columnType, type DatasetDescription } from '../sdk/csv-describe.ts';
import { regularFileSize } from './files.ts';

/** What the owner may say instead of what the sniffer finds. */
export interface CsvOverrides {
  delimiter?: CsvDialect['delimiter'];
  /** Whether the first line names the columns. */
  header?: boolean;
}

/** The header row is read on its own, as the worker reads it; a small buffer keeps that to the start. */
const HEADER_BUFFER_BYTES = 1024 * 1024;
/** How much of DuckDB's message about the owner's own file is shown to them (it may quote a line). */
const MESSAGE_CHARS = 300;

/**
 * Describes a CSV file with DuckDB on this machine, as the worker will load it: DuckDB's sniffer
 * (`sniff_csv`) finds the dialect (delimiter, quote, escape, header row), unless `overrides`
 * fix the delimiter or the header; then the whole file is read with exactly the worker's strict
 * options for that dialect (`duckdbCsvOptions`), every cell as text, to count the rows and give
 * each column the narrowest type all its values fit: the same rules and patterns as the SDK's
 * `describeCsv` (BOOLEAN, INTEGER, BIGINT, DECIMAL(p,s) for plain decimals such as `12.50`,
 * DOUBLE, DATE, TIMESTAMP, else VARCHAR), checked with DuckDB's own casts. A file the worker's
 * load would refuse is refused here first: DATASET_MALFORMED naming the problem (the file is
 * the owner's own, so DuckDB's words about it may be shown), VALIDATION_FAILED for column names
 * a registration refuses. Nothing is written anywhere.
 */
export async function describeCsvFile(path: string, overrides: CsvOverrides = {}): Promise<DatasetDescription> {
  const bytes = await regularFileSize(path);
  if (bytes === 0) throw new CleanroomError('DATASET_MALFORMED', `${path} is empty: a CSV dataset needs at least a header row`);
  const instance = await DuckDBInstance.create(':memory:', { autoinstall_known_extensions: 'false', autoload_known_extensions: 'false' });
  const connection = await instance.connect();
  try {
    const { dialect, columns } = await sniff(connection, path, overrides);
    const names = dialect.header ? await headerNames(connection, path, dialect, columns) : Array.from({ length: columns }, (_, i) => `column${i}`);
    const { rowCount, schema } = await scan(connection, path, dialect, names);
    return { schema, rowCount, bytes, csv: dialect };
  } finally {
    connection.closeSync();
    instance.closeSync();
  }
}

/** DuckDB's sniffer's dialect, normalised to the closed sets a registration allows. */
async function sniff(connection: DuckDBConnection, path: string, overrides: CsvOverrides): Promise<{ dialect: CsvDialect; columns: number }> {
  const given = [
    ...(overrides.delimiter !== undefined ? [`delim = ${literal(overrides.delimiter)}`] : []),
    ...(overrides.header !== undefined ? [`header = ${overrides.header}`] : []),
    "compression = 'none'",
  ].join(', ');
  let found: Record<string, unknown>;
  try {
    const prepared = await connection.prepare(
      `SELECT Delimiter AS delimiter, Quote AS quote, Escape AS escape, HasHeader AS header, SkipRows AS skip, len(Columns) AS columns FROM sniff_csv($1, ${given})`,
    );
    prepared.bindVarchar(1, path);
    found = (await prepared.runAndReadAll()).getRowObjectsJson()[0] ?? {};
  } catch (error) {
    throw malformed(path, 'DuckDB cannot read it as CSV', error);
  }
  const delimiter = String(found.delimiter);
  if (!(CSV_DELIMITERS as readonly string[]).includes(delimiter)) {
    throw new CleanroomError('DATASET_MALFORMED', `${path}: DuckDB found the delimiter ${JSON.stringify(delimiter)}, which datasets do not support: pass --delimiter with one of , ; tab |`);
  }
  if (Number(found.skip) > 0) {
    throw new CleanroomError('DATASET_MALFORMED', `${path}: its first ${Number(found.skip)} line(s) are not rows of the table: remove them so that the file starts with the header row`);
  }
  // No quote seen in the sample: RFC 4180's double quote, which reads such a file the same way and
  // a quoted field further on correctly. No escape seen: the quote itself (doubling), likewise.
  const quote = empty(found.quote) ? '"' : String(found.quote);
  const escape = empty(found.escape) ? quote : String(found.escape);
  if (!(CSV_QUOTES as readonly string[]).includes(quote) || !(CSV_ESCAPES as readonly string[]).includes(escape)) {
    throw new CleanroomError(
      'DATASET_MALFORMED',
      `${path}: DuckDB found the quote ${JSON.stringify(quote)} and escape ${JSON.stringify(escape)}; datasets quote with " or ' and escape with the quote or \\`,
    );
  }
  const parsed = v.safeParse(CsvDialectSchema, { delimiter, quote, escape, header: found.header === true });
  if (!parsed.success) throw new CleanroomError('DATASET_MALFORMED', `${path}: ${parsed.issues[0].message}`);
  const columns = Number(found.columns);
  if (!Number.isSafeInteger(columns) || columns < 1) throw new CleanroomError('DATASET_MALFORMED', `${path}: DuckDB found no columns`);
  return { dialect: parsed.output, columns };
}

/** The first line's cells, read as the worker checks them, validated as a registration will. */
async function headerNames(connection: DuckDBConnection, path: string, dialect: CsvDialect, columns: number): Promise<string[]> {
  const asText = Array.from({ length: columns }, (_, i) => `c${i}`);
  let row: unknown[] | undefined;
  try {
    const prepared = await connection.prepare(
      `SELECT * FROM read_csv($1, ${duckdbCsvOptions({ ...dialect, header: false })}, buffer_size = ${HEADER_BUFFER_BYTES}, columns = ${textColumns(asText)}) LIMIT 1`,
    );
    prepared.bindVarchar(1, path);
    row = (await prepared.runAndReadAll()).getRowsJson()[0];
  } catch (error) {
    throw malformed(path, 'its header row does not parse', error);
  }
  // Every cell was read as VARCHAR: a string, or null for an empty one.
  const names = (row ?? []).map((cell) => (typeof cell === 'string' ? cell : ''));
  const checked = v.safeParse(
    DatasetSchemaSchema,
    names.map((name) => ({ name, type: 'VARCHAR' })),
  );
  if (!checked.success) {
    const issue = checked.issues[0];
    const where = issue.path?.[0]?.key;
    const column = typeof where === 'number' ? ` (column ${where + 1})` : '';
    throw new CleanroomError('VALIDATION_FAILED', `CSV header${column}: ${issue.message}${dialect.header ? ' (if the file has no header row, pass --no-header)' : ''}`);
  }
  return names;
}

/** One strict pass over every row: the row count and each column's type. */
async function scan(connection: DuckDBConnection, path: string, dialect: CsvDialect, names: string[]): Promise<Pick<DatasetDescription, 'rowCount' | 'schema'>> {
  const cells = names.map((_, i) => `c${i}`);
  const facts = cells.flatMap((cell, i) => [`${maskOf(cell)} AS m${i}`, `count(${cell}) AS s${i}`, `max(${integerDigitsOf(cell)}) AS d${i}`, `max(${scaleOf(cell)}) AS f${i}`]);
  let row: Record<string, unknown>;
  try {
    const prepared = await connection.prepare(`SELECT count(*) AS n, ${facts.join(', ')} FROM read_csv($1, ${duckdbCsvOptions(dialect)}, columns = ${textColumns(cells)})`);
    prepared.bindVarchar(1, path);
    row = (await prepared.runAndReadAll()).getRowObjectsJson()[0]!;
  } catch (error) {
    throw malformed(path, `it does not read as one table under the dialect found (${describeDialect(dialect)})`, error);
  }
  const rowCount = Number(row.n);
  if (!Number.isSafeInteger(rowCount)) throw new CleanroomError('DATASET_MALFORMED', `${path}: the row count is not readable`);
  const schema = names.map((name, i) => ({
    name,
    type: columnType({ mask: Number(row[`m${i}`] ?? ANY_TYPE), seen: Number(row[`s${i}`]) > 0, integerDigits: Number(row[`d${i}`] ?? 0), scale: Number(row[`f${i}`] ?? 0) }),
  }));
  return { rowCount, schema };
}

const { BOOLEAN, INTEGER, BIGINT, DECIMAL, DOUBLE, DATE, TIMESTAMP } = TYPE_BITS;

/** `regexp_full_match(cell, pattern)`. */
function matches(cell: string, pattern: string): string {
  return `regexp_full_match(${cell}, ${literal(pattern)})`;
}

/** Digits of an integer or plain decimal, its sign left out. */
function signless(cell: string): string {
  return `(CASE WHEN ${cell}[1] IN ('+', '-') THEN 1 ELSE 0 END)`;
}

/**
 * The type bits every value of the column fits (`bit_and` over the rows; a NULL fits all), as
 * `csv-describe.ts` computes them value by value: the same patterns, DuckDB's casts for ranges
 * and calendars.
 */
function maskOf(cell: string): string {
  const integerDigits = `(length(${cell}) - ${signless(cell)})`;
  const decimalDigits = `(length(${cell}) - 1 - ${signless(cell)})`;
  const integer = `(CASE WHEN TRY_CAST(${cell} AS INTEGER) IS NOT NULL THEN ${INTEGER} ELSE 0 END) | (CASE WHEN TRY_CAST(${cell} AS BIGINT) IS NOT NULL THEN ${BIGINT} ELSE 0 END) | (CASE WHEN ${integerDigits} <= ${MAX_DECIMAL_PRECISION} THEN ${DECIMAL} ELSE 0 END) | ${DOUBLE}`;
  const finite = `isfinite(TRY_CAST(${cell} AS DOUBLE))`;
  return `bit_and(CASE
    WHEN ${cell} IS NULL THEN ${ANY_TYPE}
    WHEN lower(${cell}) IN ('true', 'false') THEN ${BOOLEAN}
    WHEN ${matches(cell, VALUE_PATTERNS.integer)} THEN ${integer}
    WHEN ${matches(cell, VALUE_PATTERNS.decimal)} AND ${finite} THEN (CASE WHEN ${decimalDigits} <= ${MAX_DECIMAL_PRECISION} THEN ${DECIMAL} ELSE 0 END) | ${DOUBLE}
    WHEN ${matches(cell, VALUE_PATTERNS.float)} AND ${finite} THEN ${DOUBLE}
    WHEN ${matches(cell, VALUE_PATTERNS.date)} AND NOT starts_with(${cell}, '0000') AND TRY_CAST(${cell} AS DATE) IS NOT NULL THEN ${DATE | TIMESTAMP}
    WHEN ${matches(cell, VALUE_PATTERNS.timestamp)} AND NOT starts_with(${cell}, '0000') AND TRY_CAST(${cell} AS TIMESTAMP) IS NOT NULL THEN ${TIMESTAMP}
    ELSE 0 END)`;
}

/** Digits before the point of an integer or plain decimal (NULL otherwise). */
function integerDigitsOf(cell: string): string {
  return `CASE WHEN ${matches(cell, VALUE_PATTERNS.integer)} THEN length(${cell}) - ${signless(cell)} WHEN ${matches(cell, VALUE_PATTERNS.decimal)} THEN strpos(${cell}, '.') - 1 - ${signless(cell)} END`;
}

/** Digits after the point of a plain decimal (NULL otherwise). */
function scaleOf(cell: string): string {
  return `CASE WHEN ${matches(cell, VALUE_PATTERNS.decimal)} THEN length(${cell}) - strpos(${cell}, '.') END`;
}

/** `{'c0': 'VARCHAR', ...}` for `read_csv`'s `columns`. */
function textColumns(names: readonly string[]): string {
  return `{${names.map((name) => `${literal(name)}: 'VARCHAR'`).join(', ')}}`;
}

function literal(text: string): string {
  return `'${text.replaceAll("'", "''")}'`;
}

/** The sniffer's spelling of "none". */
function empty(value: unknown): boolean {
  return value === null || value === undefined || value === '' || value === '(empty)' || value === '\u0000';
}

/** The dialect as a user reads it. */
export function describeDialect(dialect: CsvDialect): string {
  const delimiter = { ',': 'comma', ';': 'semicolon', '\t': 'tab', '|': 'pipe' }[dialect.delimiter];
  const escape = dialect.escape === dialect.quote ? 'doubled' : `escaped with ${dialect.escape}`;
  return `${delimiter}-separated, quotes ${dialect.quote} (${escape}), ${dialect.header ? 'header row' : 'no header row'}`;
}

/** DATASET_MALFORMED with the first line of DuckDB's message (the file is the owner's own, on their machine). */
function malformed(path: string, what: string, error: unknown): CleanroomError {
  const message = error instanceof Error ? error.message : String(error);
  const detail = message
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('Original Line'))
    .slice(0, 2)
    .join(' ')
    .slice(0, MESSAGE_CHARS);
  return new CleanroomError('DATASET_MALFORMED', `${path}: ${what}: ${detail}`, { cause: error });
}
