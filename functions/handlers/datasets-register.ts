import { RegisterDatasetRequestSchema } from '../../protocol/dataset.ts';
import { toDatasetView } from '../core/dataset-rules.ts';
import { readJson } from '../http/body.ts';
import { json } from '../http/responses.ts';
import type { Handler } from '../http/types.ts';
import { datapathService } from './datapath.ts';
import { sessionIdParam } from './session-id.ts';

/**
 * `POST /api/tee/sessions/:id/datasets`: registers an uploaded dataset with the caller as owner.
 * The body holds only public metadata, the ciphertext's size and hash and the data key wrapped to
 * the session key; the object must be uploaded with exactly the declared size. 201 `DatasetView`.
 */
export const registerDataset: Handler = async ({ request, params, principal, deps }) => {
  const id = sessionIdParam(params);
  const body = await readJson(request, RegisterDatasetRequestSchema);
  const dataset = await datapathService(deps).register(principal.email, id, body);
  return json(toDatasetView(dataset), 201);
};
