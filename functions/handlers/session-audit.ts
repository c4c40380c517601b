import { LIMITS, ListAuditQuerySchema } from '../../protocol/session.ts';
import { parseWith } from '../http/body.ts';
import { json } from '../http/responses.ts';
import type { Handler } from '../http/types.ts';
import { sessionIdParam } from './session-id.ts';

/**
 * `GET /api/tee/sessions/:id/audit?after_seq=&limit=`: the hash-chained log, for participants.
 * Clients verify the chain themselves (protocol/audit.ts) and remember the head they saw.
 */
export const listAudit: Handler = async ({ url, params, principal, deps }) => {
  const id = sessionIdParam(params);
  const query = parseWith(ListAuditQuerySchema, Object.fromEntries(url.searchParams));
  const limit = query.limit ?? LIMITS.pageSizeDefault;
  const { entries, head } = await deps.sessions.audit(principal.email, id, query.after_seq ?? 0, limit);
  const last = entries.at(-1);
  return json({ entries, head, next_after_seq: entries.length === limit && last ? last.seq : null });
};
