import type { QueryRecord } from './records.ts';

/**
 * A query as the API shows it to the session's participants: everything they need to decide and
 * follow it, minus the bookkeeping only the control plane and the worker use (the current task's
 * id, the version, the reconciler's clock) and the recipients' public keys (the session shows
 * their thumbprints). It never holds a result or an engine message.
 */
export type QueryView = Omit<QueryRecord, 'task_id' | 'version' | 'status_since' | 'inputs' | 'recipient_keys'> & {
  /** The datasets the query reads, fixed when it was proposed (empty for queries from before datasets). */
  inputs: NonNullable<QueryRecord['inputs']>;
};

export function toQueryView(query: QueryRecord): QueryView {
  return {
    id: query.id,
    session_id: query.session_id,
    sql: query.sql,
    proposer: query.proposer,
    recipients: [...query.recipients],
    status: query.status,
    required_approvers: [...query.required_approvers],
    decisions: query.decisions.map((d) => ({ ...d })),
    attempt: query.attempt,
    created_at: query.created_at,
    updated_at: query.updated_at,
    approved_at: query.approved_at,
    queued_at: query.queued_at,
    started_at: query.started_at,
    finished_at: query.finished_at,
    error_code: query.error_code,
    stats: query.stats && { ...query.stats },
    result_ref: query.result_ref,
    inputs: (query.inputs ?? []).map((i) => ({ ...i })),
  };
}
