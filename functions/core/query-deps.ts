import type { TaskSigner } from '../../protocol/task.ts';
import type { Clock, DatasetStore, QueryStore, SessionStore, TaskQueue } from './ports.ts';

/** What the query use cases need; a composition root builds it once. */
export interface QueryServiceDeps {
  /**
   * One adapter serves the three ports: a query transition is a transaction over session and
   * query, and a proposal reads the session's datasets.
   */
  store: SessionStore & QueryStore & DatasetStore;
  clock: Clock;
  queue: TaskQueue;
  signer: TaskSigner;
  /** Query ids and task ids (`jti`); UUIDs in production, injectable for tests. */
  newId: () => string;
  /**
   * Lifetime of a signed task. WARNING: it must outlast the queue's whole retry window
   * (docs/architecture.md invariant 10), or a task the queue still retries is refused as expired. Default 24 h.
   */
  taskTtlSeconds?: number;
  /** A proposal not fully approved within this long is EXPIRED by the reconciler. Default 7 days. */
  approvalTtlSeconds?: number;
  /** APPROVED or QUEUED for longer than this, a query is queued or enqueued again. Default 120 s. */
  requeueAfterSeconds?: number;
  /**
   * RUNNING for longer than this, a query is FAILED with QUERY_TIMEOUT: no copy of its task can
   * still be running. Default: the task TTL plus one hour (past the longest dispatch deadline).
   */
  runningTimeoutSeconds?: number;
  /** Attempts (tasks) per query before it is FAILED with TASK_EXPIRED. Default 3. */
  maxAttempts?: number;
  /**
   * Told when signing or enqueueing a committed QUEUED query failed; the query stays QUEUED and
   * the reconciler tries again. Gets ids and a code only.
   */
  onDispatchFailure?: (failure: { session_id: string; query_id: string; attempt: number; code: string }) => void;
}

/** The deps with every default applied and checked. */
export type ResolvedQueryDeps = Required<Omit<QueryServiceDeps, 'onDispatchFailure'>> & Pick<QueryServiceDeps, 'onDispatchFailure'>;

/** Applies the defaults; a setting that is not a positive whole number is a bug (TypeError). */
export function resolveQueryDeps(deps: QueryServiceDeps): ResolvedQueryDeps {
  const taskTtlSeconds = positive(deps.taskTtlSeconds ?? 24 * 3600, 'taskTtlSeconds');
  return {
    ...deps,
    taskTtlSeconds,
    approvalTtlSeconds: positive(deps.approvalTtlSeconds ?? 7 * 24 * 3600, 'approvalTtlSeconds'),
    requeueAfterSeconds: positive(deps.requeueAfterSeconds ?? 120, 'requeueAfterSeconds'),
    runningTimeoutSeconds: positive(deps.runningTimeoutSeconds ?? taskTtlSeconds + 3600, 'runningTimeoutSeconds'),
    maxAttempts: positive(deps.maxAttempts ?? 3, 'maxAttempts'),
  };
}

function positive(value: number, name: string): number {
  if (!Number.isSafeInteger(value) || value < 1) throw new TypeError(`${name} must be a positive integer`);
  return value;
}
