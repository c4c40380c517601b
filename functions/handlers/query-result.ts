import { jsonBytes } from '../http/responses.ts';
import type { Handler } from '../http/types.ts';
import { datapathService } from './datapath.ts';
import { queryIdParam } from './query-id.ts';
import { sessionIdParam } from './session-id.ts';

/**
 * `GET /api/tee/sessions/:id/queries/:qid/result`: the query's `SealedResult` exactly as the worker
 * stored it, for its recipients. Ciphertext only: the recipient opens it and checks its receipt.
 */
export const getQueryResult: Handler = async ({ params, principal, deps }) => {
  const id = sessionIdParam(params);
  return jsonBytes(await datapathService(deps).result(principal.email, id, queryIdParam(params)));
};
