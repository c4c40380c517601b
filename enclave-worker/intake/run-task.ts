import type { TaskRecipientKey } from '../../protocol/dataset.ts';
import { CleanroomError } from '../../protocol/errors.ts';
import type { TaskPayload } from '../../protocol/task.ts';
import type { Executor } from '../executor/executor.ts';
import type { ExecuteRequest } from '../executor/ports.ts';
import type { Reporter } from '../report/control-plane.ts';
import type { LeaseOutcome } from './lease-store.ts';

/**
 * The key of every recipient the task names, exactly once each, in the task's order; null when a
 * recipient has no key or has two (the result cannot be sealed to exactly the recipients).
 * Keys of emails that are not recipients are left out: results go to recipients only.
 */
export function recipientKeysOf(payload: Pick<TaskPayload, 'recipients' | 'recipient_keys'>): TaskRecipientKey[] | null {
  const byEmail = new Map<string, TaskRecipientKey[]>();
  for (const key of payload.recipient_keys ?? []) byEmail.set(key.email, [...(byEmail.get(key.email) ?? []), key]);
  const keys: TaskRecipientKey[] = [];
  for (const email of new Set(payload.recipients)) {
    const found = byEmail.get(email);
    if (found?.length !== 1) return null;
    keys.push(found[0]!);
  }
  return keys;
}

/** The executor's request for a verified task. */
export function executeRequestOf(payload: TaskPayload, recipients: readonly TaskRecipientKey[], signal: AbortSignal): ExecuteRequest {
  return {
    sessionId: payload.session_id,
    queryId: payload.query_id,
    attempt: payload.attempt,
    sql: payload.sql,
    inputs: payload.inputs ?? [],
    recipients,
    signal,
  };
}

/**
 * One verified task: tell the control plane it runs (it refuses, with a 4xx, a query that may no
 * longer run), execute, report the outcome. A task whose recipients lack keys fails with
 * `RECIPIENT_KEY_MISSING` before anything is read. Codes only leave the worker, never engine text.
 */
export async function runTask(payload: TaskPayload, signal: AbortSignal, executor: Executor, reporter: Reporter): Promise<LeaseOutcome> {
  const base = { session_id: payload.session_id, query_id: payload.query_id, task_id: payload.jti };
  const running = await reporter.report({ ...base, event: 'RUNNING', at: new Date().toISOString() });
  if (running === 'refused') return { status: 'FAILED', code: 'ILLEGAL_TRANSITION' };
  if (running === 'unreachable') throw new CleanroomError('STORE_UNAVAILABLE', 'the control plane is unreachable', { retryAfter: 10 });
  const recipients = recipientKeysOf(payload);
  const outcome = recipients ? await executor.execute(executeRequestOf(payload, recipients, signal)) : ({ status: 'FAILED', code: 'RECIPIENT_KEY_MISSING' } as const);
  if (outcome.status === 'CANCELLED') throw new CleanroomError('TASK_IN_PROGRESS', 'the task request closed', { retryAfter: 1 });
  const at = new Date().toISOString();
  const reported =
    outcome.status === 'SUCCEEDED'
      ? await reporter.report({
          ...base,
          event: 'SUCCEEDED',
          at,
          stats: { bytes: outcome.result.bytes, elapsed_ms: Math.round(outcome.result.elapsedMs) },
          result_ref: outcome.result.ref,
        })
      : await reporter.report({ ...base, event: 'FAILED', at, error_code: outcome.code });
  // The result is written (once); if the control plane did not hear of it, a redelivery reports again.
  if (reported === 'unreachable') throw new CleanroomError('STORE_UNAVAILABLE', 'the control plane is unreachable', { retryAfter: 10 });
  return outcome.status === 'SUCCEEDED' ? { status: 'SUCCEEDED' } : { status: 'FAILED', code: outcome.code };
}
