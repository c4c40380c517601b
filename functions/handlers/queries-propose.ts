import { ProposeQueryRequestSchema } from '../../protocol/query.ts';
import { toQueryView } from '../core/query-view.ts';
import { readJson } from '../http/body.ts';
import { json } from '../http/responses.ts';
import type { Handler } from '../http/types.ts';
import { queryService } from './query-id.ts';
import { sessionIdParam } from './session-id.ts';

/**
 * `POST /api/tee/sessions/:id/queries {sql, recipients?}`: a participant proposes a query. 201
 * with PENDING_APPROVAL, or QUEUED at once when the proposer is its only approver (policy `none`).
 */
export const proposeQuery: Handler = async ({ request, params, principal, deps }) => {
  const id = sessionIdParam(params);
  const input = await readJson(request, ProposeQueryRequestSchema);
  const query = await queryService(deps).propose(principal.email, id, input);
  return json(toQueryView(query), 201, { location: `/api/tee/sessions/${encodeURIComponent(id)}/queries/${query.id}` });
};
