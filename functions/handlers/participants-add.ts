import { AddParticipantRequestSchema } from '../../protocol/session.ts';
import { toSessionView } from '../core/session-rules.ts';
import { readJson } from '../http/body.ts';
import { json } from '../http/responses.ts';
import type { Handler } from '../http/types.ts';
import { sessionIdParam } from './session-id.ts';

/** `POST /api/tee/sessions/:id/participants`: the owner adds a participant while ACTIVE. */
export const addParticipant: Handler = async ({ request, params, principal, deps }) => {
  const id = sessionIdParam(params);
  const { email } = await readJson(request, AddParticipantRequestSchema);
  return json(toSessionView(await deps.sessions.addParticipant(principal.email, id, email)), 201);
};
