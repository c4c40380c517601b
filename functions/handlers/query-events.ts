import { CleanroomError } from '../../protocol/errors.ts';
import { QueryEventSchema } from '../../protocol/query.ts';
import { readJson } from '../http/body.ts';
import { json } from '../http/responses.ts';
import type { Handler } from '../http/types.ts';
import { queryIdParam, queryService } from './query-id.ts';

/**
 * `POST /internal/v1/queries/:qid/events` (worker only): the worker reports RUNNING, SUCCEEDED or
 * FAILED for its current task. 200 `{applied: false}` for a repeat or another attempt's event;
 * 409 SESSION_CLOSED or ILLEGAL_TRANSITION tells a worker about to start not to run the query.
 */
export const recordQueryEvent: Handler = async ({ request, params, principal, deps }) => {
  const qid = queryIdParam(params);
  const event = await readJson(request, QueryEventSchema);
  if (event.query_id !== qid) throw new CleanroomError('VALIDATION_FAILED', 'query_id: the path and the body name different queries');
  const { query, applied } = await queryService(deps).recordEvent(event, principal.email);
  return json({ query_id: query.id, status: query.status, applied });
};
