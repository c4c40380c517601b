import { toQueryView } from '../core/query-view.ts';
import { json } from '../http/responses.ts';
import type { Handler } from '../http/types.ts';
import { queryIdParam, queryService } from './query-id.ts';
import { sessionIdParam } from './session-id.ts';

/**
 * `POST /api/tee/sessions/:id/queries/:qid/approve`: a required approver approves (an
 * unsigned decision the control plane records; signed approvals are not built yet). The approval that completes the policy queues the query, so the answer
 * is then QUEUED. No body is read.
 */
export const approveQuery: Handler = async ({ params, principal, deps }) => {
  const id = sessionIdParam(params);
  const query = await queryService(deps).approve(principal.email, id, queryIdParam(params));
  return json(toQueryView(query));
};
