import * as v from 'valibot';
import { CsvDialectSchema, type CsvDialect } from '../../protocol/csv-dialect.ts';
import { DATASET_FORMATS, DatasetSchemaSchema, TableNameSchema, type DatasetColumnType, type DatasetFormat, type TaskInput, type TaskRecipientKey } from '../../protocol/dataset.ts';

/**
 * The executor's two ports: where a query's plaintext inputs come from and where its result goes.
 * The worker's adapter for inputs decrypts the session's datasets (`inputs/encrypted-inputs.ts`);
 * tests use the TEST-ONLY plaintext fixtures. The executor does not know which one it talks to.
 */

/** One query to run for one session, as the verified task names it. */
export interface ExecuteRequest {
  sessionId: string;
  queryId: string;
  attempt: number;
  sql: string;
  /** The datasets the control plane attached to the task (those whose table the SQL names). */
  inputs: readonly TaskInput[];
  /** Who the result is sealed to. */
  recipients: readonly TaskRecipientKey[];
  /** Aborting it (the task request closed) kills the query's context. */
  signal?: AbortSignal;
}

/** Where an input source writes a query's plaintext inputs: the context's private directory. */
export interface InputTarget {
  /** Absolute path of the context's directory (mode 0711, owned by the worker). */
  directory: string;
  /** The context's own uid when the sandbox gives it one: files are chowned to it (the worker is root then). */
  uid?: number;
}

/** How the context loads one materialized input. */
export interface FileInput {
  /** The table the query names (a `TableNameSchema` identifier). */
  name: string;
  /** Absolute path of the plaintext file, directly inside `InputTarget.directory`. */
  file: string;
  format: DatasetFormat;
  /** How a CSV is written (from its authenticated header); absent: RFC 4180, comma, header row. */
  csv?: CsvDialect;
  /** The declared columns, in file order: the loaded table has exactly these names and types. */
  columns: { name: string; type: DatasetColumnType }[];
  /** Rows the file must hold (DATASET_ROW_COUNT_MISMATCH otherwise); null: do not check. */
  rowCount: number | null;
}

/** What the executor accepts from an input source (checked before anything is sent to a context). */
export const FileInputSchema = v.strictObject({
  name: TableNameSchema,
  file: v.pipe(v.string(), v.minLength(2), v.maxLength(4096)),
  format: v.picklist(DATASET_FORMATS),
  csv: v.optional(CsvDialectSchema),
  columns: DatasetSchemaSchema,
  rowCount: v.nullable(v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(Number.MAX_SAFE_INTEGER))),
});

/**
 * A session's inputs. Only the tables a checked query names are ever materialized, and only into
 * that query's context directory, right before the context loads them (they are deleted right after).
 */
export interface InputSource {
  /** Names of the tables `request` may name (what the policy check resolves table references against). */
  tableNames(request: ExecuteRequest): Promise<string[]>;
  /**
   * Writes each named table's plaintext into `target.directory` (files 0400, chowned to `target.uid`
   * when given) and says how to load it. `names` is a subset of `tableNames(request)`; the result
   * has exactly one entry per name. `request.signal` aborts when the context dies: stop writing.
   * A source may call `ready` with each file as soon as it is complete, so the context loads it
   * while the next one is written; files it did not announce are loaded at the end.
   */
  materialize(request: ExecuteRequest, names: readonly string[], target: InputTarget, ready?: (file: FileInput) => void): Promise<FileInput[]>;
}

/**
 * Rows appended in-process with `engine.loadTables` (no file involved). Contexts never take this
 * path: it is the benchmark's in-process baseline and the engine tests' fixture.
 */
export interface InputTable {
  name: string;
  columns: { name: string; type: DatasetColumnType }[];
  rows: (string | number | boolean | null)[][];
}

/** A JSON value of a result cell (see `engine.ts` for the mapping from DuckDB types). */
export type ResultValue = null | boolean | number | string | ResultValue[] | { [key: string]: ResultValue };

/** A query's result in the order DuckDB produced it. */
export interface QueryResult {
  columns: { name: string; type: string }[];
  rows: ResultValue[][];
  /** Size of the JSON encoding of `rows`, the figure `maxBytes` caps. */
  bytes: number;
}

/** What a sink reports back: where the result went and how big it was. */
export interface ResultRef {
  ref: string;
  rows: number;
  bytes: number;
}

/** The inputs a result was computed from, as a receipt names them (sorted by dataset id). */
export interface LoadedInput {
  dataset_id: string;
  ciphertext_sha256: string;
}

/** Where results go: sealed to the request's recipients in the worker; a digest or TEST-ONLY plaintext in tests. */
export interface ResultSink {
  /** `inputs`: the request's TaskInputs the query actually loaded (empty for the TEST-ONLY fixtures). */
  write(request: ExecuteRequest, result: QueryResult, inputs: LoadedInput[]): Promise<ResultRef>;
}
