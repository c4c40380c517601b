import { toSessionView } from '../core/session-rules.ts';
import { json } from '../http/responses.ts';
import type { Handler } from '../http/types.ts';
import { sessionIdParam } from './session-id.ts';

/** `GET /api/tee/sessions/:id`: 404 for non-participants, exactly as for a missing session. */
export const getSession: Handler = async ({ params, principal, deps }) => {
  const session = await deps.sessions.get(principal.email, sessionIdParam(params));
  return json(toSessionView(session));
};
