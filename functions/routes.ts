import { devIdpConfiguration, devIdpJwks, devIdpToken } from './handlers/dev-idp.ts';
import { environmentsMoved } from './handlers/legacy-environments.ts';
import { health, openapi } from './handlers/openapi.ts';
import { registerKeys } from './handlers/participant-keys.ts';
import { listDatasets } from './handlers/datasets-list.ts';
import { registerDataset } from './handlers/datasets-register.ts';
import { createUpload } from './handlers/datasets-upload.ts';
import { putLocalObject } from './handlers/local-objects.ts';
import { getQueryResult } from './handlers/query-result.ts';
import { requestSessionKey } from './handlers/session-key.ts';
import { addParticipant } from './handlers/participants-add.ts';
import { removeParticipant } from './handlers/participants-remove.ts';
import { approveQuery } from './handlers/queries-approve.ts';
import { cancelQuery } from './handlers/queries-cancel.ts';
import { getQuery } from './handlers/queries-get.ts';
import { listQueries } from './handlers/queries-list.ts';
import { proposeQuery } from './handlers/queries-propose.ts';
import { rejectQuery } from './handlers/queries-reject.ts';
import { recordQueryEvent } from './handlers/query-events.ts';
import { reconcile } from './handlers/reconcile.ts';
import { listAudit } from './handlers/session-audit.ts';
import { closeSession } from './handlers/sessions-close.ts';
import { createSession } from './handlers/sessions-create.ts';
import { getSession } from './handlers/sessions-get.ts';
import { listSessions } from './handlers/sessions-list.ts';
import type { Route } from './http/types.ts';

/**
 * Every route of the control plane with its auth requirement: the whole attack surface on one
 * screen. `docs/openapi.json` must describe each of them (a test checks).
 */
export const ROUTES: readonly Route[] = [
  { method: 'POST', path: '/api/tee/sessions', auth: 'user', summary: 'Create a session (instant)', handler: createSession },
  { method: 'GET', path: '/api/tee/sessions', auth: 'user', summary: "List the caller's sessions", handler: listSessions },
  { method: 'GET', path: '/api/tee/sessions/:id', auth: 'user', summary: 'Show a session', handler: getSession },
  { method: 'DELETE', path: '/api/tee/sessions/:id', auth: 'user', summary: 'Close a session (owner)', handler: closeSession },
  { method: 'POST', path: '/api/tee/sessions/:id/participants', auth: 'user', summary: 'Add a participant (owner)', handler: addParticipant },
  { method: 'DELETE', path: '/api/tee/sessions/:id/participants/:email', auth: 'user', summary: 'Remove a participant (owner)', handler: removeParticipant },
  { method: 'PUT', path: '/api/tee/sessions/:id/participants/me/keys', auth: 'user', summary: "Register the caller's public keys", handler: registerKeys },
  { method: 'GET', path: '/api/tee/sessions/:id/audit', auth: 'user', summary: 'Read the audit log', handler: listAudit },
  { method: 'POST', path: '/api/tee/sessions/:id/queries', auth: 'user', summary: 'Propose a query', handler: proposeQuery },
  { method: 'GET', path: '/api/tee/sessions/:id/queries', auth: 'user', summary: "List a session's queries", handler: listQueries },
  { method: 'GET', path: '/api/tee/sessions/:id/queries/:qid', auth: 'user', summary: 'Show a query', handler: getQuery },
  { method: 'POST', path: '/api/tee/sessions/:id/queries/:qid/approve', auth: 'user', summary: 'Approve a query (required approver)', handler: approveQuery },
  { method: 'POST', path: '/api/tee/sessions/:id/queries/:qid/reject', auth: 'user', summary: 'Reject a query (required approver)', handler: rejectQuery },
  { method: 'POST', path: '/api/tee/sessions/:id/queries/:qid/cancel', auth: 'user', summary: 'Cancel a query not yet started (proposer or owner)', handler: cancelQuery },
  { method: 'GET', path: '/api/tee/sessions/:id/queries/:qid/result', auth: 'user', summary: "Fetch a query's sealed result (recipients)", handler: getQueryResult },
  { method: 'POST', path: '/api/tee/sessions/:id/session-key', auth: 'user', summary: "Get the session key bundle (the worker's, relayed)", handler: requestSessionKey },
  { method: 'POST', path: '/api/tee/sessions/:id/datasets/uploads', auth: 'user', summary: "Get an upload URL for a dataset's ciphertext", handler: createUpload },
  { method: 'POST', path: '/api/tee/sessions/:id/datasets', auth: 'user', summary: 'Register an uploaded dataset (owner: the caller)', handler: registerDataset },
  { method: 'GET', path: '/api/tee/sessions/:id/datasets', auth: 'user', summary: "List a session's datasets", handler: listDatasets },
  { method: 'POST', path: '/internal/v1/queries/:qid/events', auth: 'worker', summary: 'Worker: report what happened to a query', handler: recordQueryEvent },
  { method: 'POST', path: '/internal/v1/reconcile', auth: 'worker', summary: 'Reconciler run (scheduler)', handler: reconcile },
  { method: 'POST', path: '/api/tee/environments', auth: 'public', summary: 'Gone: use /api/tee/sessions', handler: environmentsMoved },
  { method: 'GET', path: '/api/tee/environments', auth: 'public', summary: 'Gone: use /api/tee/sessions', handler: environmentsMoved },
  { method: 'GET', path: '/api/tee/environments/:id', auth: 'public', summary: 'Gone: use /api/tee/sessions/:id', handler: environmentsMoved },
  { method: 'DELETE', path: '/api/tee/environments/:id', auth: 'public', summary: 'Gone: use /api/tee/sessions/:id', handler: environmentsMoved },
  { method: 'GET', path: '/api/tee/openapi.json', auth: 'public', summary: 'This API, described in OpenAPI 3.1', handler: openapi },
  { method: 'GET', path: '/api/tee/health', auth: 'public', summary: 'Liveness', handler: health },
  { method: 'POST', path: '/dev-idp/token', auth: 'public', localOnly: true, summary: 'Dev identity provider: issue an ID token (local only)', handler: devIdpToken },
  { method: 'GET', path: '/dev-idp/jwks.json', auth: 'public', localOnly: true, summary: 'Dev identity provider: JWKS (local only)', handler: devIdpJwks },
  { method: 'GET', path: '/dev-idp/.well-known/openid-configuration', auth: 'public', localOnly: true, summary: 'Dev identity provider: discovery (local only)', handler: devIdpConfiguration },
  // The signed URL is the authorisation (an HMAC over key, deadline and size cap).
  { method: 'PUT', path: '/objects/:key*', auth: 'public', localOnly: true, summary: 'Local object store: signed upload (local only)', handler: putLocalObject },
];

/**
 * The routes a deployable mounts. The embedded stack serves every route on one server (the dev
 * identity provider included). In GCP the `api` target serves the people-facing routes and the
 * `internal` target, which only IAM principals can invoke, serves the `worker` routes alone.
 */
export function routesFor(mode: 'local' | 'gcp', target: 'api' | 'internal' = 'api'): Route[] {
  if (mode === 'local') return [...ROUTES];
  return ROUTES.filter((r) => !r.localOnly && (r.auth === 'worker') === (target === 'internal'));
}
