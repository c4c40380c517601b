import { IssuerKeyCache, verifyAttestation, type AttestationClaims } from '../../protocol/attestation.ts';
import { DEFAULT_ATTESTATION_AUDIENCE, DEV_ATTESTATION_PATH, policyForToken } from './attestation-policy.ts';
import { AttestationAnswerSchema } from './schemas.ts';
import { asGlobalFetch, requestJson, type FetchLike } from './transport.ts';

export { DEFAULT_ATTESTATION_AUDIENCE, DEV_ATTESTATION_PATH };

/** Options of {@link attestWorker}. */
export interface AttestWorkerOptions {
  /** The worker's base URL, e.g. `http://localhost:8080` (a trailing slash is ignored). */
  workerUrl: string;
  /** Container image digests (`sha256:<64 hex>`) the worker may run; normally the session manifest's. */
  allowedImageDigests: readonly string[];
  /** The `aud` the token must carry (default {@link DEFAULT_ATTESTATION_AUDIENCE}). */
  audience?: string;
  /**
   * Accept a token of the worker's dev attester (`hwmodel: INSECURE_DEV`, no TEE).
   * WARNING: a dev token proves nothing; anyone can run a dev attester. Local use only.
   */
  allowInsecureDev?: boolean;
  /**
   * With `allowInsecureDev` and no allowed digest: take the digest the dev token claims.
   * WARNING: then not even the code identity is checked. Ignored for any other token.
   */
  acceptDevClaimedDigest?: boolean;
  /** Defaults to the global `fetch`; also used for the dev issuer's keys when no `keyCache` is given. */
  fetch?: FetchLike;
  /** Discovery and JWKS cache; one is enough for a whole program. */
  keyCache?: IssuerKeyCache;
  /** Per request to the worker and to key sources. Default 10 s. */
  timeoutMs?: number;
  /** Injected time. */
  currentDate?: Date;
  /** Injected randomness: a fresh base64url nonce of 16-128 characters. Default 32 random bytes. */
  nonce?: () => string;
}

/** A worker whose attestation verified, and what it established. */
export interface AttestedWorker {
  workerUrl: string;
  /** The worker's own label for its instance (unverified: not in the token). */
  instanceId: string;
  /** The worker's label for its attester, `confidential-space` or `insecure-dev` (unverified). */
  kind: string;
  /** The public identity key the token binds: only its RFC 7638 members, nothing unbound. */
  identityJwk: Record<string, string>;
  identityThumbprint: string;
  claims: AttestationClaims;
  /** True when a dev attester's token was accepted: say so loudly, nothing is attested. */
  insecureDev: boolean;
  /** False when the digest was taken from the dev token itself rather than an allow-list. */
  digestPinned: boolean;
  /** The token's expiry. */
  expiresAt: string;
}

/**
 * Asks the worker for an attestation token bound to a fresh nonce and verifies it with
 * `verifyAttestation` (docs/architecture.md invariant 1): signature, issuer, audience, age, platform claims,
 * image digest, then the nonce that binds the presented identity key. Throws `CleanroomError`
 * with an `ATTESTATION_*` code when refused, the worker's own code when it refuses the request
 * (e.g. `RATE_LIMITED`), and `TransportError` (`WORKER_UNREACHABLE`, ...) when it did not answer.
 */
export async function attestWorker(options: AttestWorkerOptions): Promise<AttestedWorker> {
  const workerUrl = options.workerUrl.replace(/\/+$/, '');
  const timeoutMs = options.timeoutMs ?? 10_000;
  const fetchFn = options.fetch ?? ((input, init) => fetch(input, init));
  const nonce = (options.nonce ?? randomNonce)();
  const answer = await requestJson({
    fetch: fetchFn,
    baseUrl: workerUrl,
    method: 'GET',
    path: `/attestation?nonce=${encodeURIComponent(nonce)}`,
    timeoutMs,
    schema: AttestationAnswerSchema,
    peer: 'worker',
  });

  const { policy, digestPinned } = policyForToken(answer.token, {
    workerUrl,
    allowedImageDigests: options.allowedImageDigests,
    ...(options.audience !== undefined ? { audience: options.audience } : {}),
    allowInsecureDev: options.allowInsecureDev === true,
    acceptDevClaimedDigest: options.acceptDevClaimedDigest === true,
  });

  const keyCache = options.keyCache ?? new IssuerKeyCache({ fetch: asGlobalFetch(fetchFn), timeoutMs });
  const verified = await verifyAttestation(answer.token, {
    nonce,
    identityJwk: answer.identity_jwk,
    policy,
    keyCache,
    ...(options.currentDate !== undefined ? { currentDate: options.currentDate } : {}),
  });
  return {
    workerUrl,
    instanceId: answer.instance_id,
    kind: answer.kind,
    identityJwk: thumbprintMembers(answer.identity_jwk),
    identityThumbprint: verified.identityThumbprint,
    claims: verified.claims,
    insecureDev: verified.insecureDev,
    digestPinned,
    expiresAt: new Date(verified.claims.exp * 1000).toISOString(),
  };
}

/** 32 random bytes, base64url: the caller's share of the nonce, never reused. */
export function randomNonce(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(32));
  let binary = '';
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

const THUMBPRINT_MEMBERS: Record<string, readonly string[]> = { EC: ['kty', 'crv', 'x', 'y'], OKP: ['kty', 'crv', 'x'], RSA: ['kty', 'n', 'e'] };

/** Only what the verified thumbprint covers; `alg`, `use` or `kid` next to it were never bound. */
function thumbprintMembers(jwk: Record<string, unknown>): Record<string, string> {
  const members = THUMBPRINT_MEMBERS[String(jwk.kty)] ?? [];
  return Object.fromEntries(members.map((name) => [name, String(jwk[name])]));
}
