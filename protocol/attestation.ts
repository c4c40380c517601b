import {
  calculateJwkThumbprint,
  compactVerify,
  createRemoteJWKSet,
  customFetch,
  decodeJwt,
  decodeProtectedHeader,
  errors,
  importJWK,
  type CompactVerifyGetKey,
  type JWK,
  type JWTHeaderParameters,
  type JWTVerifyGetKey,
} from 'jose';
import * as v from 'valibot';
import { CleanroomError, type ErrorCode } from './errors.ts';

/**
 * Attestation claim policy and verification (docs/architecture.md invariant 1), shared by the CLI/SDK, the
 * console and the worker. Browser-safe: WebCrypto, `fetch`, jose and valibot only.
 */

/** The issuer of Confidential Space attestation tokens (REFERENCE.md). */
export const CONFIDENTIAL_SPACE_ISSUER = 'https://confidentialcomputing.googleapis.com';
/** Hardware models of confidential VMs; `GCP_SHIELDED_VM` is not one (REFERENCE.md). */
export const DEFAULT_HW_MODELS: readonly string[] = ['GCP_AMD_SEV', 'GCP_AMD_SEV_ES', 'GCP_INTEL_TDX'];
/** The `hwmodel` of tokens from the dev attester; never a real hardware model. */
export const INSECURE_DEV_HWMODEL = 'INSECURE_DEV';
/** The only algorithm accepted, for both issuers: Confidential Space signs with RS256. */
export const ATTESTATION_ALGORITHMS: readonly string[] = ['RS256'];

const NONCE_DOMAIN = 'cleanroom-attestation/v1';
const MAX_TOKEN_LENGTH = 16_384;
const DEFAULT_SKEW_SECONDS = 30;
const DEFAULT_TIMEOUT_MS = 5_000;
const RETRY_AFTER_SECONDS = 5;

/**
 * A caller's fresh nonce: base64url, 16-128 characters (at least 96 bits when random). The worker
 * validates the `nonce` query parameter with this before calling {@link attestationNonce}.
 */
export const CallerNonceSchema = v.pipe(v.string(), v.regex(/^[A-Za-z0-9_-]{16,128}$/));
const THUMBPRINT = /^[A-Za-z0-9_-]{43}$/;

/**
 * The value the worker asks the launcher to put in `eat_nonce`: lowercase hex of
 * SHA-256("cleanroom-attestation/v1|<caller nonce>|<identity key thumbprint>").
 * Hex keeps it at 64 bytes, inside the launcher's 10-74 byte bound; neither part can contain
 * `|` (both are base64url), so the encoding is unambiguous. The token thereby binds the worker's
 * identity key to this caller's request.
 * Throws `TypeError` on a malformed caller nonce or thumbprint (validate untrusted input first).
 */
export async function attestationNonce(callerNonce: string, identityThumbprint: string): Promise<string> {
  if (!v.is(CallerNonceSchema, callerNonce)) throw new TypeError('callerNonce must be 16-128 base64url characters');
  if (!THUMBPRINT.test(identityThumbprint)) throw new TypeError('identityThumbprint must be an RFC 7638 SHA-256 thumbprint');
  const data = new TextEncoder().encode(`${NONCE_DOMAIN}|${callerNonce}|${identityThumbprint}`);
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', data));
  return Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('');
}

const Text = v.pipe(v.string(), v.maxLength(1024));
const NumericDate = v.pipe(v.number(), v.safeInteger());

/**
 * The claims we read from a Confidential Space (or dev) token. Structural claims are required;
 * policy claims are optional here so that a missing one fails its own policy step with its own
 * code. Unknown claims (`google_service_accounts`, `swversion`, ...) pass through unread.
 */
export const AttestationClaimsSchema = v.object({
  iss: Text,
  aud: v.union([Text, v.pipe(v.array(Text), v.maxLength(16))]),
  exp: NumericDate,
  iat: NumericDate,
  nbf: v.optional(NumericDate),
  sub: v.optional(Text),
  hwmodel: v.optional(Text),
  swname: v.optional(Text),
  dbgstat: v.optional(Text),
  secboot: v.optional(v.boolean()),
  submods: v.optional(
    v.object({
      confidential_space: v.optional(v.object({ support_attributes: v.optional(v.pipe(v.array(Text), v.maxLength(32))) })),
      container: v.optional(v.object({ image_digest: v.optional(Text) })),
    }),
  ),
  // The launcher sends a string for one nonce and an array for several (REFERENCE.md).
  eat_nonce: v.optional(
    v.pipe(
      v.union([Text, v.pipe(v.array(Text), v.maxLength(6))]),
      v.transform((value): string[] => (typeof value === 'string' ? [value] : value)),
    ),
    [],
  ),
});
export type AttestationClaims = v.InferOutput<typeof AttestationClaimsSchema>;

