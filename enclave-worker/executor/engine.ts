import { Buffer } from 'node:buffer';
import { DuckDBInstance, JsonDuckDBValueConverter, StatementType, type DuckDBAppender, type DuckDBConnection } from '@duckdb/node-api';
import { CleanroomError } from '../../protocol/errors.ts';
import { CONTEXT_FAILURE_CODES, type ContextFailureCode } from './codes.ts';
import type { DatasetColumnType } from '../../protocol/dataset.ts';
import type { InputTable, QueryResult, ResultValue } from './ports.ts';

/**
 * DuckDB inside one execution context (the child process). Nothing here runs in the worker's own
 * process, except the policy tests and the benchmark baseline.
 */

/** What the child's database is created with; fixed before any query text arrives. */
export interface EngineSettings {
  threads: number;
  memoryLimitMb: number;
  /**
   * The context's input directory (absolute, trailing `/`): the only place its DuckDB may open a
   * file. Without it the local file system is disabled altogether (in-process uses only).
   */
  directory?: string;
}

/** Parser expression depth; deeper input is a parse error (refused), well before a stack overflow. */
const MAX_EXPRESSION_DEPTH = 250;

/**
 * A fresh in-memory DuckDB, locked down before it returns: no extension install or autoload, file
 * access confined to the context's input directory (`allowed_directories` with external access
 * off; with no directory, the local file system disabled), nowhere to spill (no temp directory, so
 * going over `memory_limit` is an error, never a file), errors as JSON so a failure can be
 * classified by type without reading its message, and the configuration locked so a query cannot
 * undo any of it.
 */
export async function openLockedDatabase(settings: EngineSettings): Promise<DuckDBConnection> {
  const instance = await DuckDBInstance.create(':memory:', {
    autoinstall_known_extensions: 'false',
    autoload_known_extensions: 'false',
    allow_community_extensions: 'false',
    allow_unsigned_extensions: 'false',
    allow_persistent_secrets: 'false',
    enable_external_file_cache: 'false',
    threads: String(settings.threads),
    memory_limit: `${settings.memoryLimitMb}MB`,
    temp_directory: '',
    max_temp_directory_size: '0B',
    errors_as_json: 'true',
    max_expression_depth: String(MAX_EXPRESSION_DEPTH),
  });
  const connection = await instance.connect();
  // These run here, before the lock and before any query text exists. `disabled_filesystems` needs
  // a live file system registry, `TimeZone` the built-in icu extension, and `allowed_directories`
  // must be set while external access is still on (it is the exception to turning it off).
  if (settings.directory === undefined) {
    await connection.run("SET disabled_filesystems = 'LocalFileSystem'");
  } else {
    checkDirectory(settings.directory);
    await connection.run(`SET allowed_directories = [${sqlString(settings.directory)}]`);
  }
  await connection.run("SET TimeZone = 'UTC'");
  await connection.run('SET enable_external_access = false');
  await connection.run('SET lock_configuration = true');
  return connection;
}

function checkDirectory(directory: string): void {
  if (!directory.startsWith('/') || !directory.endsWith('/') || directory.split('/').some((part) => part === '.' || part === '..') || /[\u0000-\u001f]/.test(directory)) {
    throw new TypeError('the input directory must be absolute, normalised and end with /');
  }
}

/** DuckDB's own parse tree of `sql` as JSON text (`{ "error": true, ... }` for what it cannot serialize). */
export async function serializeSql(connection: DuckDBConnection, sql: string): Promise<string> {
  // A bound parameter, so the query text is never spliced into SQL of ours.
  const reader = await connection.runAndReadAll('SELECT json_serialize_sql($1::VARCHAR)', [sql]);
  const tree = reader.getRows()[0]?.[0];
  if (typeof tree !== 'string') throw new CleanroomError('POLICY_VIOLATION', 'the query could not be parsed');
  return tree;
}

