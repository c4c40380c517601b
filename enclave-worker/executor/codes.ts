/**
 * The codes an execution context may report for a failed query: fixed strings, never an engine
 * message (DESIGN invariant 11). Kept apart from `engine.ts` so the worker's side can name them
 * without loading DuckDB.
 */
export const CONTEXT_FAILURE_CODES = ['POLICY_VIOLATION', 'QUERY_FAILED', 'QUERY_TIMEOUT', 'QUERY_MEMORY_LIMIT', 'RESULT_TOO_LARGE'] as const;
export type ContextFailureCode = (typeof CONTEXT_FAILURE_CODES)[number];