/** What the verifier accepts. Owned by the caller; the digests come from the signed manifest. */
export interface AttestationPolicy {
  /** The `aud` the token must carry. */
  audience: string;
  /** Container image digests (`sha256:<64 hex>`) from the session manifest. Empty refuses all. */
  allowedImageDigests: readonly string[];
  /** Defaults to {@link DEFAULT_HW_MODELS}; may not contain `INSECURE_DEV`. */
  allowedHwModels?: readonly string[];
  /**
   * Accept tokens from the dev attester (issuer {@link devIssuer}, `hwmodel: INSECURE_DEV`). They
   * then skip the hardware model, debug, secure boot and support checks; digest, nonce and key
   * binding still apply.
   * WARNING: a dev token proves nothing: anyone holding the dev key can mint one. Local use only.
   */
  allowInsecureDev?: boolean;
  /** The dev attester's issuer URL. Its tokens are recognised (and refused unless allowed). */
  devIssuer?: string;
}

/** Options of {@link verifyAttestation}. */
export interface VerifyAttestationOptions {
  /** The caller's fresh nonce, sent with the attestation request. */
  nonce: string;
  /** The public identity key the worker presented with the token (untrusted until verified). */
  identityJwk: unknown;
  policy: AttestationPolicy;
  /** Keys of the Confidential Space issuer; default: discovery through {@link keyCache}. */
  keys?: JWTVerifyGetKey;
  /** Keys of the dev issuer; default: discovery through {@link keyCache}. */
  devKeys?: JWTVerifyGetKey;
  /** Discovery and JWKS cache; hold one per process. Default: a new one per call (no reuse). */
  keyCache?: IssuerKeyCache;
  /** Used only when no `keyCache` is given. */
  fetch?: typeof fetch;
  /** Timeout of each discovery or JWKS fetch when no `keyCache` is given. */
  timeoutMs?: number;
  /** Injected time. */
  currentDate?: Date;
  /** Clock skew tolerated on `exp`, `iat` and `nbf` (default 30 s). */
  clockToleranceSeconds?: number;
}

/** What a verified token established. */
export interface VerifiedAttestation {
  claims: AttestationClaims;
  /** True for a dev token accepted under `allowInsecureDev`: say so loudly to the user. */
  insecureDev: boolean;
  /** RFC 7638 thumbprint of the identity key the token binds. */
  identityThumbprint: string;
}

const DiscoverySchema = v.object({ issuer: Text, jwks_uri: v.pipe(Text, v.url()) });

/**
 * Caches, per issuer, the OIDC discovery result and a jose remote JWKS (which refreshes itself
 * every 10 minutes and on an unknown `kid`). Every fetch has a timeout; a failed discovery is not
 * cached. Keys are only ever fetched for issuers the verifier chose, never for a token's claim.
 */
export class IssuerKeyCache {
  readonly #fetch: typeof fetch;
  readonly #timeoutMs: number;
  readonly #sets = new Map<string, Promise<JWTVerifyGetKey>>();

