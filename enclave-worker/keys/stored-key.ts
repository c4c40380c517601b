import type { JWK } from 'jose';
import * as v from 'valibot';
import { CleanroomError } from '../../protocol/errors.ts';
import { jwkThumbprint } from '../../protocol/key-binding.ts';
import { SessionIdSchema, publicP256JwkSchema } from '../../protocol/session.ts';
import { sessionKeyAad, type KeyService } from './port.ts';

/**
 * A session key as one stored object holds it (docs/architecture.md invariant 3): the public
 * parts and the private JWK wrapped by the key service with AAD `session-key/v1|<session>|<epoch>`.
 * This file is the format: its schema, how a record is made, read back, unwrapped and rewrapped.
 * Where the objects live is `key-objects.ts`.
 */

const ALG = 'ECDH-ES+A256KW' as const;
const ECDH = { name: 'ECDH', namedCurve: 'P-256' } as const;
const Base64Url43 = v.pipe(v.string(), v.regex(/^[A-Za-z0-9_-]{43}$/));

/** A session key as stored at `objectKeys.sessionKey(session, epoch)`. */
export const StoredSessionKeySchema = v.strictObject({
  v: v.literal(1),
  session_id: SessionIdSchema,
  epoch: v.pipe(v.number(), v.integer(), v.minValue(1)),
  public_jwk: publicP256JwkSchema(ALG, 'enc'),
  thumbprint: Base64Url43,
  /** base64url of `KeyService.wrap(JSON of the private JWK, sessionKeyAad(session, epoch))`. */
  wrapped_private: v.pipe(v.string(), v.minLength(16), v.maxLength(8192), v.regex(/^[A-Za-z0-9_-]+$/)),
  created_at: v.pipe(v.string(), v.isoTimestamp()),
});
export type StoredSessionKey = v.InferOutput<typeof StoredSessionKeySchema>;

/** The private JWK inside the wrapping: exactly the members an import needs. */
const PrivateJwkSchema = v.strictObject({ kty: v.literal('EC'), crv: v.literal('P-256'), x: Base64Url43, y: Base64Url43, d: Base64Url43 });

/** A session's public key, as the manager hands it out. */
export interface SessionPublicKey {
  epoch: number;
  publicJwk: JWK;
  thumbprint: string;
}

export function publicKeyOf(stored: StoredSessionKey): SessionPublicKey {
  return { epoch: stored.epoch, publicJwk: { ...stored.public_jwk }, thumbprint: stored.thumbprint };
}

export function encodeStoredKey(record: StoredSessionKey): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(record));
}

/**
 * The record in `bytes`, read from the object of `sessionId` at `epoch`. `SESSION_KEY_INVALID`
 * unless it parses, names that session and epoch (the object's place), and its thumbprint is its
 * public key's (the AAD checks the private part at unwrap).
 */
export async function decodeStoredKey(bytes: Uint8Array, sessionId: string, epoch: number): Promise<StoredSessionKey> {
  const invalid = new CleanroomError('SESSION_KEY_INVALID', 'the stored session key is not a key of this session');
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch {
    throw invalid;
  }
  const parsed = v.safeParse(StoredSessionKeySchema, json);
  if (!parsed.success) throw invalid;
  const stored = parsed.output;
  if (stored.session_id !== sessionId || stored.epoch !== epoch) throw invalid;
  const { kty, crv, x, y } = stored.public_jwk;
  if ((await jwkThumbprint({ kty, crv, x, y })) !== stored.thumbprint) throw invalid;
  return stored;
}

