import { exportJWK, generateKeyPair, importJWK, type JWK } from 'jose';
import { CleanroomError } from '../../protocol/errors.ts';
import { jwkThumbprint, keyBindingNonce } from '../../protocol/key-binding.ts';
import type { ParticipantView, PublicJwk } from '../../protocol/session.ts';
import type { CleanroomApi } from './api-client.ts';

/**
 * A participant's two key pairs for one session, as private JWKs (`d` included): an ES256
 * signing key and a P-256 ECDH-ES+A256KW encryption key that results are sealed to. Whoever
 * holds these can read the participant's results: store them like a password.
 */
export interface ParticipantKeys {
  signing: JWK;
  encryption: JWK;
}

/** The public halves and what binds them to a person (docs/architecture.md invariant 12). */
export interface ParticipantKeyBinding {
  signing_jwk: PublicJwk;
  encryption_jwk: PublicJwk;
  signing_kid: string;
  encryption_kid: string;
  /** The `nonce` the binding ID token must carry: {@link keyBindingNonce} of both thumbprints. */
  nonce: string;
}

/** Two fresh extractable P-256 key pairs, exported as private JWKs so that they can be stored. */
export async function generateParticipantKeys(): Promise<ParticipantKeys> {
  const signing = await generateKeyPair('ES256', { extractable: true });
  const encryption = await generateKeyPair('ECDH-ES+A256KW', { crv: 'P-256', extractable: true });
  return { signing: await exportJWK(signing.privateKey), encryption: await exportJWK(encryption.privateKey) };
}

/**
 * The public keys with their thumbprints and the binding nonce. Throws VALIDATION_FAILED when
 * either JWK is not a P-256 private key whose public point WebCrypto accepts.
 */
export async function participantKeyBinding(keys: ParticipantKeys): Promise<ParticipantKeyBinding> {
  const signing_jwk = await publicHalf(keys.signing, 'ES256');
  const encryption_jwk = await publicHalf(keys.encryption, 'ECDH-ES+A256KW');
  const signing_kid = await jwkThumbprint(signing_jwk);
  const encryption_kid = await jwkThumbprint(encryption_jwk);
  return { signing_jwk, encryption_jwk, signing_kid, encryption_kid, nonce: await keyBindingNonce(signing_kid, encryption_kid) };
}

/** Options of {@link registerParticipantKeys}. */
export interface RegisterParticipantKeysOptions {
  api: CleanroomApi;
  sessionId: string;
  keys: ParticipantKeys;
  /**
   * An ID token of the caller whose `nonce` claim is the given value: from the local stack's dev
   * identity provider (`requestDevToken` with `nonce`), or from the identity provider's sign-in
   * flow with that nonce (Google sign-in passes it through to the ID token).
   */
  bindingToken: (nonce: string) => Promise<string>;
}

/**
 * Registers the public halves of `keys` for the caller in a session (docs/architecture.md invariant 12): the
 * binding nonce of both thumbprints, an ID token carrying it, then
 * `PUT .../participants/me/keys`. Registering the same keys again is harmless.
 */
export async function registerParticipantKeys(options: RegisterParticipantKeysOptions): Promise<{ participant: ParticipantView; binding: ParticipantKeyBinding }> {
  const binding = await participantKeyBinding(options.keys);
  const binding_token = await options.bindingToken(binding.nonce);
  const participant = await options.api.registerKeys(options.sessionId, {
    signing_jwk: binding.signing_jwk,
    encryption_jwk: binding.encryption_jwk,
    binding_token,
  });
  return { participant, binding };
}

/** The encryption private key as a non-extractable `CryptoKey`, for opening sealed results. */
export async function importEncryptionKey(keys: ParticipantKeys): Promise<CryptoKey> {
  return (await importPrivate(keys.encryption, 'ECDH-ES+A256KW', false)) as CryptoKey;
}

/** The signing private key as a non-extractable `CryptoKey`. */
export async function importSigningKey(keys: ParticipantKeys): Promise<CryptoKey> {
  return (await importPrivate(keys.signing, 'ES256', false)) as CryptoKey;
}

async function publicHalf(jwk: JWK, alg: 'ES256' | 'ECDH-ES+A256KW'): Promise<PublicJwk> {
  // Importing the private key proves that the point and `d` are a P-256 key pair's.
  await importPrivate(jwk, alg, true);
  return { kty: 'EC', crv: 'P-256', x: jwk.x!, y: jwk.y! };
}

async function importPrivate(jwk: JWK, alg: 'ES256' | 'ECDH-ES+A256KW', extractable: boolean): Promise<CryptoKey | Uint8Array> {
  if (jwk.kty !== 'EC' || jwk.crv !== 'P-256' || typeof jwk.x !== 'string' || typeof jwk.y !== 'string' || typeof jwk.d !== 'string') {
    throw new CleanroomError('VALIDATION_FAILED', `not a P-256 private key for ${alg}`);
  }
  try {
    return await importJWK({ kty: 'EC', crv: 'P-256', x: jwk.x, y: jwk.y, d: jwk.d }, alg, { extractable });
  } catch (error) {
    throw new CleanroomError('VALIDATION_FAILED', `not a usable P-256 private key for ${alg}`, { cause: error });
  }
}
