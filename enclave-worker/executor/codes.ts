/**
 * The codes an execution context may report for a failed query: fixed strings, never an engine
 * message (docs/architecture.md invariant 11). Kept apart from `engine.ts` so the worker's side can name them
 * without loading DuckDB. The `DATASET_*` codes come from loading an input: a row that does not
 * parse under its declared columns (MALFORMED), a file whose columns or CSV header row differ from
 * the declared ones (SCHEMA_MISMATCH), or a row count other than the registered one.
 */
export const CONTEXT_FAILURE_CODES = [
  'POLICY_VIOLATION',
  'QUERY_FAILED',
  'QUERY_TIMEOUT',
  'QUERY_MEMORY_LIMIT',
  'RESULT_TOO_LARGE',
  'DATASET_MALFORMED',
  'DATASET_SCHEMA_MISMATCH',
  'DATASET_ROW_COUNT_MISMATCH',
] as const;
export type ContextFailureCode = (typeof CONTEXT_FAILURE_CODES)[number];
