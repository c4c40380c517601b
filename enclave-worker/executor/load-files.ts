import type { DuckDBConnection } from '@duckdb/node-api';
import { duckdbCsvOptions, RFC4180_DIALECT } from '../../protocol/csv-dialect.ts';
import { parseDecimalType, type DatasetColumnType } from '../../protocol/dataset.ts';
import { CleanroomError } from '../../protocol/errors.ts';
import { failureCode, quoteIdentifier, runSelect, serializeSql, sqlString } from './engine.ts';
import type { FileInput } from './ports.ts';
import { WARM_UP_COLUMNS, WARM_UP_FILES } from './warm-up.ts';

/**
 * Loading a context's inputs from the files the worker wrote into its directory (in the child).
 * Only SQL of ours runs here, built from checked names and paths, before any of the user's SQL.
 *
 * A CSV is read strictly under the dialect its authenticated header declares (`duckdbCsvOptions`:
 * every option fixed, nothing sniffed): a row with another number of cells or a cell that does
 * not parse as its declared type fails the load, an empty unquoted cell is NULL and `""` an
 * empty string. A file without a dialect (header version 1) is RFC 4180 with a comma.
 */

/** The header row is read on its own; a small buffer keeps that read to the start of the file. */
const HEADER_BUFFER_BYTES = 1024 * 1024;

/** Parquet column types that become a declared type by an exact cast (every value kept as is). */
const EXACT_CASTS: Record<Exclude<DatasetColumnType, `DECIMAL(${number},${number})`>, readonly string[]> = {
  BOOLEAN: ['BOOLEAN'],
  INTEGER: ['INTEGER', 'SMALLINT', 'TINYINT', 'USMALLINT', 'UTINYINT'],
  BIGINT: ['BIGINT', 'INTEGER', 'SMALLINT', 'TINYINT', 'UINTEGER', 'USMALLINT', 'UTINYINT'],
  DOUBLE: ['DOUBLE', 'FLOAT'],
  VARCHAR: ['VARCHAR'],
  DATE: ['DATE'],
  TIMESTAMP: ['TIMESTAMP', 'TIMESTAMP_MS', 'TIMESTAMP_S'],
};

/** Whether a Parquet column of type `found` becomes `declared` exactly: a DECIMAL only as the very same DECIMAL. */
function castsExactly(declared: DatasetColumnType, found: string): boolean {
  if (parseDecimalType(declared) !== null) return found === declared;
  return EXACT_CASTS[declared as keyof typeof EXACT_CASTS].includes(found);
}

const coded = (code: 'DATASET_MALFORMED' | 'DATASET_SCHEMA_MISMATCH' | 'DATASET_ROW_COUNT_MISMATCH'): CleanroomError => {
  const messages = {
    DATASET_MALFORMED: 'an input does not parse under its declared columns',
    DATASET_SCHEMA_MISMATCH: 'an input has other columns than declared',
    DATASET_ROW_COUNT_MISMATCH: 'an input has another number of rows than declared',
  };
  return new CleanroomError(code, messages[code]);
};

/** A DuckDB failure while reading a file: memory and time keep their codes, anything else is `code`. */
function asLoadError(error: unknown, code: 'DATASET_MALFORMED' | 'DATASET_SCHEMA_MISMATCH'): CleanroomError {
  if (error instanceof CleanroomError) return error;
  const general = failureCode(error);
  return general === 'QUERY_MEMORY_LIMIT' || general === 'QUERY_TIMEOUT' ? new CleanroomError(general, 'loading an input failed') : coded(code);
}

/** A file directly inside `directory` (which ends in `/`): nothing that could name another place. */
function checkInputFile(directory: string, file: string): void {
  const base = file.slice(directory.length);
  if (!file.startsWith(directory) || base === '' || base === '.' || base === '..' || base.includes('/') || /[\u0000-\u001f]/.test(file)) {
    throw new TypeError('an input file must be directly inside the context directory');
  }
}

/** A DuckDB struct literal `{'name': 'TYPE', ...}` for `read_csv`'s `columns`. */
function columnsLiteral(columns: readonly { name: string; type: string }[]): string {
  return `{${columns.map((c) => `${sqlString(c.name)}: ${sqlString(c.type)}`).join(', ')}}`;
}

/**
 * A DECIMAL(p,s) cell read as text, converted only when it is a plain decimal with at most p-s
 * digits before the point and s after it: DuckDB's own cast would round extra decimals away.
 * Anything else fails the load (the message is never read, only that it failed).
 */
function checkedDecimal(column: string, type: string): string {
  const { precision, scale } = parseDecimalType(type)!;
  const integer = precision - scale === 0 ? '0' : `(0|[1-9][0-9]{0,${precision - scale - 1}})`;
  const fraction = scale === 0 ? '' : `(\\.[0-9]{1,${scale}})?`;
  const cell = quoteIdentifier(column);
  return `CASE WHEN ${cell} IS NULL THEN NULL WHEN regexp_full_match(${cell}, ${sqlString(`[+-]?${integer}${fraction}`)}) THEN CAST(${cell} AS ${type}) ELSE error('not an exact ${type}') END AS ${cell}`;
}