  constructor(options: { fetch?: typeof fetch; timeoutMs?: number } = {}) {
    // Always called unbound: a browser's `fetch` throws when called as a method of another object.
    const fetchImpl = options.fetch ?? globalThis.fetch;
    this.#fetch = (input, init) => fetchImpl(input, init);
    this.#timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  }

  /** A key resolver for `issuer`, discovering its JWKS on first use. */
  forIssuer(issuer: string): JWTVerifyGetKey {
    return async (header, token) => (await this.#keySet(issuer))(header, token);
  }

  #keySet(issuer: string): Promise<JWTVerifyGetKey> {
    let set = this.#sets.get(issuer);
    if (!set) {
      const pending = this.#discover(issuer);
      set = pending;
      this.#sets.set(issuer, pending);
      // A failure is retried on the next verification rather than remembered.
      pending.catch(() => {
        if (this.#sets.get(issuer) === pending) this.#sets.delete(issuer);
      });
    }
    return set;
  }

  async #discover(issuer: string): Promise<JWTVerifyGetKey> {
    const url = `${issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`;
    const response = await this.#fetch(url, {
      method: 'GET',
      redirect: 'manual',
      headers: { accept: 'application/json' },
      signal: AbortSignal.timeout(this.#timeoutMs),
    });
    if (response.status !== 200) {
      await response.body?.cancel();
      throw new Error(`discovery answered HTTP ${response.status}`);
    }
    const doc = v.parse(DiscoverySchema, await response.json());
    if (doc.issuer !== issuer) throw new Error('discovery document names another issuer');
    const jwksUri = new URL(doc.jwks_uri);
    // Plain http only for an http issuer (the local dev attester); Google's is https.
    if (jwksUri.protocol !== 'https:' && !(jwksUri.protocol === 'http:' && new URL(issuer).protocol === 'http:')) {
      throw new Error('jwks_uri must use https');
    }
    const fetchImpl = this.#fetch;
    return createRemoteJWKSet(jwksUri, {
      timeoutDuration: this.#timeoutMs,
      [customFetch]: (input: string, init: RequestInit) => fetchImpl(input, init),
    });
  }
}

type AttestationCode = Extract<ErrorCode, `ATTESTATION_${string}`>;

/** Throws the step's code; the message says little, the cause (never the token) is for the log. */
function fail(code: AttestationCode, message: string, cause?: unknown): never {
  throw new CleanroomError(code, message, cause === undefined ? undefined : { cause });
}

function assertPolicy(options: VerifyAttestationOptions): void {
  const { policy } = options;
  if (typeof policy.audience !== 'string' || policy.audience.length === 0) throw new TypeError('policy.audience must be a non-empty string');
  if (!Array.isArray(policy.allowedImageDigests)) throw new TypeError('policy.allowedImageDigests must be an array');
  if (policy.allowedHwModels?.includes(INSECURE_DEV_HWMODEL)) throw new TypeError('INSECURE_DEV is not a hardware model; use allowInsecureDev');
  if (policy.allowInsecureDev && !policy.devIssuer) throw new TypeError('allowInsecureDev needs policy.devIssuer');
  if (policy.devIssuer === CONFIDENTIAL_SPACE_ISSUER) throw new TypeError('policy.devIssuer must differ from the Confidential Space issuer');
  if (!v.is(CallerNonceSchema, options.nonce)) throw new TypeError('nonce must be 16-128 base64url characters');
}

/** Parses the token's shape and unverified claims; only used to choose keys and to fail early. */
function parseStructure(token: unknown): { claims: AttestationClaims } {
  if (typeof token !== 'string' || token.length > MAX_TOKEN_LENGTH) fail('ATTESTATION_MALFORMED', 'attestation token is malformed');
  // The signature part may be empty so that `alg: none` is refused as a signature failure.
  if (!/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(token)) fail('ATTESTATION_MALFORMED', 'attestation token is malformed');
  let header: JWTHeaderParameters;
  let payload: unknown;
  try {
    header = decodeProtectedHeader(token) as JWTHeaderParameters;
    payload = decodeJwt(token);
  } catch (cause) {
    fail('ATTESTATION_MALFORMED', 'attestation token is malformed', cause);
  }
  // No unencoded payloads or critical extensions: the bytes we parse are the bytes signed.
  if (typeof header.alg !== 'string' || 'crit' in header || 'b64' in header) fail('ATTESTATION_MALFORMED', 'attestation token header is malformed');
  const parsed = v.safeParse(AttestationClaimsSchema, payload);
  if (!parsed.success) fail('ATTESTATION_MALFORMED', 'attestation claims are malformed', new v.ValiError(parsed.issues));
  return { claims: parsed.output };
}

/** Wraps a key source so that "cannot fetch keys" is told apart from "no key signed this". */
function classifyingKeys(keys: JWTVerifyGetKey): CompactVerifyGetKey {
  return async (header, input) => {
    try {
      return await keys(header as JWTHeaderParameters, input);
    } catch (cause) {
      if (cause instanceof errors.JWKSNoMatchingKey || cause instanceof errors.JWKSMultipleMatchingKeys) {
        fail('ATTESTATION_SIGNATURE', 'attestation token signature is invalid', cause);
      }
      throw new CleanroomError('ATTESTATION_UNAVAILABLE', "the attestation issuer's keys could not be fetched", {
        cause,
        retryAfter: RETRY_AFTER_SECONDS,
      });
    }
  };
}