/** A new key pair for `sessionId`, its private part wrapped for `epoch`; the clear bytes are zeroed. */
export async function generateStoredKey(keys: KeyService, sessionId: string, epoch: number, now: Date): Promise<StoredSessionKey> {
  const pair = (await crypto.subtle.generateKey(ECDH, true, ['deriveBits'])) as CryptoKeyPair;
  const { kty, crv, x, y, d } = await crypto.subtle.exportKey('jwk', pair.privateKey);
  // Exported only to be wrapped; the clear bytes are zeroed once the key service has them.
  const wrapped = await wrapZeroing(keys, new TextEncoder().encode(JSON.stringify({ kty, crv, x, y, d })), sessionId, epoch);
  return {
    v: 1,
    session_id: sessionId,
    epoch,
    public_jwk: { kty: 'EC', crv: 'P-256', x: x!, y: y!, alg: ALG, use: 'enc' },
    thumbprint: await jwkThumbprint({ kty: kty!, crv: crv!, x: x!, y: y! }),
    wrapped_private: Buffer.from(wrapped).toString('base64url'),
    created_at: now.toISOString(),
  };
}

/**
 * The same key pair at epoch `to`: unwrapped with the current epoch's AAD and wrapped again (under
 * the key service's current version) with the next one's. `created_at` stays: it dates the pair.
 */
export async function rewrapStoredKey(keys: KeyService, stored: StoredSessionKey, to: number): Promise<StoredSessionKey> {
  const wrapped = await wrapZeroing(keys, await unwrapStoredKey(keys, stored), stored.session_id, to);
  return { ...stored, epoch: to, wrapped_private: Buffer.from(wrapped).toString('base64url') };
}

/** The private key as a non-extractable ECDH key. */
export async function importStoredKey(keys: KeyService, stored: StoredSessionKey): Promise<CryptoKey> {
  const plaintext = await unwrapStoredKey(keys, stored);
  try {
    return await crypto.subtle.importKey('jwk', { ...parsePrivateJwk(plaintext), ext: false }, ECDH, false, ['deriveBits']);
  } catch (error) {
    if (error instanceof CleanroomError) throw error;
    throw new CleanroomError('SESSION_KEY_INVALID', 'the unwrapped session key does not import');
  } finally {
    // JS strings (the parsed `d`) cannot be wiped; the bytes can.
    plaintext.fill(0);
  }
}

/**
 * The stored private JWK in clear, checked to be the stored public key's; the caller zeroes it.
 * `SESSION_KEY_UNAVAILABLE` when it no longer unwraps, `SESSION_KEY_INVALID` when it is not that key.
 */
async function unwrapStoredKey(keys: KeyService, stored: StoredSessionKey): Promise<Uint8Array> {
  let plaintext: Uint8Array;
  try {
    plaintext = await keys.unwrap(Buffer.from(stored.wrapped_private, 'base64url'), sessionKeyAad(stored.session_id, stored.epoch));
  } catch (cause) {
    // An outage is retryable; a ciphertext that no longer authenticates (moved from another
    // session, or its key version destroyed) means the key is gone.
    if (cause instanceof CleanroomError && cause.code === 'KEY_SERVICE_UNAVAILABLE') throw cause;
    throw new CleanroomError('SESSION_KEY_UNAVAILABLE', 'the session key does not unwrap', { cause });
  }
  try {
    const { x, y } = parsePrivateJwk(plaintext);
    if (x !== stored.public_jwk.x || y !== stored.public_jwk.y) throw new CleanroomError('SESSION_KEY_INVALID', 'the unwrapped key is not the stored public key');
    return plaintext;
  } catch (error) {
    plaintext.fill(0);
    throw error;
  }
}

async function wrapZeroing(keys: KeyService, plaintext: Uint8Array, sessionId: string, epoch: number): Promise<Uint8Array> {
  try {
    return await keys.wrap(plaintext, sessionKeyAad(sessionId, epoch));
  } finally {
    plaintext.fill(0);
  }
}

/** The private JWK in `plaintext`, or `SESSION_KEY_INVALID` (with no cause: it could quote key material). */
function parsePrivateJwk(plaintext: Uint8Array): v.InferOutput<typeof PrivateJwkSchema> {
  let jwk: unknown;
  try {
    jwk = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(plaintext));
  } catch {
    throw new CleanroomError('SESSION_KEY_INVALID', 'the unwrapped session key is not JSON');
  }
  const parsed = v.safeParse(PrivateJwkSchema, jwk);
  if (!parsed.success) throw new CleanroomError('SESSION_KEY_INVALID', 'the unwrapped session key is malformed');
  return parsed.output;
}