async function loadCsv(connection: DuckDBConnection, input: FileInput): Promise<void> {
  const path = sqlString(input.file);
  const dialect = input.csv ?? RFC4180_DIALECT;
  const read = input.columns.map((c) => ({ name: c.name, type: parseDecimalType(c.type) === null ? c.type : 'VARCHAR' }));
  const select = input.columns.map((c) => (parseDecimalType(c.type) === null ? quoteIdentifier(c.name) : checkedDecimal(c.name, c.type))).join(', ');
  try {
    await connection.run(`CREATE TABLE ${quoteIdentifier(input.name)} AS SELECT ${select} FROM read_csv(${path}, ${duckdbCsvOptions(dialect)}, columns = ${columnsLiteral(read)})`);
  } catch (error) {
    throw asLoadError(error, 'DATASET_MALFORMED');
  }
  if (!dialect.header) return;
  // With its columns given, DuckDB skips the header row unread: check it names the declared columns.
  const asText = input.columns.map((_, i) => ({ name: `c${i}`, type: 'VARCHAR' }));
  let header: unknown[] | undefined;
  try {
    const options = duckdbCsvOptions({ ...dialect, header: false });
    const reader = await connection.runAndReadAll(`SELECT * FROM read_csv(${path}, ${options}, buffer_size = ${HEADER_BUFFER_BYTES}, columns = ${columnsLiteral(asText)}) LIMIT 1`);
    header = reader.getRows()[0];
  } catch (error) {
    throw asLoadError(error, 'DATASET_SCHEMA_MISMATCH');
  }
  if (header === undefined || header.length !== input.columns.length || header.some((cell, i) => cell !== input.columns[i]!.name)) {
    throw coded('DATASET_SCHEMA_MISMATCH');
  }
}

async function loadParquet(connection: DuckDBConnection, input: FileInput): Promise<void> {
  const source = `read_parquet(${sqlString(input.file)})`;
  let found: { name: string; type: string }[];
  try {
    // Binding reads only the file's footer: the schema is checked before any row is.
    const probe = await connection.prepare(`SELECT * FROM ${source}`);
    try {
      found = Array.from({ length: probe.columnCount }, (_, i) => ({ name: probe.columnName(i), type: String(probe.columnType(i)) }));
    } finally {
      probe.destroySync();
    }
  } catch (error) {
    throw asLoadError(error, 'DATASET_MALFORMED');
  }
  const matches = found.length === input.columns.length && input.columns.every((column, i) => found[i]!.name === column.name && castsExactly(column.type, found[i]!.type));
  if (!matches) throw coded('DATASET_SCHEMA_MISMATCH');
  const select = input.columns.map((c) => `CAST(${quoteIdentifier(c.name)} AS ${c.type}) AS ${quoteIdentifier(c.name)}`).join(', ');
  try {
    await connection.run(`CREATE TABLE ${quoteIdentifier(input.name)} AS SELECT ${select} FROM ${source}`);
  } catch (error) {
    throw asLoadError(error, 'DATASET_MALFORMED');
  }
}

/**
 * Creates one table per input from its file in `directory` (absolute, trailing `/`), checks its
 * columns and, when given, its row count. Failures are `DATASET_*` codes (or the memory and time
 * codes); no DuckDB message survives, since it quotes the offending row.
 */
export async function loadFiles(connection: DuckDBConnection, directory: string, inputs: readonly FileInput[]): Promise<void> {
  for (const input of inputs) {
    checkInputFile(directory, input.file);
    if (input.format === 'csv') await loadCsv(connection, input);
    else if (input.format === 'parquet') await loadParquet(connection, input);
    else throw new TypeError('unknown input format');
    if (input.rowCount !== null) {
      const reader = await connection.runAndReadAll(`SELECT count(*) FROM ${quoteIdentifier(input.name)}`);
      if (reader.getRows()[0]?.[0] !== BigInt(input.rowCount)) throw coded('DATASET_ROW_COUNT_MISMATCH');
    }
  }
}

/**
 * Runs each step a query will take once on throwaway data, before the context reports ready: the
 * first parse, CSV and Parquet load and query in a process pay for lazy initialisation (the json
 * extension's functions, the readers, code pages, JIT), and that cost belongs to startup, not to
 * the query's latency. Nothing is left behind: the tables are dropped before any query text arrives
 * (the worker deletes the files).
 */
export async function warmUp(connection: DuckDBConnection, directory: string): Promise<void> {
  await serializeSql(connection, 'SELECT a, count(*) FROM warm_up GROUP BY a ORDER BY a');
  await loadFiles(connection, directory, [
    { name: 'warm_up', file: `${directory}${WARM_UP_FILES.csv}`, format: 'csv', columns: WARM_UP_COLUMNS, rowCount: 2 },
    { name: 'warm_up_parquet', file: `${directory}${WARM_UP_FILES.parquet}`, format: 'parquet', columns: WARM_UP_COLUMNS, rowCount: 2 },
  ]);
  await runSelect(connection, 'SELECT a, count(*), min(b), sum(c) FROM warm_up GROUP BY a ORDER BY a', { maxRows: 10, maxBytes: 1024 });
  await connection.run('DROP TABLE warm_up');
  await connection.run('DROP TABLE warm_up_parquet');
}
