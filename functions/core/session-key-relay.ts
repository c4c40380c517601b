import * as v from 'valibot';
import { SessionKeyBundleSchema } from '../../protocol/dataset.ts';
import { CleanroomError } from '../../protocol/errors.ts';
import { TASK_AUDIENCE, TASK_ISSUER, signSessionKeyRequest } from '../../protocol/task.ts';
import type { ResolvedDataPathDeps } from './datapath-deps.ts';

/** Lifetime of a signed session key request: it is relayed at once, so one minute is plenty. */
export const SESSION_KEY_REQUEST_TTL_SECONDS = 60;

/**
 * Asks the worker for `sessionId`'s key bundle on behalf of a participant (checked by the
 * caller): a session key request signed with the task key, carrying the participant's nonce so
 * the attestation in the answer is fresh for them. The answer is relayed verbatim once it parses
 * as a `SessionKeyBundle` of this session; the participant verifies it (docs/architecture.md invariant 1), so
 * the control plane need not be trusted with it.
 */
export async function relaySessionKey(deps: ResolvedDataPathDeps, sessionId: string, nonce: string): Promise<string> {
  const iat = Math.floor(deps.clock.now().getTime() / 1000);
  let jws: string;
  try {
    jws = await signSessionKeyRequest(
      {
        v: 1,
        kind: 'session_key',
        iss: TASK_ISSUER,
        aud: TASK_AUDIENCE,
        jti: deps.newId(),
        iat,
        exp: iat + SESSION_KEY_REQUEST_TTL_SECONDS,
        session_id: sessionId,
        nonce,
      },
      deps.signer,
    );
  } catch (error) {
    // The signer (Cloud KMS in GCP) is out of reach: the same answer as any other key outage.
    if (!(error instanceof CleanroomError)) throw error;
    throw new CleanroomError('KEY_SERVICE_UNAVAILABLE', 'the control plane cannot sign right now; retry', { cause: error, retryAfter: 5 });
  }
  const text = await deps.worker.sessionKey(jws);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  const bundle = v.safeParse(SessionKeyBundleSchema, parsed);
  if (!bundle.success || bundle.output.session_id !== sessionId) {
    throw new CleanroomError('WORKER_UNAVAILABLE', "the worker answered with something other than this session's key bundle", {
      retryAfter: 5,
    });
  }
  return text;
}
