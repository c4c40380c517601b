import { CleanroomError } from '../../protocol/errors.ts';
import { toSessionView } from '../core/session-rules.ts';
import { json } from '../http/responses.ts';
import type { Handler } from '../http/types.ts';
import { sessionIdParam } from './session-id.ts';

/**
 * `DELETE /api/tee/sessions/:id`: owner only; idempotent; the session becomes CLOSED. Then its
 * queries that have not started are cancelled. That second step is not part of the close's
 * transaction: if it fails, the close still stands, and those queries cannot start anyway (the
 * worker's RUNNING report is refused for a closed session; the reconciler cancels the rest).
 * Repeating the close repeats the cancelling.
 */
export const closeSession: Handler = async ({ params, principal, deps }) => {
  const id = sessionIdParam(params);
  const session = await deps.sessions.close(principal.email, id);
  if (deps.queries) {
    try {
      await deps.queries.cancelOpen(principal.email, id);
    } catch (error) {
      const detail = error instanceof CleanroomError ? { code: error.code } : { code: 'INTERNAL', stack: (error as Error)?.stack };
      deps.log.warn('cancelling the queries of a closed session failed', { session_id: id, ...detail });
    }
  }
  return json(toSessionView(session));
};
