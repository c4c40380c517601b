import { decodeJwt } from 'jose';
import * as v from 'valibot';
import { AttestationClaimsSchema, INSECURE_DEV_HWMODEL, type AttestationClaims, type AttestationPolicy } from '../../protocol/attestation.ts';
import { CleanroomError } from '../../protocol/errors.ts';

/** Where a worker serves its dev attester's issuer, under its public URL (the worker's `DEV_ISSUER_PATH`). */
export const DEV_ATTESTATION_PATH = '/dev-attestation';
/** The audience workers put in the tokens they hand to clients (the worker's default). */
export const DEFAULT_ATTESTATION_AUDIENCE = 'cleanroom-clients';

/** What a client accepts of a worker's attestation, before seeing a token. */
export interface AttestationChoice {
  /** The worker's base URL without a trailing slash: its dev attester names itself under it. */
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
}

/** The policy to verify one token with, and whether its digest comes from an allow-list. */
export interface ChosenPolicy {
  policy: AttestationPolicy;
  /** False when the digest was taken from the dev token itself rather than an allow-list. */
  digestPinned: boolean;
  /** The token names the worker's dev attester (unverified: true only once it verified). */
  dev: boolean;
}

/**
 * The `AttestationPolicy` for one token under `choice`. Peeks at the token WITHOUT verifying it,
 * only to recognise a dev token (and refuse one that names itself under another URL, which
 * would otherwise fail obscurely) and, with both dev opt-ins and no allow-list, to take the digest
 * it claims; the verifier still checks the signature over that digest.
 */
export function policyForToken(token: string, choice: AttestationChoice): ChosenPolicy {
  const devIssuer = `${choice.workerUrl.replace(/\/+$/, '')}${DEV_ATTESTATION_PATH}`;
  const unverified = peek(token);
  refuseForeignDevIssuer(unverified, devIssuer);
  const claimedDigest = unverified?.submods?.container?.image_digest;
  const takeClaimed =
    choice.allowInsecureDev === true && choice.acceptDevClaimedDigest === true && choice.allowedImageDigests.length === 0 && unverified?.iss === devIssuer && claimedDigest !== undefined;
  return {
    policy: {
      audience: choice.audience ?? DEFAULT_ATTESTATION_AUDIENCE,
      allowedImageDigests: takeClaimed ? [claimedDigest] : [...choice.allowedImageDigests],
      allowInsecureDev: choice.allowInsecureDev === true,
      // Always named, so that a dev token is recognised (and refused without the opt-in).
      devIssuer,
    },
    digestPinned: !takeClaimed,
    dev: unverified?.iss === devIssuer,
  };
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

/** Only ever refuses, and says how to fix it. */
function refuseForeignDevIssuer(claims: AttestationClaims | undefined, devIssuer: string): void {
  if (claims === undefined || claims.iss === devIssuer) return;
  const looksDev = claims.hwmodel === INSECURE_DEV_HWMODEL || claims.iss.endsWith(DEV_ATTESTATION_PATH);
  if (!looksDev) return;
  throw new CleanroomError('ATTESTATION_ISSUER', `the worker's dev attester names itself ${claims.iss}, not ${devIssuer}: reach the worker by the URL it was given as its TEE_SERVICE_ENDPOINT`);
}
