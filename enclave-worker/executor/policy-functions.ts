/**
 * Functions a query may not call, by exact (lowercase) name or by prefix. Table functions are refused
 * wholesale where they can appear (a FROM item), so this list covers what parses as a scalar,
 * aggregate or window call: functions that reach outside the query's own rows (settings, variables,
 * the catalog, logs, sequences, the session's SQL), run SQL from a string, raise messages that can
 * carry a data value, or stall on purpose.
 *
 * The lock-down of the child's DuckDB (no external access, locked configuration, no extensions) is
 * the second wall behind this list; the process boundary is the third.
 */
export const DENIED_FUNCTIONS: ReadonlySet<string> = new Set([
  // settings, variables, environment
  'current_setting',
  'getvariable',
  'getenv',
  'get_block_size',
  // catalog, session and connection metadata
  'current_database',
  'current_catalog',
  'current_schema',
  'current_schemas',
  'current_user',
  'current_role',
  'session_user',
  'user',
  'in_search_path',
  'version',
  'current_query',
  'current_query_id',
  'current_connection_id',
  'current_transaction_id',
  'txid_current',
  'col_description',
  'obj_description',
  'shobj_description',
  'format_pg_type',
  'format_type',
  'map_to_pg_oid',
  // SQL from a string: parse, plan (binding a plan opens files) or execute it
  'json_serialize_sql',
  'json_serialize_plan',
  'json_deserialize_sql',
  'json_execute_serialized_sql',
  'query',
  'query_table',
  // file and URL readers, should any be reachable outside FROM
  'read_text',
  'read_blob',
  'glob',
  'sniff_csv',
  'parquet_scan',
  // side effects and deliberate stalls
  'write_log',
  'parse_duckdb_log_message',
  'setseed',
  'nextval',
  'currval',
  'sleep_ms',
  'pg_sleep',
  'checkpoint',
  'force_checkpoint',
  'which_secret',
  // raises a caller-chosen message, which can carry a row value (docs/architecture.md invariant 11)
  'error',
]);

/** Name prefixes refused whatever follows (families of metadata, I/O and administration functions). */
export const DENIED_FUNCTION_PREFIXES: readonly string[] = [
  'pragma_',
  'duckdb_',
  'pg_',
  'has_',
  'inet_',
  'read_',
  'parquet_',
  'json_execute',
  'sqlite_',
  'postgres_',
  'mysql_',
  'iceberg_',
  'delta_',
  'http',
  'enable_',
  'disable_',
  'icu_calendar',
  'sniff_',
];

/** True when a function of this (any case) name may be called. */
export function isAllowedFunction(name: string): boolean {
  const lower = name.toLowerCase();
  return !DENIED_FUNCTIONS.has(lower) && !DENIED_FUNCTION_PREFIXES.some((prefix) => lower.startsWith(prefix));
}
