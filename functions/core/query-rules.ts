import type { AuditEntry } from '../../protocol/audit.ts';
import { sha256Hex } from '../../protocol/canonical-json.ts';
import { CleanroomError, isErrorCode, type ErrorCode } from '../../protocol/errors.ts';
import type { ProposeQueryRequest, QueryEvent, QueryStatus } from '../../protocol/query.ts';
import { recipientKeysFor, selectInputs } from './query-inputs.ts';
import type { DatasetRecord, QueryRecord, SessionRecord } from './records.ts';
import { assertActive } from './session-rules.ts';

/**
 * The query lifecycle as pure functions over records (docs/architecture.md §5). Each returns the next
 * record (without `version`, which the service sets) and the audit entry's action and details,
 * or throws a coded error. One function per transition; {@link TRANSITIONS} is the whole table.
 */
export type QueryDraft = Omit<QueryRecord, 'version'>;

/** A decided transition: the next record, and what the audit entry says about it. */
export interface QueryTransition {
  next: QueryDraft;
  audit: Pick<AuditEntry, 'action' | 'details'>;
}

/** Every status change the lifecycle allows; anything else is `ILLEGAL_TRANSITION`. */
export const TRANSITIONS: Readonly<Record<QueryStatus, readonly QueryStatus[]>> = {
  PENDING_APPROVAL: ['APPROVED', 'REJECTED', 'CANCELLED', 'EXPIRED'],
  APPROVED: ['QUEUED', 'CANCELLED'],
  // QUEUED → QUEUED is a new attempt after the previous attempt's task expired unrun.
  QUEUED: ['QUEUED', 'RUNNING', 'FAILED', 'CANCELLED'],
  RUNNING: ['SUCCEEDED', 'FAILED'],
  SUCCEEDED: [],
  FAILED: [],
  REJECTED: [],
  CANCELLED: [],
  EXPIRED: [],
};

/** Statuses a query can still leave without having run. */
export const OPEN_STATUSES = ['PENDING_APPROVAL', 'APPROVED', 'QUEUED'] as const satisfies readonly QueryStatus[];

/** Statuses the proposer or the session owner may cancel from. */
const CANCELLABLE: readonly QueryStatus[] = OPEN_STATUSES;

/** The actor of transitions no person made: queueing after approval, and the reconciler's. */
export const CONTROL_PLANE_ACTOR = 'control-plane';

/** Throws `ILLEGAL_TRANSITION` unless the table allows `from → to`. */
export function assertTransition(from: QueryStatus, to: QueryStatus): void {
  if (!TRANSITIONS[from].includes(to)) {
    throw new CleanroomError('ILLEGAL_TRANSITION', `a ${from} query cannot become ${to}`);
  }
}

/**
 * Who must approve, fixed at proposal time. `none`: the proposer alone, whose authenticated
 * proposal is their approval (never "nobody", docs/architecture.md invariant 5). `all_participants`: everyone
 * taking part when the query is proposed. `dataset_owners`: every participant
 * counts as a potential owner, the strictest reading.
 */
export function requiredApprovers(session: SessionRecord, proposer: string): string[] {
  if (session.config.approval_policy === 'none') return [proposer];
  return [...session.participant_emails];
}

/**
 * A new query. The proposer must take part in the ACTIVE session, and so must every recipient
 * (the proposer alone by default), who must also have registered keys to seal the result to
 * (RECIPIENT_KEY_MISSING). The recipients' keys and the datasets the SQL names (of `datasets`,
 * the session's) are fixed now, so approvers approve exactly what will run. Proposing counts as
 * the proposer's approval, so a query whose approvers are the proposer alone is APPROVED at once.
 */
export async function proposeQuery(session: SessionRecord, actor: string, input: ProposeQueryRequest, id: string, now: string, datasets: readonly DatasetRecord[]): Promise<QueryTransition> {
  assertActive(session);
  const recipients = [...new Set(input.recipients ?? [actor])];
  const outsider = recipients.find((email) => !session.participant_emails.includes(email));
  if (outsider !== undefined) throw new CleanroomError('NOT_A_RECIPIENT', `${outsider} does not take part in the session`);
  const recipient_keys = recipientKeysFor(session, recipients);
  const inputs = selectInputs(
    input.sql,
    datasets.filter((d) => d.session_id === session.id),
  );
  const required = requiredApprovers(session, actor);
  const approved = required.every((email) => email === actor);
  const next: QueryDraft = {
    id,
    session_id: session.id,
    sql: input.sql,
    proposer: actor,
    recipients,
    status: approved ? 'APPROVED' : 'PENDING_APPROVAL',
    status_since: now,
    required_approvers: required,
    decisions: [{ email: actor, decision: 'approve', at: now }],
    attempt: 0,
    task_id: null,
    created_at: now,
    updated_at: now,
    approved_at: approved ? now : null,
    queued_at: null,
    started_at: null,
    finished_at: null,
    error_code: null,
    stats: null,
    result_ref: null,
    inputs,
    recipient_keys,
  };
  return {
    next,
    audit: {
      action: 'query.proposed',
      details: {
        query_id: id,
        status: next.status,
        // The hash binds the exact SQL into the chain without copying it there.
        sql_sha256: await sha256Hex(input.sql),
        recipients: recipients.join(','),
        required_approvers: required.length,
        inputs: inputs.map((i) => i.dataset_id).join(','),
      },
    },
  };
}