const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'];
const Base64url = v.pipe(v.string(), v.regex(/^[A-Za-z0-9_-]+$/), v.maxLength(1400));
const PublicJwkSchema = v.variant('kty', [
  v.looseObject({ kty: v.literal('EC'), crv: v.picklist(['P-256', 'P-384', 'P-521']), x: Base64url, y: Base64url }),
  v.looseObject({ kty: v.literal('OKP'), crv: v.literal('Ed25519'), x: Base64url }),
  v.looseObject({ kty: v.literal('RSA'), n: Base64url, e: Base64url }),
]);
const IMPORT_ALG: Record<string, string> = { 'P-256': 'ES256', 'P-384': 'ES384', 'P-521': 'ES512', Ed25519: 'Ed25519' };

/** The thumbprint of a usable public identity key, or `undefined` for anything else. */
async function identityThumbprintOf(jwk: unknown): Promise<string | undefined> {
  if (typeof jwk !== 'object' || jwk === null || Array.isArray(jwk)) return undefined;
  if (PRIVATE_MEMBERS.some((member) => member in jwk)) return undefined;
  const parsed = v.safeParse(PublicJwkSchema, jwk);
  if (!parsed.success) return undefined;
  const key = parsed.output;
  // Only the required members are imported, so a stray `alg` or `key_ops` cannot get in the way.
  const required: JWK = key.kty === 'EC' ? { kty: 'EC', crv: key.crv, x: key.x, y: key.y } : key.kty === 'OKP' ? { kty: 'OKP', crv: key.crv, x: key.x } : { kty: 'RSA', n: key.n, e: key.e };
  try {
    // Importing proves the key is real (an EC point on its curve, a usable modulus).
    await importJWK(required, key.kty === 'RSA' ? 'RS256' : IMPORT_ALG[key.crv]!);
    return await calculateJwkThumbprint(required, 'sha256');
  } catch {
    return undefined;
  }
}

/**
 * Verifies a Confidential Space attestation token (or, if allowed, a dev token) in one fixed
 * order, each step with its own code:
 * MALFORMED (shape, claim types) → SIGNATURE (RS256 only, the issuer's JWKS) → ISSUER →
 * AUDIENCE → EXPIRED (`exp`, `iat`, `nbf`, with skew) → INSECURE_DEV (dev token, no opt-in) →
 * HWMODEL → SWNAME → DEBUG → SECBOOT → SUPPORT → IMAGE_DIGEST → KEY_BINDING (the presented
 * identity key is not a usable public key) → NONCE (`eat_nonce` lacks
 * {@link attestationNonce}(nonce, thumbprint(identityJwk))). A valid key other than the one the
 * token binds fails at NONCE: the hash cannot tell a swapped key from a stale nonce.
 *
 * Keys are chosen by the verifier, never by the token: the dev issuer's keys only when the
 * unverified `iss` is the configured `devIssuer`, the Confidential Space keys otherwise, so a
 * dev-signed token claiming Google's issuer fails at SIGNATURE.
 *
 * A dev token is one with `hwmodel: INSECURE_DEV` or the dev issuer. Without `allowInsecureDev`
 * it fails at INSECURE_DEV. With it, only dev-issuer tokens are relaxed, and they must say
 * `INSECURE_DEV` (a dev token cannot pose as hardware); they skip DEBUG, SECBOOT and SUPPORT.
 *
 * Failure to fetch keys is `ATTESTATION_UNAVAILABLE` (retryable). Misuse (empty audience, a bad
 * caller nonce) throws `TypeError`.
 */