/** `name` as a quoted SQL identifier (quotes doubled). */
export function quoteIdentifier(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/** `text` as an SQL string literal (single quotes doubled). */
export function sqlString(text: string): string {
  return `'${text.replaceAll("'", "''")}'`;
}

const BAD_INPUT = (): CleanroomError => new CleanroomError('QUERY_FAILED', 'an input value does not match its column type');
const BIGINT_TEXT = /^-?\d{1,19}$/;
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

function appendValue(appender: DuckDBAppender, type: DatasetColumnType, value: unknown): void {
  if (value === null) return appender.appendNull();
  switch (type) {
    case 'BOOLEAN':
      if (typeof value !== 'boolean') throw BAD_INPUT();
      return appender.appendBoolean(value);
    case 'INTEGER':
      if (!Number.isInteger(value) || (value as number) < -(2 ** 31) || (value as number) >= 2 ** 31) throw BAD_INPUT();
      return appender.appendInteger(value as number);
    case 'BIGINT': {
      if (!(Number.isSafeInteger(value) || (typeof value === 'string' && BIGINT_TEXT.test(value)))) throw BAD_INPUT();
      const big = BigInt(value as number | string);
      if (big < INT64_MIN || big > INT64_MAX) throw BAD_INPUT();
      return appender.appendBigInt(big);
    }
    case 'DOUBLE':
      if (typeof value !== 'number') throw BAD_INPUT();
      return appender.appendDouble(value);
    default:
      // VARCHAR as is; DATE and TIMESTAMP as ISO 8601 text, which DuckDB casts on append.
      if (typeof value !== 'string') throw BAD_INPUT();
      return appender.appendVarchar(value);
  }
}

/**
 * Creates and fills tables in-process with the appender: rows go in as values, no file is touched.
 * Contexts never use it (they load files, `load-files.ts`); the benchmark's baseline and the engine
 * tests do.
 */
export async function loadTables(connection: DuckDBConnection, tables: readonly InputTable[]): Promise<void> {
  for (const table of tables) {
    const columns = table.columns.map((c) => `${quoteIdentifier(c.name)} ${c.type}`).join(', ');
    await connection.run(`CREATE TABLE ${quoteIdentifier(table.name)} (${columns})`);
    const appender = await connection.createAppender(table.name);
    try {
      for (const row of table.rows) {
        for (let i = 0; i < table.columns.length; i++) appendValue(appender, table.columns[i]!.type, row[i]);
        appender.endRow();
      }
      appender.flushSync();
    } finally {
      appender.closeSync();
    }
  }
}

/** Caps on one result. */
export interface ResultCaps {
  maxRows: number;
  maxBytes: number;
}

const TOO_LARGE = (): CleanroomError => new CleanroomError('RESULT_TOO_LARGE', 'the result is over its row or size limit');

/**
 * Runs one SELECT and collects its rows as JSON values, failing as soon as a cap is passed.
 *
 * Values: 8- to 32-bit integers and DOUBLE/FLOAT as numbers (NaN and infinities as strings);
 * BIGINT, HUGEINT and DECIMAL as decimal strings (exact); dates and times as DuckDB's ISO 8601
 * text (`2024-01-02`, `2024-01-02 03:04:05.123`, microseconds kept); lists and structs as arrays
 * and objects; intervals as `{ months, days, micros }`.
 */
export async function runSelect(connection: DuckDBConnection, sql: string, caps: ResultCaps): Promise<QueryResult> {
  // The policy already allowed one SELECT; the engine's own view is checked again before running.
  const extracted = await connection.extractStatements(sql);
  if (extracted.count !== 1) throw new CleanroomError('POLICY_VIOLATION', 'only a single SELECT statement may run');
  const prepared = await extracted.prepare(0);
  if (prepared.statementType !== StatementType.SELECT) throw new CleanroomError('POLICY_VIOLATION', 'only a single SELECT statement may run');
  const result = await prepared.stream();
  const names = result.columnNames();
  const types = result.columnTypes();
  const columns = names.map((name, i) => ({ name, type: String(types[i]) }));
  const rows: ResultValue[][] = [];
  let bytes = 2; // the JSON array's brackets
  for (;;) {
    const chunk = await result.fetchChunk();
    if (chunk === null || chunk.rowCount === 0) break;
    if (rows.length + chunk.rowCount > caps.maxRows) throw TOO_LARGE();
    for (const row of chunk.convertRows(JsonDuckDBValueConverter) as ResultValue[][]) {
      bytes += Buffer.byteLength(JSON.stringify(row)) + (rows.length > 0 ? 1 : 0);
      if (bytes > caps.maxBytes) throw TOO_LARGE();
      rows.push(row);
    }
  }
  return { columns, rows, bytes };
}

/**
 * The fixed code for a failure inside the context. DuckDB's message quotes SQL literals and row
 * values, so only its exception type is read (errors are JSON, see `openLockedDatabase`).
 */
export function failureCode(error: unknown): ContextFailureCode {
  if (error instanceof CleanroomError) {
    return (CONTEXT_FAILURE_CODES as readonly string[]).includes(error.code) ? (error.code as ContextFailureCode) : 'QUERY_FAILED';
  }
  // A value too large for a JavaScript string or array while converting the result.
  if (error instanceof RangeError && /^Invalid (string|array) length/.test(error.message)) return 'RESULT_TOO_LARGE';
  // The JSON can follow a fixed prefix ("Failed to extract statements: Parser Error: {...}").
  const message = error instanceof Error ? error.message : '';
  let type: unknown;
  try {
    type = (JSON.parse(message.slice(message.indexOf('{'))) as { exception_type?: unknown }).exception_type;
  } catch {
    return 'QUERY_FAILED';
  }
  switch (type) {
    case 'Out of Memory':
      return 'QUERY_MEMORY_LIMIT';
    case 'Interrupt':
      return 'QUERY_TIMEOUT';
    case 'Permission': // the lock-down refused a file or setting: a policy refusal, reached late
      return 'POLICY_VIOLATION';
    default:
      return 'QUERY_FAILED';
  }
}
