import { createHash } from 'node:crypto';
import type { ExecuteRequest, QueryResult, ResultRef, ResultSink, ResultValue } from './ports.ts';

/**
 * The result as canonical JSON: object keys sorted, no whitespace, numbers as JavaScript prints
 * them (the shortest round-trip form, as RFC 8785). Rows keep DuckDB's order.
 */
export function canonicalResultJson(result: Pick<QueryResult, 'columns' | 'rows'>): string {
  return canonical({ columns: result.columns, rows: result.rows });
}

function canonical(value: ResultValue | Record<string, unknown> | unknown[]): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map((item) => canonical(item as ResultValue)).join(',')}]`;
  const keys = Object.keys(value).sort();
  return `{${keys.map((key) => `${JSON.stringify(key)}:${canonical((value as Record<string, ResultValue>)[key]!)}`).join(',')}}`;
}

/** What the digest sink keeps per query. */
export interface ResultDigest {
  rows: number;
  bytes: number;
  sha256: string;
}

/**
 * A sink for tests and benchmarks that need no sealing (the worker seals results to their
 * recipients, `enclave-worker/results/`): it keeps
 * the row count and the SHA-256 of the canonical result, never a row, so no plaintext result
 * outlives the query in the worker. The most recent `capacity` digests are kept.
 */
export class DigestOnlySink implements ResultSink {
  readonly #capacity: number;
  readonly #digests = new Map<string, ResultDigest>();

  constructor(options: { capacity?: number } = {}) {
    this.#capacity = options.capacity ?? 10_000;
  }

  async write({ sessionId, queryId }: ExecuteRequest, result: QueryResult): Promise<ResultRef> {
    const sha256 = createHash('sha256').update(canonicalResultJson(result)).digest('hex');
    const key = `${sessionId}/${queryId}`;
    this.#digests.delete(key);
    this.#digests.set(key, { rows: result.rows.length, bytes: result.bytes, sha256 });
    if (this.#digests.size > this.#capacity) this.#digests.delete(this.#digests.keys().next().value!);
    return { ref: `sha256:${sha256}`, rows: result.rows.length, bytes: result.bytes };
  }

  /** The digest of a query's result, if still kept. */
  get(sessionId: string, queryId: string): ResultDigest | undefined {
    return this.#digests.get(`${sessionId}/${queryId}`);
  }
}
