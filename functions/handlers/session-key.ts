import { SessionKeyRequestSchema } from '../../protocol/dataset.ts';
import { readJson } from '../http/body.ts';
import type { Handler } from '../http/types.ts';
import { jsonBytes } from '../http/responses.ts';
import { datapathService } from './datapath.ts';
import { sessionIdParam } from './session-id.ts';

/**
 * `POST /api/tee/sessions/:id/session-key {nonce}`: the worker's key bundle for an ACTIVE session,
 * relayed verbatim (the participant verifies its attestation and certificate before encrypting
 * anything to it). WORKER_UNAVAILABLE when the worker cannot be reached.
 */
export const requestSessionKey: Handler = async ({ request, params, principal, deps }) => {
  const id = sessionIdParam(params);
  const { nonce } = await readJson(request, SessionKeyRequestSchema);
  const bundle = await datapathService(deps).sessionKey(principal.email, id, nonce);
  return jsonBytes(new TextEncoder().encode(bundle));
};
