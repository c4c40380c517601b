import type { JWK, JWTVerifyGetKey } from 'jose';
import { CleanroomError } from '../../protocol/errors.ts';
import type { TaskPayload } from '../../protocol/task.ts';
import { verifyTaskJws } from '../../protocol/task-verify.ts';
import { authenticateControlPlane, type CallerVerifier } from './caller.ts';
import { errorJson, json } from '../http/respond.ts';
import { readCappedText } from './body.ts';
import type { LeaseKey, LeaseOutcome, LeaseStore } from './lease-store.ts';

/** Structured log lines; never a token, a key, a task body or a row of data. */
export interface IntakeLogger {
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
}

/** What the intake needs, built by the worker's composition root. */
export interface TaskIntakeDeps {
  verifyCaller: CallerVerifier;
  /** The control plane's service account (locally: the email the dev IdP token is issued for). */
  expectedCallerEmail: string;
  /** The control plane's public task-signing keys. */
  taskKeys: JWK[] | JWTVerifyGetKey;
  leases: LeaseStore;
  /** Runs the query; `signal` aborts when the task request closes (docs/architecture.md §8). */
  execute: (payload: TaskPayload, signal: AbortSignal) => Promise<LeaseOutcome>;
  clock: { now(): Date };
  /** Unique per worker process start: a lease of another boot belongs to a worker that died. */
  bootId: string;
  /** Largest task body read (default 1 MiB, Cloud Tasks' task size limit). */
  maxBodyBytes?: number;
  /** How long a lease of this boot counts as live (default 40 min: past the longest dispatch deadline). */
  leaseMs?: number;
  /** `Retry-After` of a redelivery that finds the task running (default 10 s). */
  inProgressRetryAfterSeconds?: number;
  log?: IntakeLogger;
}

/**
 * The worker's `POST /tasks`. Refuses in a fixed order, one code per step: the caller's OIDC
 * token and email (`TASK_UNAUTHENTICATED`), body size (`PAYLOAD_TOO_LARGE`), the task JWS
 * (`TASK_MALFORMED` / `TASK_SIGNATURE` / `TASK_EXPIRED`), then the lease (`TASK_REPLAYED` for a
 * finished attempt, `TASK_IN_PROGRESS` + `Retry-After` for a running one). Only then does the
 * query run, and the answer (2xx) is sent once its outcome is recorded.
 */
export function createTaskIntake(deps: TaskIntakeDeps): (request: Request) => Promise<Response> {
  return async (request) => {
    let key: LeaseKey | undefined;
    try {
      if (request.method !== 'POST') throw new CleanroomError('METHOD_NOT_ALLOWED', 'tasks are POSTed');
      await authenticateControlPlane(deps.verifyCaller, deps.expectedCallerEmail, request.headers.get('authorization'));
      const body = await readCappedText(request, deps.maxBodyBytes ?? 1024 * 1024);
      const payload = await verifyTaskJws(body.trim(), { keys: deps.taskKeys, currentDate: deps.clock.now() });
      key = { jti: payload.jti, queryId: payload.query_id, attempt: payload.attempt };
      return await run(deps, payload, key, request.signal);
    } catch (error) {
      const refused = asCleanroomError(error);
      // Enough for the log (code, step's cause kind, task ids), nothing for the caller.
      const fields = { code: refused.code, task: request.headers.get('x-cloudtasks-taskname'), ...key, cause: causeName(refused) };
      if (refused.status >= 500 && refused.code !== 'TASK_IN_PROGRESS') deps.log?.error('task failed', fields);
      else deps.log?.warn('task refused', fields);
      return errorJson(refused);
    }
  };
}

async function run(deps: TaskIntakeDeps, payload: TaskPayload, key: LeaseKey, signal: AbortSignal): Promise<Response> {
  const claim = await deps.leases.acquire(key, { bootId: deps.bootId, now: deps.clock.now(), leaseMs: deps.leaseMs ?? 40 * 60_000 });
  if (claim.kind === 'completed') throw new CleanroomError('TASK_REPLAYED', 'this task has already run');
  if (claim.kind === 'busy') {
    const retryAfter = deps.inProgressRetryAfterSeconds ?? 10;
    throw new CleanroomError('TASK_IN_PROGRESS', 'this task is running', { retryAfter });
  }
  if (claim.takenOver) deps.log?.warn('task lease taken over from a previous boot', { ...key });

  let outcome: LeaseOutcome;
  try {
    // The queue may have given up on this request while it waited for the lease.
    signal.throwIfAborted();
    outcome = await deps.execute(payload, signal);
  } catch (cause) {
    // Unfinished: give the lease back so the queue's redelivery runs the attempt again.
    await deps.leases.release(key, deps.bootId);
    // A coded refusal (e.g. `EXECUTOR_BUSY` with its Retry-After) passes through to the queue.
    if (cause instanceof CleanroomError) throw cause;
    throw new CleanroomError('INTERNAL', signal.aborted ? 'the task request closed' : 'the task did not finish', { cause });
  }
  if (!(await deps.leases.complete(key, deps.bootId, outcome, deps.clock.now()))) {
    deps.log?.warn('task finished after its lease was taken over', { ...key });
  }
  return json(outcome.code === undefined ? { status: outcome.status } : { status: outcome.status, code: outcome.code });
}

function asCleanroomError(error: unknown): CleanroomError {
  return error instanceof CleanroomError ? error : new CleanroomError('INTERNAL', 'task intake failure', { cause: error });
}

function causeName(error: CleanroomError): string | undefined {
  const cause = error.cause;
  if (cause instanceof CleanroomError) return cause.code;
  return cause instanceof Error ? cause.name : undefined;
}
