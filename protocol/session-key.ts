import { CompactSign, compactVerify, decodeProtectedHeader, importJWK, type CryptoKey, type JWK, type JWTVerifyGetKey } from 'jose';
import * as v from 'valibot';
import { verifyAttestation, type AttestationPolicy, type IssuerKeyCache, type VerifiedAttestation } from './attestation.ts';
import { SessionKeyBundleSchema, type SessionKeyBundle } from './dataset.ts';
import { CleanroomError } from './errors.ts';
import { jwkThumbprint } from './key-binding.ts';
import { SessionIdSchema, publicP256JwkSchema } from './session.ts';

/**
 * The session key certificate (docs/architecture.md invariant 3): an ES256 JWS by the worker's attested
 * identity key naming the session, the key's epoch and its thumbprint. A client trusts a session
 * key only through {@link verifySessionKeyBundle}: attestation first (it binds the identity key),
 * then the certificate by that key. Browser-safe.
 */

/** The `typ` of a session key certificate. */
export const SESSION_KEY_CERT_TYP = 'cleanroom-session-key+jws';
const ALG = 'ES256';

const Thumbprint = v.pipe(v.string(), v.regex(/^[A-Za-z0-9_-]{43}$/));
const Epoch = v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(Number.MAX_SAFE_INTEGER));

/** Strict: `crit`, `b64`, `jwk`, `jku`, `x5u` or any other member is refused. */
const CertificateHeaderSchema = v.strictObject({ alg: v.literal(ALG), typ: v.literal(SESSION_KEY_CERT_TYP), kid: Thumbprint });

/** What a certificate says. */
export const SessionKeyCertificatePayloadSchema = v.strictObject({
  session_id: SessionIdSchema,
  epoch: Epoch,
  thumbprint: Thumbprint,
  iat: v.pipe(v.number(), v.safeInteger()),
});
export type SessionKeyCertificatePayload = v.InferOutput<typeof SessionKeyCertificatePayloadSchema>;

const SessionPublicJwkSchema = publicP256JwkSchema('ECDH-ES+A256KW', 'enc');
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

/** Options of {@link certifySessionKey}. */
export interface CertifySessionKeyOptions {
  /** The worker's identity private key (ES256). */
  identityPrivateKey: CryptoKey;
  /** RFC 7638 thumbprint of the identity public key; the certificate's `kid`. */
  identityThumbprint: string;
  sessionId: string;
  epoch: number;
  /** The session's public key (P-256, ECDH-ES+A256KW). */
  publicJwk: JWK;
  /** Injected time. */
  now?: Date;
}

/**
 * Certifies a session key: a compact JWS (ES256, `typ` {@link SESSION_KEY_CERT_TYP}, `kid` the
 * identity thumbprint) of `{ session_id, epoch, thumbprint, iat }`. Throws `TypeError` on misuse.
 */
export async function certifySessionKey(options: CertifySessionKeyOptions): Promise<string> {
  const { identityPrivateKey, identityThumbprint, sessionId, epoch, publicJwk } = options;
  if (!v.is(Thumbprint, identityThumbprint)) throw new TypeError('identityThumbprint must be an RFC 7638 SHA-256 thumbprint');
  if (!v.is(SessionPublicJwkSchema, publicJwk)) throw new TypeError('publicJwk must be a public P-256 ECDH-ES+A256KW key');
  const payload: SessionKeyCertificatePayload = {
    session_id: sessionId,
    epoch,
    thumbprint: await jwkThumbprint(publicJwk),
    iat: Math.floor((options.now ?? new Date()).getTime() / 1000),
  };
  if (!v.is(SessionKeyCertificatePayloadSchema, payload)) throw new TypeError('sessionId or epoch is malformed');
  return new CompactSign(new TextEncoder().encode(JSON.stringify(payload))).setProtectedHeader({ alg: ALG, typ: SESSION_KEY_CERT_TYP, kid: identityThumbprint }).sign(identityPrivateKey);
}

/** Options of {@link verifySessionKeyBundle}. */
export interface VerifySessionKeyBundleOptions {
  /** The session the caller asked a key for. */
  sessionId: string;
  /** The caller's fresh nonce sent with the request. */
  nonce: string;
  policy: AttestationPolicy;
  keyCache?: IssuerKeyCache;
  /** Keys of the Confidential Space issuer (see `verifyAttestation`). */
  keys?: JWTVerifyGetKey;
  /** Keys of the dev issuer (see `verifyAttestation`). */
  devKeys?: JWTVerifyGetKey;
  /** Injected time. */
  currentDate?: Date;
}

