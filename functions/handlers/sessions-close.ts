import { CleanroomError } from '../../protocol/errors.ts';
import { toSessionView } from '../core/session-rules.ts';
import { json } from '../http/responses.ts';
import type { ApiDeps, Handler } from '../http/types.ts';
import { sessionIdParam } from './session-id.ts';

/**
 * `DELETE /api/tee/sessions/:id`: owner only; idempotent; the session becomes CLOSED. Then its
 * queries that have not started are cancelled, and its session key and dataset ciphertext are
 * deleted (crypto-shredding; sealed results stay, they are encrypted to their recipients). Neither
 * step is part of the close's transaction: if one fails, the close still stands, those queries
 * cannot start anyway (the worker's RUNNING report is refused for a closed session; the
 * reconciler cancels the rest), and the reconciler's final shredding pass deletes what is left.
 * Repeating the close repeats both steps.
 */
export const closeSession: Handler = async ({ params, principal, deps }) => {
  const id = sessionIdParam(params);
  const session = await deps.sessions.close(principal.email, id);
  if (deps.queries) {
    await bestEffort(deps, 'cancelling the queries of a closed session failed', id, () => deps.queries!.cancelOpen(principal.email, id));
  }
  if (deps.datapath) {
    await bestEffort(deps, 'shredding a closed session failed; the reconciler will finish it', id, () => deps.datapath!.shredClosed(session));
  }
  return json(toSessionView(session));
};

async function bestEffort(deps: ApiDeps, message: string, sessionId: string, step: () => Promise<unknown>): Promise<void> {
  try {
    await step();
  } catch (error) {
    const detail = error instanceof CleanroomError ? { code: error.code } : { code: 'INTERNAL', stack: (error as Error)?.stack };
    deps.log.warn(message, { session_id: sessionId, ...detail });
  }
}
