import { IssuerKeyCache, type VerifiedAttestation } from '../../protocol/attestation.ts';
import type { SessionKeyBundle } from '../../protocol/dataset.ts';
import { verifySessionKeyBundle } from '../../protocol/session-key.ts';
import type { CleanroomApi } from './api-client.ts';
import { policyForToken, type AttestationChoice } from './attestation-policy.ts';
import { randomNonce } from './attestation.ts';
import { asGlobalFetch, type FetchLike } from './transport.ts';

/** Options of {@link fetchSessionKey}. */
export interface FetchSessionKeyOptions {
  api: CleanroomApi;
  sessionId: string;
  /** What to accept of the worker's attestation (allowed digests, the dev opt-ins). */
  attestation: AttestationChoice;
  /** Discovery and JWKS cache; one is enough for a whole program. */
  keyCache?: IssuerKeyCache;
  /** For the attestation issuer's keys when no `keyCache` is given. Defaults to the global `fetch`. */
  fetch?: FetchLike;
  /** Injected time. */
  currentDate?: Date;
  /** Injected randomness: a fresh base64url nonce of 16-128 characters. Default 32 random bytes. */
  nonce?: () => string;
}

/** A session key the caller may encrypt to: attested, certified, for this session. */
export interface SessionKey {
  sessionId: string;
  epoch: number;
  /** The public key with only its RFC 7638 members and `alg`/`use`. */
  publicJwk: { kty: string; crv: string; x: string; y: string; alg: string; use: string };
  thumbprint: string;
  attestation: VerifiedAttestation;
  /** True when a dev attester's token was accepted: say so loudly, nothing is attested. */
  insecureDev: boolean;
  /** False when the digest was taken from the dev token itself rather than an allow-list. */
  digestPinned: boolean;
}

/**
 * Asks for the session's key with a fresh nonce (`POST .../session-key`; the control plane relays
 * to the worker, which creates the key on first need) and verifies the bundle before anything is
 * encrypted to it (docs/architecture.md invariants 1 and 3): the attestation binding the worker's identity key
 * and this nonce, then the certificate of the session key by that identity key. Throws
 * `CleanroomError` with the `ATTESTATION_*` or `SESSION_KEY_INVALID` code when refused.
 */
export async function fetchSessionKey(options: FetchSessionKeyOptions): Promise<SessionKey> {
  const nonce = (options.nonce ?? randomNonce)();
  const bundle = await options.api.requestSessionKey(options.sessionId, nonce);
  const { policy, digestPinned } = policyForToken(bundle.attestation, options.attestation);
  const keyCache = options.keyCache ?? new IssuerKeyCache({ fetch: asGlobalFetch(options.fetch ?? ((input, init) => fetch(input, init))) });
  const verified = await verifySessionKeyBundle(bundle as SessionKeyBundle, {
    sessionId: options.sessionId,
    nonce,
    policy,
    keyCache,
    ...(options.currentDate !== undefined ? { currentDate: options.currentDate } : {}),
  });
  const { kty, crv, x, y } = verified.publicJwk;
  return {
    sessionId: options.sessionId,
    epoch: bundle.epoch,
    publicJwk: { kty: kty!, crv: crv!, x: x!, y: y!, alg: 'ECDH-ES+A256KW', use: 'enc' },
    thumbprint: verified.thumbprint,
    attestation: verified.attestation,
    insecureDev: verified.attestation.insecureDev,
    digestPinned,
  };
}
