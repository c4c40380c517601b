import { EmailSchema } from '../../protocol/session.ts';
import { toSessionView } from '../core/session-rules.ts';
import { parseWith } from '../http/body.ts';
import { json } from '../http/responses.ts';
import type { Handler } from '../http/types.ts';
import { sessionIdParam } from './session-id.ts';

/** `DELETE /api/tee/sessions/:id/participants/:email`: the owner removes a participant while ACTIVE. */
export const removeParticipant: Handler = async ({ params, principal, deps }) => {
  const id = sessionIdParam(params);
  const email = parseWith(EmailSchema, params.email);
  return json(toSessionView(await deps.sessions.removeParticipant(principal.email, id, email)));
};