/** A required approver approves; the last missing approval makes the query APPROVED. */
export function approveQuery(session: SessionRecord, query: QueryRecord, actor: string, now: string): QueryTransition {
  assertMayDecide(session, query, actor);
  const decisions = [...query.decisions, { email: actor, decision: 'approve' as const, at: now }];
  const approvedBy = new Set(decisions.filter((d) => d.decision === 'approve').map((d) => d.email));
  const complete = query.required_approvers.every((email) => approvedBy.has(email));
  if (complete) assertTransition(query.status, 'APPROVED');
  const next: QueryDraft = complete ? { ...query, decisions, status: 'APPROVED', status_since: now, approved_at: now, updated_at: now } : { ...query, decisions, updated_at: now };
  return { next: withoutVersion(next), audit: { action: 'query.approved', details: { query_id: query.id, status: next.status } } };
}

/** A required approver rejects: one rejection is final. */
export function rejectQuery(session: SessionRecord, query: QueryRecord, actor: string, now: string): QueryTransition {
  assertMayDecide(session, query, actor);
  assertTransition(query.status, 'REJECTED');
  const next: QueryDraft = {
    ...withoutVersion(query),
    decisions: [...query.decisions, { email: actor, decision: 'reject', at: now }],
    status: 'REJECTED',
    status_since: now,
    finished_at: now,
    updated_at: now,
  };
  return { next, audit: { action: 'query.rejected', details: { query_id: query.id, status: 'REJECTED' } } };
}

/** The proposer or the session owner withdraws a query that has not started. */
export function cancelQuery(session: SessionRecord, query: QueryRecord, actor: string, now: string): QueryTransition {
  assertActive(session);
  if (actor !== query.proposer && actor !== session.owner_email) {
    throw new CleanroomError('FORBIDDEN', 'only the proposer or the session owner can cancel a query');
  }
  if (!CANCELLABLE.includes(query.status)) throw new CleanroomError('ILLEGAL_TRANSITION', `a ${query.status} query cannot be cancelled`);
  return cancelled(query, now, 'cancelled');
}

/**
 * A query of a closed session that has not started is cancelled: closing stops everything that
 * has not run yet. Null when there is nothing to stop.
 */
export function cancelForClosedSession(session: SessionRecord, query: QueryRecord, now: string): QueryTransition | null {
  if (session.status !== 'CLOSED' || !CANCELLABLE.includes(query.status)) return null;
  return cancelled(query, now, 'session_closed');
}

/** APPROVED → QUEUED: the first attempt, whose task `taskId` is enqueued once this is committed. */
export function queueQuery(query: QueryRecord, taskId: string, now: string): QueryTransition {
  assertTransition(query.status, 'QUEUED');
  if (query.status !== 'APPROVED') throw new CleanroomError('ILLEGAL_TRANSITION', 'only an APPROVED query is queued');
  return queued(query, taskId, now);
}

/**
 * QUEUED → QUEUED with a new attempt and task, once the previous attempt's task has expired
 * without running: a new name, so the queue takes it although it refused the old one as a duplicate.
 */
export function requeueQuery(query: QueryRecord, taskId: string, now: string): QueryTransition {
  if (query.status !== 'QUEUED') throw new CleanroomError('ILLEGAL_TRANSITION', 'only a QUEUED query gets a new attempt');
  return queued(query, taskId, now);
}

/** PENDING_APPROVAL → EXPIRED: the approvals did not arrive within the approval TTL. */
export function expireQuery(query: QueryRecord, now: string): QueryTransition {
  assertTransition(query.status, 'EXPIRED');
  const next: QueryDraft = { ...withoutVersion(query), status: 'EXPIRED', status_since: now, finished_at: now, updated_at: now };
  return { next, audit: { action: 'query.expired', details: { query_id: query.id, status: 'EXPIRED' } } };
}

