import { toQueryView } from '../core/query-view.ts';
import { json } from '../http/responses.ts';
import type { Handler } from '../http/types.ts';
import { queryIdParam, queryService } from './query-id.ts';
import { sessionIdParam } from './session-id.ts';

/**
 * `POST /api/tee/sessions/:id/queries/:qid/reject`: a required approver rejects; the query is
 * REJECTED for good. No body is read.
 */
export const rejectQuery: Handler = async ({ params, principal, deps }) => {
  const id = sessionIdParam(params);
  const query = await queryService(deps).reject(principal.email, id, queryIdParam(params));
  return json(toQueryView(query));
};
