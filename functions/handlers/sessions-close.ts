import { toSessionView } from '../core/session-rules.ts';
import { json } from '../http/responses.ts';
import type { Handler } from '../http/types.ts';
import { sessionIdParam } from './session-id.ts';

/** `DELETE /api/tee/sessions/:id`: owner only; idempotent; the session becomes CLOSED. */
export const closeSession: Handler = async ({ params, principal, deps }) => {
  const session = await deps.sessions.close(principal.email, sessionIdParam(params));
  return json(toSessionView(session));
};
