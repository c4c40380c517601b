import { CleanroomError } from '../../protocol/errors.ts';
import type { QueryStatus } from '../../protocol/query.ts';
import type { StatusCursor } from './ports.ts';
import { transact } from './query-commit.ts';
import type { ResolvedQueryDeps } from './query-deps.ts';
import { dispatch, queueApproved } from './query-dispatch.ts';
import * as rules from './query-rules.ts';
import { attemptExpired } from './query-task.ts';
import type { QueryRecord, SessionRecord } from './records.ts';

/** What one reconciler run did. */
export interface ReconcileReport {
  /** PENDING_APPROVAL past the approval TTL → EXPIRED. */
  expired: number;
  /** APPROVED left behind (a crash between the two writes) → QUEUED and enqueued. */
  queued: number;
  /** QUEUED whose task may not have reached the queue: enqueued again under the same name. */
  reenqueued: number;
  /** QUEUED whose task expired unrun → a new attempt. */
  retried: number;
  /** Not yet started in a closed session → CANCELLED. */
  cancelled: number;
  /** Out of attempts (TASK_EXPIRED) or RUNNING past the timeout (QUERY_TIMEOUT) → FAILED. */
  failed: number;
  /** Signing or enqueueing failed; left for the next run. */
  dispatch_failures: number;
  /** Moved by someone else meanwhile, or gone. */
  skipped: number;
}

/** Queries handled per status and run; the rest wait for the next run (a minute later). */
const SWEEP_LIMIT = 1000;
const SWEEP_PAGE = 100;
/** Failures of one query that mean "someone else moved it": skip it, carry on. */
const SKIPPABLE = new Set(['CONFLICT', 'ILLEGAL_TRANSITION', 'QUERY_NOT_FOUND']);

/**
 * One reconciler run (docs/architecture.md §9), relative to `now`: expires stale proposals, queues
 * APPROVED queries left behind, enqueues stale QUEUED ones again under the same task name (a
 * duplicate is a no-op) or gives them a new attempt once their task expired unrun, cancels what
 * has not started in closed sessions, and fails RUNNING queries past the timeout. Every change
 * is a conditional transition on fresh data, so runs may overlap with each other and with people.
 */
export async function reconcileQueries(deps: ResolvedQueryDeps, now: Date): Promise<ReconcileReport> {
  const report: ReconcileReport = { expired: 0, queued: 0, reenqueued: 0, retried: 0, cancelled: 0, failed: 0, dispatch_failures: 0, skipped: 0 };
  const ago = (seconds: number) => new Date(now.getTime() - seconds * 1000).toISOString();
  const tally = (before: QueryRecord, after: QueryRecord) => count(report, before, after);

  await sweep(deps, 'PENDING_APPROVAL', ago(deps.approvalTtlSeconds), report, async (stale) => {
    tally(stale, await systemTransition(deps, stale, (q, at) => (q.status === 'PENDING_APPROVAL' ? rules.expireQuery(q, at) : null)));
  });

  await sweep(deps, 'APPROVED', ago(deps.requeueAfterSeconds), report, async (stale) => {
    const { query, dispatched } = await queueApproved(deps, stale.session_id, stale.id);
    tally(stale, query);
    if (dispatched === false) report.dispatch_failures++;
  });

  await sweep(deps, 'QUEUED', ago(deps.requeueAfterSeconds), report, async (stale) => {
    const session = await deps.store.get(stale.session_id);
    if (session?.status === 'ACTIVE' && !attemptExpired(stale, deps.taskTtlSeconds, now)) {
      // The enqueue after the commit may have failed: same attempt, same name, same payload.
      if (await dispatch(deps, stale)) report.reenqueued++;
      else report.dispatch_failures++;
      return;
    }
    const after = await systemTransition(deps, stale, (q, at, s) => {
      if (q.status !== 'QUEUED' || q.attempt !== stale.attempt) return null;
      const closing = rules.cancelForClosedSession(s, q, at);
      if (closing) return closing;
      if (q.attempt >= deps.maxAttempts) return rules.failQuery(q, 'TASK_EXPIRED', at);
      return rules.requeueQuery(q, deps.newId(), at);
    });
    tally(stale, after);
    if (after.version !== stale.version && after.status === 'QUEUED' && !(await dispatch(deps, after))) report.dispatch_failures++;
  });

  await sweep(deps, 'RUNNING', ago(deps.runningTimeoutSeconds), report, async (stale) => {
    // Only the run that was stale when listed: a fresh RUNNING since then is left alone.
    const after = await systemTransition(deps, stale, (q, at) => (q.status === 'RUNNING' && q.started_at === stale.started_at ? rules.failQuery(q, 'QUERY_TIMEOUT', at) : null));
    tally(stale, after);
  });
  return report;
}

function count(report: ReconcileReport, before: QueryRecord, after: QueryRecord): void {
  if (after.version === before.version) report.skipped++;
  else if (after.status === 'EXPIRED') report.expired++;
  else if (after.status === 'CANCELLED') report.cancelled++;
  else if (after.status === 'FAILED') report.failed++;
  else if (after.status === 'QUEUED' && before.status === 'QUEUED') report.retried++;
  else if (after.status === 'QUEUED') report.queued++;
}

/** A transition by the control plane on fresh data; `decide` returning null leaves the query be. */
async function systemTransition(deps: ResolvedQueryDeps, stale: QueryRecord, decide: (query: QueryRecord, now: string, session: SessionRecord) => rules.QueryTransition | null): Promise<QueryRecord> {
  const { query } = await transact(deps, stale.session_id, stale.id, (session, query, now) => {
    if (!session || !query) throw new CleanroomError('QUERY_NOT_FOUND', 'query not found');
    const transition = decide(query, now, session);
    return transition ? { transition, actor: rules.CONTROL_PLANE_ACTOR } : { unchanged: query };
  });
  return query;
}

/** Pages through queries in `status` since before `before`, oldest first; one failure skips one query. */
async function sweep(deps: ResolvedQueryDeps, status: QueryStatus, before: string, report: ReconcileReport, handle: (query: QueryRecord) => Promise<void>): Promise<void> {
  let after: StatusCursor | undefined;
  for (let seen = 0; seen < SWEEP_LIMIT; ) {
    const rows = await deps.store.listQueriesInStatus(status, { before, limit: SWEEP_PAGE, ...(after ? { after } : {}) });
    for (const row of rows) {
      try {
        await handle(row);
      } catch (error) {
        // Lost to another writer, or gone: the next run sees the fresh state. Outages propagate.
        if (!(error instanceof CleanroomError) || !SKIPPABLE.has(error.code)) throw error;
        report.skipped++;
      }
    }
    seen += rows.length;
    const last = rows.at(-1);
    if (rows.length < SWEEP_PAGE || !last) return;
    after = { status_since: last.status_since, id: last.id };
  }
}
