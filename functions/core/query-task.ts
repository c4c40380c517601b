import { TASK_AUDIENCE, TASK_ISSUER, signTask, taskName, type TaskPayload, type TaskSigner } from '../../protocol/task.ts';
import type { QueuedTask } from './ports.ts';
import { taskInputsFor } from './query-inputs.ts';
import type { DatasetRecord, QueryRecord } from './records.ts';

/**
 * How long past a task's `exp` the control plane waits before it treats the attempt as dead: the
 * worker accepts a task up to 30 s after `exp` (clock skew), so this must be longer.
 */
export const TASK_EXPIRY_GRACE_SECONDS = 120;

/**
 * The task payload of a QUEUED query's current attempt. It is a function of stored records alone:
 * the query (`iat` is the attempt's `queued_at`; its inputs and recipient keys were fixed when it
 * was proposed) and the dataset records its inputs name, which never change. So re-enqueueing the
 * same attempt re-creates the same payload: same `jti`, same `exp`, same inputs, same name; only
 * the signature bytes differ. `datasets` may hold more than the query's inputs (the session's).
 */
export function taskPayloadFor(query: QueryRecord, ttlSeconds: number, datasets: readonly DatasetRecord[]): TaskPayload {
  if (query.status !== 'QUEUED' || query.task_id === null || query.queued_at === null) {
    throw new TypeError('only a QUEUED query with a task has a task payload');
  }
  const iat = Math.floor(Date.parse(query.queued_at) / 1000);
  // Queries proposed before datasets existed carry neither field; their tasks stay as they were.
  const data = {
    ...(query.inputs ? { inputs: taskInputsFor(query, datasets) } : {}),
    ...(query.recipient_keys ? { recipient_keys: query.recipient_keys.map((k) => ({ email: k.email, encryption_jwk: { ...k.encryption_jwk } })) } : {}),
  };
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
    ...data,
  };
}

/**
 * The signed, named task for the query's current attempt (signing may call KMS: never in a
 * transaction). `datasets`: the records of its session's datasets, at least those it reads.
 */
export async function signedTaskFor(query: QueryRecord, datasets: readonly DatasetRecord[], ttlSeconds: number, signer: TaskSigner): Promise<QueuedTask> {
  const body = await signTask(taskPayloadFor(query, ttlSeconds, datasets), signer);
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
