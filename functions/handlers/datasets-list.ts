import { toDatasetView } from '../core/dataset-rules.ts';
import { json } from '../http/responses.ts';
import type { Handler } from '../http/types.ts';
import { datapathService } from './datapath.ts';
import { sessionIdParam } from './session-id.ts';

/** `GET /api/tee/sessions/:id/datasets`: the session's datasets, oldest first (at most 64, so one page). */
export const listDatasets: Handler = async ({ params, principal, deps }) => {
  const id = sessionIdParam(params);
  const datasets = await datapathService(deps).list(principal.email, id);
  return json({ datasets: datasets.map(toDatasetView) });
};
