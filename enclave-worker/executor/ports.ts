import * as v from 'valibot';

/**
 * The executor's two ports: where a session's plaintext inputs come from and where a result goes.
 * Until the encrypted data path lands (issue 3 of 6) the only adapters are the TEST-ONLY plaintext
 * fixtures and the digest-only sink; the executor does not know which one it talks to.
 */

/** Column types an input may declare: scalar types with an exact, file-free appender path. */
export const INPUT_COLUMN_TYPES = ['BOOLEAN', 'INTEGER', 'BIGINT', 'DOUBLE', 'VARCHAR', 'DATE', 'TIMESTAMP'] as const;
export type InputColumnType = (typeof INPUT_COLUMN_TYPES)[number];

/**
 * A table name: a plain lowercase identifier that cannot be read as a file path or URL and cannot
 * shadow DuckDB's own catalog objects (`duckdb_*`, `pg_*`, `sqlite_*`, `pragma_*`, schemas).
 */
export const TableNameSchema = v.pipe(
  v.string(),
  v.regex(/^[a-z][a-z0-9_]{0,62}$/, 'a table name is a lowercase identifier'),
  v.check((name) => !/^(duckdb_|pg_|sqlite_|pragma_|information_schema$|main$|temp$|system$|memory$)/.test(name), 'reserved table name'),
);

/** A column value as it travels to the child: JSON-safe (BIGINT as a decimal string or safe integer). */
export type InputValue = string | number | boolean | null;

export const InputTableSchema = v.pipe(
  v.strictObject({
  name: TableNameSchema,
  columns: v.pipe(
    v.array(v.strictObject({ name: v.pipe(v.string(), v.minLength(1), v.maxLength(128)), type: v.picklist(INPUT_COLUMN_TYPES) })),
    v.minLength(1),
    v.maxLength(1000),
    v.check((cols) => new Set(cols.map((c) => c.name.toLowerCase())).size === cols.length, 'duplicate column name'),
  ),
  rows: v.array(v.array(v.union([v.string(), v.number(), v.boolean(), v.null()]))),
  }),
  v.check((table) => table.rows.every((row) => row.length === table.columns.length), 'a row does not match the columns'),
);
/** One input table, with its rows. The executor validates it with {@link InputTableSchema}. */
export type InputTable = v.InferOutput<typeof InputTableSchema>;

/** A session's plaintext inputs. Only the tables a checked query names are ever fetched. */
export interface InputSource {
  /** Names of the session's input tables (what a query may name). */
  tableNames(sessionId: string): Promise<string[]>;
  /** The named tables with their rows; `names` is a subset of `tableNames(sessionId)`. */
  tables(sessionId: string, names: readonly string[]): Promise<InputTable[]>;
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

/** Where results go: sealed to recipients later; a digest or TEST-ONLY plaintext until then. */
export interface ResultSink {
  write(sessionId: string, queryId: string, result: QueryResult): Promise<ResultRef>;
}