export async function verifyAttestation(token: string, options: VerifyAttestationOptions): Promise<VerifiedAttestation> {
  assertPolicy(options);
  // An Invalid Date would turn every age comparison into a comparison with NaN, i.e. skip them.
  if (options.currentDate !== undefined && Number.isNaN(options.currentDate.getTime())) throw new TypeError('currentDate is an invalid Date');
  const { policy } = options;
  const devIssuer = policy.devIssuer;

  // 1. Structure.
  const unverified = parseStructure(token).claims;

  // 2. Signature, with keys of the issuer we chose to trust for this `iss`.
  const isDevIssuer = devIssuer !== undefined && unverified.iss === devIssuer;
  const cache = options.keyCache ?? new IssuerKeyCache({ fetch: options.fetch, timeoutMs: options.timeoutMs });
  const keys = isDevIssuer ? (options.devKeys ?? cache.forIssuer(devIssuer)) : (options.keys ?? cache.forIssuer(CONFIDENTIAL_SPACE_ISSUER));
  let verifiedPayload: Uint8Array;
  try {
    ({ payload: verifiedPayload } = await compactVerify(token, classifyingKeys(keys), { algorithms: [...ATTESTATION_ALGORITHMS] }));
  } catch (cause) {
    if (cause instanceof CleanroomError) throw cause;
    fail('ATTESTATION_SIGNATURE', 'attestation token signature is invalid', cause);
  }
  // From here on only the signed bytes are read.
  let claims: AttestationClaims;
  try {
    claims = v.parse(AttestationClaimsSchema, JSON.parse(new TextDecoder().decode(verifiedPayload)));
  } catch (cause) {
    fail('ATTESTATION_MALFORMED', 'attestation claims are malformed', cause);
  }

  // 3. Issuer. The dev issuer is recognised here so that step 6 can name the refusal precisely.
  if (claims.iss !== CONFIDENTIAL_SPACE_ISSUER && !(devIssuer !== undefined && claims.iss === devIssuer)) {
    fail('ATTESTATION_ISSUER', 'attestation token issuer is not trusted');
  }

  // 4. Audience.
  const audiences = typeof claims.aud === 'string' ? [claims.aud] : claims.aud;
  if (!audiences.includes(policy.audience)) fail('ATTESTATION_AUDIENCE', 'attestation token audience does not match');

  // 5. Age.
  const now = Math.floor((options.currentDate ?? new Date()).getTime() / 1000);
  const skew = options.clockToleranceSeconds ?? DEFAULT_SKEW_SECONDS;
  if (claims.exp <= now - skew) fail('ATTESTATION_EXPIRED', 'attestation token has expired');
  if (claims.iat > now + skew || (claims.nbf !== undefined && claims.nbf > now + skew)) fail('ATTESTATION_EXPIRED', 'attestation token is not valid yet');
  if (claims.exp <= claims.iat) fail('ATTESTATION_EXPIRED', 'attestation token expires before it was issued');

  // 6. Dev tokens need the caller's explicit opt-in.
  const devToken = claims.hwmodel === INSECURE_DEV_HWMODEL || (devIssuer !== undefined && claims.iss === devIssuer);
  if (devToken && !policy.allowInsecureDev) fail('ATTESTATION_INSECURE_DEV', 'attestation token comes from an insecure dev attester');
  const relaxed = devToken && claims.iss === devIssuer;

  // 7-11. Platform claims; a relaxed dev token must still say what it is.
  if (relaxed ? claims.hwmodel !== INSECURE_DEV_HWMODEL : !(policy.allowedHwModels ?? DEFAULT_HW_MODELS).includes(claims.hwmodel ?? '')) {
    fail('ATTESTATION_HWMODEL', 'attestation hardware model is not allowed');
  }
  if (claims.swname !== 'CONFIDENTIAL_SPACE') fail('ATTESTATION_SWNAME', 'attestation software is not Confidential Space');
  if (!relaxed && claims.dbgstat !== 'disabled-since-boot') fail('ATTESTATION_DEBUG', 'attested workload may be debugged');
  if (!relaxed && claims.secboot !== true) fail('ATTESTATION_SECBOOT', 'attested VM did not boot securely');
  if (!relaxed && !(claims.submods?.confidential_space?.support_attributes ?? []).includes('STABLE')) {
    fail('ATTESTATION_SUPPORT', 'attested image is not a supported STABLE image');
  }

  // 12. The code identity the owners pinned.
  const digest = claims.submods?.container?.image_digest;
  if (digest === undefined || !/^sha256:[0-9a-f]{64}$/.test(digest) || !policy.allowedImageDigests.includes(digest)) {
    fail('ATTESTATION_IMAGE_DIGEST', 'attested container image is not on the allow-list');
  }

  // 13. The identity key the worker presented must be a real public key.
  const identityThumbprint = await identityThumbprintOf(options.identityJwk);
  if (identityThumbprint === undefined) fail('ATTESTATION_KEY_BINDING', 'the identity key is not a valid public key');

  // 14. Fresh for this caller and bound to that key.
  const expected = await attestationNonce(options.nonce, identityThumbprint);
  if (!claims.eat_nonce.includes(expected)) fail('ATTESTATION_NONCE', 'attestation token does not bind this nonce and identity key');

  return { claims, insecureDev: devToken, identityThumbprint };
}
