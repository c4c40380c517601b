import { decodeJwt } from 'jose';
import * as v from 'valibot';
import {
  AttestationClaimsSchema,
  INSECURE_DEV_HWMODEL,
  IssuerKeyCache,
  verifyAttestation,
  type AttestationClaims,
} from '../../protocol/attestation.ts';
import { CleanroomError } from '../../protocol/errors.ts';
import { AttestationAnswerSchema } from './schemas.ts';
import { requestJson, type FetchLike } from './transport.ts';

/** Where a worker serves its dev attester's issuer, under its public URL (the worker's `DEV_ISSUER_PATH`). */
export const DEV_ATTESTATION_PATH = '/dev-attestation';
/** The audience workers put in the tokens they hand to clients (the worker's default). */
export const DEFAULT_ATTESTATION_AUDIENCE = 'cleanroom-clients';

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
 * `verifyAttestation` (DESIGN invariant 1): signature, issuer, audience, age, platform claims,
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

  // Always named, so that a dev token is recognised (and refused without the opt-in). The worker
  // names it after the URL clients reach it by (its TEE_SERVICE_ENDPOINT).
  const devIssuer = `${workerUrl}${DEV_ATTESTATION_PATH}`;
  const unverified = peek(answer.token);
  refuseForeignDevIssuer(unverified, devIssuer);
  const claimedDigest = unverified?.submods?.container?.image_digest;
  const takeClaimed =
    options.allowInsecureDev === true && options.acceptDevClaimedDigest === true && options.allowedImageDigests.length === 0 &&
    unverified?.iss === devIssuer && claimedDigest !== undefined;
  // The claimed digest is only read here to build the allow-list; the verifier still checks the
  // signature over it, so this accepts exactly what the dev attester signed, nothing else.
  const allowedImageDigests = takeClaimed ? [claimedDigest] : [...options.allowedImageDigests];

  const keyCache = options.keyCache ?? new IssuerKeyCache({ fetch: asFetch(fetchFn), timeoutMs });
  const verified = await verifyAttestation(answer.token, {
    nonce,
    identityJwk: answer.identity_jwk,
    policy: {
      audience: options.audience ?? DEFAULT_ATTESTATION_AUDIENCE,
      allowedImageDigests,
      allowInsecureDev: options.allowInsecureDev === true,
      devIssuer,
    },
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
    digestPinned: !takeClaimed,
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

/** The token's claims WITHOUT verification, or undefined; only to choose a policy and to explain. */
function peek(token: string): AttestationClaims | undefined {
  try {
    const parsed = v.safeParse(AttestationClaimsSchema, decodeJwt(token));
    return parsed.success ? parsed.output : undefined;
  } catch {
    return undefined;
  }
}

/**
 * A dev attester that names itself under another URL (`127.0.0.1` for `localhost`, another
 * port) would otherwise be checked against Confidential Space's keys and fail obscurely. This
 * only ever refuses, and says how to fix it.
 */
function refuseForeignDevIssuer(claims: AttestationClaims | undefined, devIssuer: string): void {
  if (claims === undefined || claims.iss === devIssuer) return;
  const looksDev = claims.hwmodel === INSECURE_DEV_HWMODEL || claims.iss.endsWith(DEV_ATTESTATION_PATH);
  if (!looksDev) return;
  throw new CleanroomError(
    'ATTESTATION_ISSUER',
    `the worker's dev attester names itself ${claims.iss}, not ${devIssuer}: reach the worker by the URL it was given as its TEE_SERVICE_ENDPOINT`,
  );
}

const THUMBPRINT_MEMBERS: Record<string, readonly string[]> = { EC: ['kty', 'crv', 'x', 'y'], OKP: ['kty', 'crv', 'x'], RSA: ['kty', 'n', 'e'] };

/** Only what the verified thumbprint covers; `alg`, `use` or `kid` next to it were never bound. */
function thumbprintMembers(jwk: Record<string, unknown>): Record<string, string> {
  const members = THUMBPRINT_MEMBERS[String(jwk.kty)] ?? [];
  return Object.fromEntries(members.map((name) => [name, String(jwk[name])]));
}

/** A `FetchLike` in the shape of the global `fetch`, for the verifier's key cache. */
function asFetch(fetchFn: FetchLike): typeof fetch {
  return ((input: string | URL | Request, init?: RequestInit) =>
    fetchFn(input instanceof Request ? input.url : String(input), init ?? {})) as typeof fetch;
}