/** A verified session key: only what the thumbprint covers, plus `alg` and `use`. */
export interface VerifiedSessionKey {
  publicJwk: JWK;
  thumbprint: string;
  attestation: VerifiedAttestation;
}

function refuse(message: string, cause?: unknown): never {
  throw new CleanroomError('SESSION_KEY_INVALID', message, cause === undefined ? undefined : { cause });
}

/**
 * Verifies a session key bundle in a fixed order: bundle shape (`SESSION_KEY_INVALID`), the
 * attestation with the caller's nonce and the presented identity key (its `ATTESTATION_*` codes
 * pass through), then the certificate (`SESSION_KEY_INVALID`): pinned header, `kid` the attested
 * identity thumbprint, signature by that identity key, and a payload naming this session, the
 * bundle's epoch and the bundle's public key. Returns the key with only its RFC 7638 members and
 * `alg`/`use`, never anything the thumbprint does not cover.
 */
export async function verifySessionKeyBundle(bundle: SessionKeyBundle, options: VerifySessionKeyBundleOptions): Promise<VerifiedSessionKey> {
  // 1. Shape.
  const parsed = v.safeParse(SessionKeyBundleSchema, bundle);
  if (!parsed.success) refuse('the session key bundle is malformed');
  const checked = parsed.output;

  // 2. The attestation binds the identity key to a genuine worker and to this caller's nonce.
  const attestation = await verifyAttestation(checked.attestation, {
    nonce: options.nonce,
    identityJwk: checked.identity_jwk,
    policy: options.policy,
    ...(options.keyCache !== undefined ? { keyCache: options.keyCache } : {}),
    ...(options.keys !== undefined ? { keys: options.keys } : {}),
    ...(options.devKeys !== undefined ? { devKeys: options.devKeys } : {}),
    ...(options.currentDate !== undefined ? { currentDate: options.currentDate } : {}),
  });

  // 3. The certificate, by that identity key only.
  const certificate = checked.certificate;
  if (!COMPACT_JWS.test(certificate)) refuse('the certificate is not a compact JWS');
  let header: unknown;
  try {
    header = decodeProtectedHeader(certificate);
  } catch (cause) {
    refuse('the certificate header is not readable', cause);
  }
  const headerParsed = v.safeParse(CertificateHeaderSchema, header);
  if (!headerParsed.success) refuse('the certificate header is not a session key certificate header');
  if (headerParsed.output.kid !== attestation.identityThumbprint) refuse('the certificate names another identity key');
  const { kty, crv, x, y } = checked.identity_jwk;
  let payloadBytes: Uint8Array;
  try {
    const identityKey = await importJWK({ kty, crv, x, y }, ALG);
    ({ payload: payloadBytes } = await compactVerify(certificate, identityKey, { algorithms: [ALG] }));
  } catch (cause) {
    refuse('the certificate signature is not valid', cause);
  }
  let payload: unknown;
  try {
    payload = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(payloadBytes));
  } catch {
    refuse('the certificate payload is not JSON');
  }
  const claims = v.safeParse(SessionKeyCertificatePayloadSchema, payload);
  if (!claims.success) refuse('the certificate payload is malformed');

  // 4. It certifies this session's key, this epoch.
  const { session_id: certifiedSession, epoch, thumbprint } = claims.output;
  if (certifiedSession !== options.sessionId || certifiedSession !== checked.session_id) refuse('the certificate names another session');
  if (epoch !== checked.epoch) refuse('the certificate names another epoch');
  const members: JWK = { kty: checked.public_jwk.kty, crv: checked.public_jwk.crv, x: checked.public_jwk.x, y: checked.public_jwk.y };
  const computed = await jwkThumbprint(members);
  if (thumbprint !== computed || thumbprint !== checked.thumbprint) refuse('the certificate names another key');
  try {
    // A thumbprint over a point off the curve would certify nothing usable.
    await importJWK(members, 'ECDH-ES+A256KW');
  } catch (cause) {
    refuse('the session key is not a valid P-256 public key', cause);
  }

  return { publicJwk: { ...members, alg: 'ECDH-ES+A256KW', use: 'enc' }, thumbprint: computed, attestation };
}
