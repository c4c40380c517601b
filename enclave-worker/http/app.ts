import { CleanroomError } from '../../protocol/errors.ts';
import type { WorkerIdentity } from '../identity.ts';
import { errorJson, json } from './respond.ts';
import { tokenBuckets } from './rate-limit.ts';

/** What the worker's HTTP surface needs; built by `enclave-worker/main.ts`. */
export interface WorkerAppDeps {
  instanceId: string;
  imageDigest: string;
  identity: WorkerIdentity;
  startedAt: number;
  /** A fresh attestation token binding `nonce` and the identity key (docs/architecture.md invariant 1). */
  attest(nonce: string): Promise<{ token: string; kind: string; expiresAt: string | null }>;
  /** Queue, executor and resource figures for operators. */
  status(): Record<string, unknown>;
  /** `POST /tasks`: the signed-task intake. */
  intake(request: Request): Promise<Response>;
  /** `POST /session-keys`: a session's key bundle, for the control plane (`session-keys.ts`). */
  sessionKeys(request: Request): Promise<Response>;
  /** Extra public documents (the dev attester's discovery and JWKS), by exact path. */
  documents?: Record<string, () => unknown>;
  /** The caller's address, for the `/attestation` rate limit. */
  clientKey?: (request: Request) => string;
  now?: () => number;
}

const NONCE = /^[A-Za-z0-9_-]{16,128}$/;

/**
 * The worker (the seed's "TEE service") as one web-standard handler. The route table:
 *
 * | route                      | caller                                   |
 * | -------------------------- | ---------------------------------------- |
 * | `GET /health`              | anyone (load balancer health checks)     |
 * | `GET /attestation?nonce=`  | anyone, rate-limited per address         |
 * | `GET /status`              | operators (restricted at the front door) |
 * | `POST /tasks`              | the control plane (OIDC + signed task)   |
 * | `POST /session-keys`       | the control plane (OIDC + signed request), rate-limited per session |
 * | dev attester documents     | anyone, local mode only                  |
 */
export function createWorkerApp(deps: WorkerAppDeps): (request: Request) => Promise<Response> {
  const limiter = tokenBuckets({ capacity: 10, refillPerSecond: 2, ...(deps.now ? { now: deps.now } : {}) });
  const now = deps.now ?? (() => Date.now());
  return async (request) => {
    const { pathname, searchParams } = new URL(request.url);
    try {
      if (pathname === '/tasks') {
        if (request.method !== 'POST') throw new CleanroomError('METHOD_NOT_ALLOWED', 'use POST');
        return await deps.intake(request);
      }
      if (pathname === '/session-keys') {
        if (request.method !== 'POST') throw new CleanroomError('METHOD_NOT_ALLOWED', 'use POST');
        return await deps.sessionKeys(request);
      }
      if (request.method !== 'GET') throw new CleanroomError('METHOD_NOT_ALLOWED', 'use GET');
      if (pathname === '/health') {
        return json({
          status: 'ok',
          instance_id: deps.instanceId,
          uptime_s: Math.round((now() - deps.startedAt) / 1000),
          image_digest: deps.imageDigest,
        });
      }
      if (pathname === '/attestation') {
        const nonce = searchParams.get('nonce') ?? '';
        if (!NONCE.test(nonce)) throw new CleanroomError('VALIDATION_FAILED', 'nonce must be 16-128 base64url characters');
        if (!limiter.take(deps.clientKey?.(request) ?? 'all')) {
          throw new CleanroomError('RATE_LIMITED', 'too many attestation requests', { retryAfter: 1 });
        }
        const { token, kind, expiresAt } = await deps.attest(nonce);
        return json({ token, kind, expires_at: expiresAt, identity_jwk: deps.identity.publicJwk, instance_id: deps.instanceId });
      }
      if (pathname === '/status') return json(deps.status());
      const document = deps.documents?.[pathname];
      if (document) return json(document(), 200, { 'cache-control': 'max-age=60' });
      throw new CleanroomError('ROUTE_NOT_FOUND', `no route for ${pathname}`);
    } catch (error) {
      if (error instanceof CleanroomError) return errorJson(error);
      return json({ error: { code: 'INTERNAL', message: 'internal error' } }, 500);
    }
  };
}
