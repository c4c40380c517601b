import * as v from 'valibot';
import { CleanroomError } from '../../protocol/errors.ts';
import type { QueryService } from '../core/query-service.ts';
import type { ApiDeps } from '../http/types.ts';

const QueryIdSchema = v.pipe(v.string(), v.uuid());

/** The `:qid` path parameter; a malformed id cannot exist, so it is simply not found. */
export function queryIdParam(params: Record<string, string>): string {
  const result = v.safeParse(QueryIdSchema, params.qid);
  if (!result.success) throw new CleanroomError('QUERY_NOT_FOUND', 'query not found');
  return result.output;
}

/** The query service; a deployable that mounts query routes without one is misbuilt (500). */
export function queryService(deps: ApiDeps): QueryService {
  if (!deps.queries) throw new TypeError('the composition root did not provide ApiDeps.queries');
  return deps.queries;
}
