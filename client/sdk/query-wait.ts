import type { QueryStatus } from '../../protocol/query.ts';
import type { CleanroomApi } from './api-client.ts';
import type { QueryView } from './schemas.ts';

/** Statuses a query never leaves. */
export const FINAL_QUERY_STATUSES: readonly QueryStatus[] = ['SUCCEEDED', 'FAILED', 'REJECTED', 'CANCELLED', 'EXPIRED'];

/** True once the query can no longer change. */
export function isFinalQueryStatus(status: QueryStatus): boolean {
  return FINAL_QUERY_STATUSES.includes(status);
}

/** Options of {@link waitForQuery}. */
export interface WaitForQueryOptions {
  /** Give up after this long; the last view is returned with `done: false`. */
  timeoutMs: number;
  /** Pause between polls (default 1 s). */
  intervalMs?: number;
  /** Told each time the status changes, the first view included. */
  onStatus?: (query: QueryView) => void;
  /** Injected time and sleep (tests). */
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
}

/** Where waiting ended: `done` when the query reached a final status, false on timeout. */
export interface WaitedQuery {
  query: QueryView;
  done: boolean;
}

/**
 * Polls a query until it reaches a final status or `timeoutMs` passes. Not reaching a final
 * status in time is an outcome (`done: false`), not an error; API and transport failures throw
 * as from {@link CleanroomApi.getQuery}.
 */
export async function waitForQuery(api: CleanroomApi, sessionId: string, queryId: string, options: WaitForQueryOptions): Promise<WaitedQuery> {
  const now = options.now ?? (() => Date.now());
  const sleep = options.sleep ?? ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)));
  const interval = options.intervalMs ?? 1000;
  const deadline = now() + options.timeoutMs;
  let last: QueryStatus | undefined;
  for (;;) {
    const query = await api.getQuery(sessionId, queryId);
    if (query.status !== last) options.onStatus?.(query);
    last = query.status;
    if (isFinalQueryStatus(query.status)) return { query, done: true };
    const left = deadline - now();
    if (left <= 0) return { query, done: false };
    await sleep(Math.min(interval, left));
  }
}
