import { LIMITS, ListSessionsQuerySchema } from '../../protocol/session.ts';
import { toSessionView } from '../core/session-rules.ts';
import { parseWith } from '../http/body.ts';
import { decodeCursor, encodeCursor } from '../http/cursor.ts';
import { json } from '../http/responses.ts';
import type { Handler } from '../http/types.ts';

/** `GET /api/tee/sessions?status=&limit=&cursor=`: the caller's sessions, newest first. */
export const listSessions: Handler = async ({ url, principal, deps }) => {
  const query = parseWith(ListSessionsQuerySchema, Object.fromEntries(url.searchParams));
  const { sessions, next } = await deps.sessions.list(principal.email, {
    limit: query.limit ?? LIMITS.pageSizeDefault,
    ...(query.status ? { status: query.status } : {}),
    ...(query.cursor ? { after: decodeCursor(query.cursor) } : {}),
  });
  return json({ sessions: sessions.map(toSessionView), next_cursor: next ? encodeCursor(next) : null });
};