/** → FAILED with a fixed code, decided by the control plane (a task that can no longer run). */
export function failQuery(query: QueryRecord, code: ErrorCode, now: string): QueryTransition {
  assertTransition(query.status, 'FAILED');
  return failed(query, code, now);
}

/**
 * A worker event for the current attempt. RUNNING only from QUEUED; SUCCEEDED only from
 * RUNNING; FAILED from RUNNING or QUEUED (a refusal before start). The same event again (a
 * redelivered task, a retried report) changes nothing: null. An event of another attempt is
 * ignored (null) by the caller before this is asked.
 */
export function applyWorkerEvent(query: QueryRecord, event: QueryEvent, now: string): QueryTransition | null {
  if (query.status === event.event) return null;
  assertTransition(query.status, event.event);
  const base = withoutVersion(query);
  switch (event.event) {
    case 'RUNNING':
      return {
        next: { ...base, status: 'RUNNING', status_since: now, started_at: now, updated_at: now },
        audit: { action: 'query.running', details: { query_id: query.id, status: 'RUNNING', attempt: query.attempt } },
      };
    case 'SUCCEEDED': {
      const stats = event.stats ? coarseStats(event.stats) : null;
      const next: QueryDraft = {
        ...base,
        status: 'SUCCEEDED',
        status_since: now,
        finished_at: now,
        updated_at: now,
        stats,
        result_ref: event.result_ref ?? null,
      };
      return { next, audit: { action: 'query.succeeded', details: { query_id: query.id, status: 'SUCCEEDED', attempt: query.attempt } } };
    }
    case 'FAILED':
      return failed(query, fixedCode(event.error_code), now);
  }
}

function assertMayDecide(session: SessionRecord, query: QueryRecord, actor: string): void {
  assertActive(session);
  // Checked before the status: a second decision is ALREADY_DECIDED whatever became of the query.
  if (query.decisions.some((d) => d.email === actor)) throw new CleanroomError('ALREADY_DECIDED', 'you have already decided on this query');
  if (query.status !== 'PENDING_APPROVAL') throw new CleanroomError('ILLEGAL_TRANSITION', `a ${query.status} query takes no more decisions`);
  if (!query.required_approvers.includes(actor)) {
    throw new CleanroomError('FORBIDDEN', 'you are not an approver of this query (approvers are fixed when it is proposed)');
  }
}

function cancelled(query: QueryRecord, now: string, reason: 'cancelled' | 'session_closed'): QueryTransition {
  assertTransition(query.status, 'CANCELLED');
  const next: QueryDraft = { ...withoutVersion(query), status: 'CANCELLED', status_since: now, finished_at: now, updated_at: now };
  return { next, audit: { action: 'query.cancelled', details: { query_id: query.id, status: 'CANCELLED', reason } } };
}

function queued(query: QueryRecord, taskId: string, now: string): QueryTransition {
  const attempt = query.attempt + 1;
  const next: QueryDraft = {
    ...withoutVersion(query),
    status: 'QUEUED',
    status_since: now,
    queued_at: now,
    attempt,
    task_id: taskId,
    updated_at: now,
  };
  return { next, audit: { action: 'query.queued', details: { query_id: query.id, status: 'QUEUED', attempt } } };
}

function failed(query: QueryRecord, code: ErrorCode, now: string): QueryTransition {
  const next: QueryDraft = {
    ...withoutVersion(query),
    status: 'FAILED',
    status_since: now,
    finished_at: now,
    updated_at: now,
    error_code: code,
  };
  return {
    next,
    audit: { action: 'query.failed', details: { query_id: query.id, status: 'FAILED', attempt: query.attempt, error_code: code } },
  };
}

/**
 * Only codes of our closed set are kept (docs/architecture.md invariant 11): an uppercase string of the
 * worker's choosing could still carry a data value, so anything unknown becomes QUERY_FAILED.
 */
export function fixedCode(code: string | undefined): ErrorCode {
  return isErrorCode(code) ? code : 'QUERY_FAILED';
}

/**
 * What the control plane keeps of a run's statistics: bytes (result sizes are declared metadata)
 * and whole seconds; never the row count, which may be the answer itself (an overlap's size).
 */
export function coarseStats(stats: NonNullable<QueryEvent['stats']>): NonNullable<QueryRecord['stats']> {
  return { rows: null, bytes: stats.bytes, elapsed_ms: Math.ceil(stats.elapsed_ms / 1000) * 1000 };
}

function withoutVersion(query: QueryRecord | QueryDraft): QueryDraft {
  const { version: _version, ...draft } = query as QueryRecord;
  return draft;
}
