import { TASK_AUDIENCE, TASK_ISSUER, signTask, taskName, type TaskPayload, type TaskSigner } from '../../protocol/task.ts';
import type { QueuedTask } from './ports.ts';
import type { QueryRecord } from './records.ts';

/**
 * How long past a task's `exp` the control plane waits before it treats the attempt as dead: the
 * worker accepts a task up to 30 s after `exp` (clock skew), so this must be longer.
 */
export const TASK_EXPIRY_GRACE_SECONDS = 120;

/**
 * The task payload of a QUEUED query's current attempt. It is a function of the record alone
 * (`iat` is the attempt's `queued_at`), so re-enqueueing the same attempt re-creates the same
 * payload: same `jti`, same `exp`, same name; only the signature bytes differ.
 */
export function taskPayloadFor(query: QueryRecord, ttlSeconds: number): TaskPayload {
  if (query.status !== 'QUEUED' || query.task_id === null || query.queued_at === null) {
    throw new TypeError('only a QUEUED query with a task has a task payload');
  }
  const iat = Math.floor(Date.parse(query.queued_at) / 1000);
  return {
    v: 1,
    kind: 'execute_query',
    iss: TASK_ISSUER,
    aud: TASK_AUDIENCE,
    jti: query.task_id,
    iat,
    exp: iat + ttlSeconds,
    session_id: query.session_id,
    query_id: query.id,
    attempt: query.attempt,
    sql: query.sql,
    recipients: [...query.recipients],
  };
}

/** The signed, named task for the query's current attempt (signing may call KMS: never in a transaction). */
export async function signedTaskFor(query: QueryRecord, ttlSeconds: number, signer: TaskSigner): Promise<QueuedTask> {
  const body = await signTask(taskPayloadFor(query, ttlSeconds), signer);
  return { name: await taskName(query.id, query.attempt), body };
}

/**
 * Whether the current attempt's task can no longer run anywhere: past its `exp` and the worker's
 * skew, every copy of it is refused, so a new attempt cannot make the query run twice.
 */
export function attemptExpired(query: QueryRecord, ttlSeconds: number, now: Date): boolean {
  if (query.queued_at === null) return false;
  const exp = Math.floor(Date.parse(query.queued_at) / 1000) + ttlSeconds;
  return now.getTime() / 1000 > exp + TASK_EXPIRY_GRACE_SECONDS;
}
