import type { JWK, JWTVerifyGetKey } from 'jose';
import type { SessionKeyBundle } from '../../protocol/dataset.ts';
import { CleanroomError } from '../../protocol/errors.ts';
import { verifySessionKeyRequestJws } from '../../protocol/task-verify.ts';
import { readCappedText } from '../intake/body.ts';
import { authenticateControlPlane, type CallerVerifier } from '../intake/caller.ts';
import type { IntakeLogger } from '../intake/handler.ts';
import type { Attest } from '../keys/session-keys.ts';
import { tokenBuckets } from './rate-limit.ts';
import { errorJson, json } from './respond.ts';

/** `Retry-After` of an outage whose adapter did not say (seconds). */
const DEFAULT_RETRY_AFTER = 5;

/** What `POST /session-keys` needs, built by the worker's composition root. */
export interface SessionKeyEndpointDeps {
  /** The same caller check as `POST /tasks`. */
  verifyCaller: CallerVerifier;
  expectedCallerEmail: string;
  /** The control plane's public task-signing keys (session key requests are signed like tasks). */
  taskKeys: JWK[] | JWTVerifyGetKey;
  sessionKeys: { bundle(sessionId: string, nonce: string, attest: Attest): Promise<SessionKeyBundle> };
  /** A fresh attestation binding the caller's nonce and the identity key, as `/attestation` gives. */
  attest: Attest;
  clock: { now(): Date };
  /** Largest body read (default 16 KiB: a request is well under 1 KiB). */
  maxBodyBytes?: number;
  /** Monotonic milliseconds for the rate limit (injected in tests). */
  monotonicNow?: () => number;
  log?: IntakeLogger;
}

/**
 * The worker's `POST /session-keys`: the control plane relays a participant's request for a
 * session's key bundle (docs/architecture.md invariant 3). Refuses in a fixed order, one code per step: the
 * caller (`TASK_UNAUTHENTICATED`), body size (`PAYLOAD_TOO_LARGE`), the signed request
 * (`TASK_MALFORMED` / `TASK_SIGNATURE` / `TASK_EXPIRED`; a query task is not a session key
 * request), the rate limit (`RATE_LIMITED`). Then it gets or creates the key and answers the
 * {@link SessionKeyBundle}. Key service and object store outages are `503` with `Retry-After`.
 *
 * Rate-limited like `/attestation` (each answer asks the TEE for a token), but per session: every
 * call comes from the control plane, so a per-address bucket would make all sessions share one.
 */
export function createSessionKeyEndpoint(deps: SessionKeyEndpointDeps): (request: Request) => Promise<Response> {
  const limiter = tokenBuckets({ capacity: 10, refillPerSecond: 2, ...(deps.monotonicNow ? { now: deps.monotonicNow } : {}) });
  return async (request) => {
    let sessionId: string | undefined;
    try {
      if (request.method !== 'POST') throw new CleanroomError('METHOD_NOT_ALLOWED', 'use POST');
      await authenticateControlPlane(deps.verifyCaller, deps.expectedCallerEmail, request.headers.get('authorization'));
      const body = await readCappedText(request, deps.maxBodyBytes ?? 16 * 1024);
      const payload = await verifySessionKeyRequestJws(body.trim(), { keys: deps.taskKeys, currentDate: deps.clock.now() });
      sessionId = payload.session_id;
      if (!limiter.take(payload.session_id)) throw new CleanroomError('RATE_LIMITED', 'too many session key requests', { retryAfter: 1 });
      return json(await deps.sessionKeys.bundle(payload.session_id, payload.nonce, deps.attest));
    } catch (error) {
      const refused = error instanceof CleanroomError ? withRetryAfter(error) : new CleanroomError('INTERNAL', 'session key failure', { cause: error });
      const fields = { code: refused.code, session_id: sessionId, cause: causeName(refused) };
      if (refused.status >= 500) deps.log?.error('session key request failed', fields);
      else deps.log?.warn('session key request refused', fields);
      return errorJson(refused);
    }
  };
}

/** Every 503 tells the control plane when to come back. */
function withRetryAfter(error: CleanroomError): CleanroomError {
  if (error.status !== 503 || error.retryAfter !== undefined) return error;
  return new CleanroomError(error.code, error.message, { cause: error.cause, retryAfter: DEFAULT_RETRY_AFTER });
}

function causeName(error: CleanroomError): string | undefined {
  const cause = error.cause;
  if (cause instanceof CleanroomError) return cause.code;
  return cause instanceof Error ? cause.name : undefined;
}
