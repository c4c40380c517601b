import { DATASET_LIMITS } from '../../protocol/dataset.ts';
import { CleanroomError } from '../../protocol/errors.ts';
import { transact } from './query-commit.ts';
import type { ResolvedQueryDeps } from './query-deps.ts';
import { CONTROL_PLANE_ACTOR, cancelForClosedSession, queueQuery } from './query-rules.ts';
import { signedTaskFor } from './query-task.ts';
import type { QueryRecord } from './records.ts';

/**
 * Signs and enqueues the current attempt's task; only ever called after the QUEUED state is
 * committed, never inside a transaction (docs/architecture.md §9). A failure leaves the query QUEUED,
 * which is true, for the reconciler: false here, never an error for the caller.
 */
export async function dispatch(deps: ResolvedQueryDeps, query: QueryRecord): Promise<boolean> {
  try {
    // Read here, outside any transaction; the records never change, so this is no race.
    const datasets = query.inputs?.length ? await deps.store.listDatasets(query.session_id, { limit: DATASET_LIMITS.maxDatasetsPerSession }) : [];
    await deps.queue.enqueue(await signedTaskFor(query, datasets, deps.taskTtlSeconds, deps.signer));
    return true;
  } catch (error) {
    const code = error instanceof CleanroomError ? error.code : error instanceof TypeError ? 'TYPE_ERROR' : 'UNKNOWN';
    deps.onDispatchFailure?.({ session_id: query.session_id, query_id: query.id, attempt: query.attempt, code });
    return false;
  }
}

/**
 * APPROVED → QUEUED (or CANCELLED if the session closed meanwhile), then the task is enqueued.
 * Whoever commits the QUEUED write enqueues; a racer finds the query no longer APPROVED and
 * does nothing, so one approval yields one task name.
 */
export async function queueApproved(deps: ResolvedQueryDeps, sessionId: string, queryId: string): Promise<{ query: QueryRecord; dispatched: boolean | null }> {
  const { query, changed } = await transact(deps, sessionId, queryId, (session, query, now) => {
    if (!session || !query) throw new CleanroomError('QUERY_NOT_FOUND', 'query not found');
    if (query.status !== 'APPROVED') return { unchanged: query };
    const closing = cancelForClosedSession(session, query, now);
    if (closing) return { transition: closing, actor: CONTROL_PLANE_ACTOR };
    return { transition: queueQuery(query, deps.newId(), now), actor: CONTROL_PLANE_ACTOR };
  });
  const dispatched = changed && query.status === 'QUEUED' ? await dispatch(deps, query) : null;
  return { query, dispatched };
}
