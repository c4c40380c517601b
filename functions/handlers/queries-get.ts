import { toQueryView } from '../core/query-view.ts';
import { json } from '../http/responses.ts';
import type { Handler } from '../http/types.ts';
import { queryIdParam, queryService } from './query-id.ts';
import { sessionIdParam } from './session-id.ts';

/** `GET /api/tee/sessions/:id/queries/:qid`: status, decisions, timings and error code. */
export const getQuery: Handler = async ({ params, principal, deps }) => {
  const id = sessionIdParam(params);
  const query = await queryService(deps).get(principal.email, id, queryIdParam(params));
  return json(toQueryView(query));
};
