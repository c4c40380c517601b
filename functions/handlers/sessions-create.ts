import { CreateSessionRequestSchema } from '../../protocol/session.ts';
import { toSessionView } from '../core/session-rules.ts';
import { readJson } from '../http/body.ts';
import { json } from '../http/responses.ts';
import type { Handler } from '../http/types.ts';

/** `POST /api/tee/sessions`: instant; the caller becomes owner and first participant. */
export const createSession: Handler = async ({ request, principal, deps }) => {
  const input = await readJson(request, CreateSessionRequestSchema);
  const session = await deps.sessions.create(principal.email, input);
  return json(toSessionView(session), 201, { location: `/api/tee/sessions/${session.id}` });
};
