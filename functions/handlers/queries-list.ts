import * as v from 'valibot';
import { QUERY_STATUSES } from '../../protocol/query.ts';
import { LIMITS, PageLimitSchema } from '../../protocol/session.ts';
import { toQueryView } from '../core/query-view.ts';
import { parseWith } from '../http/body.ts';
import { decodeCursor, encodeCursor } from '../http/cursor.ts';
import { json } from '../http/responses.ts';
import type { Handler } from '../http/types.ts';
import { queryService } from './query-id.ts';
import { sessionIdParam } from './session-id.ts';

const ListQueriesQuerySchema = v.strictObject({
  status: v.optional(v.picklist(QUERY_STATUSES, 'status must be a query status')),
  limit: v.optional(PageLimitSchema),
  cursor: v.optional(v.pipe(v.string(), v.maxLength(512))),
});

/** `GET /api/tee/sessions/:id/queries?status=&limit=&cursor=`: a session's queries, newest first. */
export const listQueries: Handler = async ({ url, params, principal, deps }) => {
  const id = sessionIdParam(params);
  const query = parseWith(ListQueriesQuerySchema, Object.fromEntries(url.searchParams));
  const { queries, next } = await queryService(deps).list(principal.email, id, {
    limit: query.limit ?? LIMITS.pageSizeDefault,
    ...(query.status ? { status: query.status } : {}),
    ...(query.cursor ? { after: decodeCursor(query.cursor) } : {}),
  });
  return json({ queries: queries.map(toQueryView), next_cursor: next ? encodeCursor(next) : null });
};
