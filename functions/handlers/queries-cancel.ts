import { toQueryView } from '../core/query-view.ts';
import { json } from '../http/responses.ts';
import type { Handler } from '../http/types.ts';
import { queryIdParam, queryService } from './query-id.ts';
import { sessionIdParam } from './session-id.ts';

/**
 * `POST /api/tee/sessions/:id/queries/:qid/cancel`: the proposer or the session owner cancels a
 * query that has not started (PENDING_APPROVAL, APPROVED or QUEUED). No body is read.
 */
export const cancelQuery: Handler = async ({ params, principal, deps }) => {
  const id = sessionIdParam(params);
  const query = await queryService(deps).cancel(principal.email, id, queryIdParam(params));
  return json(toQueryView(query));
};
