import { CompactEncrypt, compactDecrypt, decodeProtectedHeader, importJWK, type CryptoKey, type JWK } from 'jose';
import * as v from 'valibot';
import { CleanroomError } from './errors.ts';
import { jwkThumbprint } from './key-binding.ts';
import { SessionIdSchema, publicP256JwkSchema } from './session.ts';

/**
 * Wrapping a dataset's 256-bit data key to the session key (docs/architecture.md invariants 2 and 3; ADR 0006):
 * a compact JWE, `ECDH-ES+A256KW` with `A256GCM` on P-256. The protected header is the AEAD's
 * additional data, so it binds the session, the dataset and the session key's thumbprint: a
 * wrapped key moved to another dataset, session or key does not unwrap. Browser-safe.
 */

/** The `typ` of a wrapped data key. */
export const DATA_KEY_TYP = 'cleanroom-data-key+jwe';
const ALG = 'ECDH-ES+A256KW';
const ENC = 'A256GCM';
const DATA_KEY_BYTES = 32;

const SessionKeyJwkSchema = publicP256JwkSchema(ALG, 'enc');
const DatasetIdSchema = v.pipe(v.string(), v.uuid());
const Thumbprint = v.pipe(v.string(), v.regex(/^[A-Za-z0-9_-]{43}$/));
const Coordinate = v.pipe(v.string(), v.regex(/^[A-Za-z0-9_-]{43}$/));

/**
 * The only protected header a wrapped data key may carry. Strict, so `zip`, `crit`, `jku`, `jwk`,
 * `x5u`, `apu`/`apv` or any other member is refused before anything is decrypted. `epk` is the
 * ephemeral key jose adds; only its public P-256 members are allowed.
 */
const DataKeyHeaderSchema = v.strictObject({
  alg: v.literal(ALG),
  enc: v.literal(ENC),
  typ: v.literal(DATA_KEY_TYP),
  kid: Thumbprint,
  epk: v.strictObject({ kty: v.literal('EC'), crv: v.literal('P-256'), x: Coordinate, y: Coordinate }),
  'cleanroom.session': SessionIdSchema,
  'cleanroom.dataset': DatasetIdSchema,
});

const COMPACT_JWE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;
const MAX_JWE_LENGTH = 4096;

/** Options of {@link wrapDataKey}. */
export interface WrapDataKeyOptions {
  /** The 32-byte data key. */
  key: Uint8Array;
  /** The session's public key, from a verified session key bundle. */
  sessionPublicJwk: JWK;
  sessionId: string;
  datasetId: string;
}

/**
 * Wraps a data key to the session key. Returns a compact JWE whose protected header is
 * `{ alg, enc, typ, kid: thumbprint(session key), 'cleanroom.session', 'cleanroom.dataset', epk }`.
 * Throws `TypeError` on misuse (a key that is not 32 bytes, a JWK that is not a public P-256
 * encryption key, malformed ids).
 */
export async function wrapDataKey(options: WrapDataKeyOptions): Promise<string> {
  const { key, sessionPublicJwk, sessionId, datasetId } = options;
  if (!(key instanceof Uint8Array) || key.byteLength !== DATA_KEY_BYTES) throw new TypeError('key must be 32 bytes');
  if (!v.is(SessionIdSchema, sessionId)) throw new TypeError('sessionId is not a session id');
  if (!v.is(DatasetIdSchema, datasetId)) throw new TypeError('datasetId must be a UUID');
  if (!v.is(SessionKeyJwkSchema, sessionPublicJwk)) throw new TypeError('sessionPublicJwk must be a public P-256 ECDH-ES+A256KW key');
  // Only the thumbprint members are imported: a stray `key_ops` or `ext` cannot get in the way.
  const { kty, crv, x, y } = sessionPublicJwk;
  const members: JWK = { kty, crv, x, y };
  const recipient = await importJWK(members, ALG);
  return new CompactEncrypt(key)
    .setProtectedHeader({
      alg: ALG,
      enc: ENC,
      typ: DATA_KEY_TYP,
      kid: await jwkThumbprint(members),
      'cleanroom.session': sessionId,
      'cleanroom.dataset': datasetId,
    })
    .encrypt(recipient);
}

/** Options of {@link unwrapDataKey}. */
export interface UnwrapDataKeyOptions {
  /** The wrapped key as registered (untrusted). */
  jwe: string;
  /** The session's private key (ECDH, P-256). */
  sessionPrivateKey: CryptoKey;
  /** The session the dataset must belong to. */
  sessionId: string;
  /** The dataset the key must be for. */
  datasetId: string;
  /** Thumbprint of the session key `sessionPrivateKey` belongs to. */
  sessionKeyThumbprint: string;
}

function refuse(message: string, cause?: unknown): never {
  throw new CleanroomError('DATASET_KEY_UNWRAP', message, cause === undefined ? undefined : { cause });
}

/**
 * Unwraps a data key in a fixed order, every refusal `DATASET_KEY_UNWRAP`: compact shape, exact
 * protected header (pinned `alg`/`enc`/`typ`, nothing else), the session, dataset and key it
 * names, decryption (pinned algorithms again), then a 32-byte plaintext.
 */
export async function unwrapDataKey(options: UnwrapDataKeyOptions): Promise<Uint8Array> {
  const { jwe, sessionPrivateKey, sessionId, datasetId, sessionKeyThumbprint } = options;
  if (typeof jwe !== 'string' || jwe.length > MAX_JWE_LENGTH || !COMPACT_JWE.test(jwe)) refuse('the wrapped key is not a compact JWE');

  let header: unknown;
  try {
    header = decodeProtectedHeader(jwe);
  } catch (cause) {
    refuse('the wrapped key header is not readable', cause);
  }
  const parsed = v.safeParse(DataKeyHeaderSchema, header);
  if (!parsed.success) refuse('the wrapped key header is not a data key header');
  if (parsed.output['cleanroom.session'] !== sessionId) refuse('the wrapped key belongs to another session');
  if (parsed.output['cleanroom.dataset'] !== datasetId) refuse('the wrapped key belongs to another dataset');
  if (parsed.output.kid !== sessionKeyThumbprint) refuse('the wrapped key is wrapped to another session key');

  let plaintext: Uint8Array;
  try {
    ({ plaintext } = await compactDecrypt(jwe, sessionPrivateKey, { keyManagementAlgorithms: [ALG], contentEncryptionAlgorithms: [ENC] }));
  } catch (cause) {
    refuse('the wrapped key does not decrypt', cause);
  }
  if (plaintext.byteLength !== DATA_KEY_BYTES) refuse('the wrapped key is not a 256-bit key');
  return plaintext;
}
