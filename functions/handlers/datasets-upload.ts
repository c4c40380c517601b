import { CreateUploadRequestSchema } from '../../protocol/dataset.ts';
import { readJson } from '../http/body.ts';
import { json } from '../http/responses.ts';
import type { Handler } from '../http/types.ts';
import { datapathService } from './datapath.ts';
import { sessionIdParam } from './session-id.ts';

/**
 * `POST /api/tee/sessions/:id/datasets/uploads {dataset_id, ciphertext_bytes}`: a participant with
 * registered keys gets a create-only URL to upload one dataset's ciphertext to, directly (the
 * API never relays data). 201 with the `UploadTicket`; DATASET_TOO_LARGE past the configured cap.
 */
export const createUpload: Handler = async ({ request, params, principal, deps }) => {
  const id = sessionIdParam(params);
  const body = await readJson(request, CreateUploadRequestSchema);
  return json(await datapathService(deps).createUpload(principal.email, id, body), 201);
};
