import { exportJWK, generateKeyPair } from 'jose';
import { jwkThumbprint, keyBindingNonce } from '../../protocol/key-binding.ts';

/** Issues dev identity tokens (the embedded stack's `DevIdentityProvider`). */
export interface TokenIssuer {
  issue(email: string, options?: { nonce?: string }): Promise<{ token: string }>;
}

/** A participant's keys made at test time: the private halves stay with the test. */
export interface TestParticipantKeys {
  email: string;
  signingPrivateKey: CryptoKey;
  /** Opens results sealed to this participant. */
  encryptionPrivateKey: CryptoKey;
  signingJwk: { kty: 'EC'; crv: 'P-256'; x: string; y: string; alg: 'ES256'; use: 'sig' };
  encryptionJwk: { kty: 'EC'; crv: 'P-256'; x: string; y: string; alg: 'ECDH-ES+A256KW'; use: 'enc' };
}

/**
 * Generates a signing and an encryption key for `email` and registers their public halves in the
 * session (`PUT /api/tee/sessions/:id/participants/me/keys`) with a dev-IdP binding token whose
 * nonce binds both thumbprints (docs/architecture.md invariant 12), so the participant can receive results.
 * Throws when the API refuses.
 */
export async function registerTestKeys(options: { apiUrl: string; idp: TokenIssuer; sessionId: string; email: string }): Promise<TestParticipantKeys> {
  const signing = await generateKeyPair('ES256', { extractable: true });
  const encryption = await generateKeyPair('ECDH-ES+A256KW', { crv: 'P-256', extractable: false });
  const point = async (key: CryptoKey) => {
    const { x, y } = await exportJWK(key);
    return { kty: 'EC' as const, crv: 'P-256' as const, x: x!, y: y! };
  };
  const signingJwk = { ...(await point(signing.publicKey)), alg: 'ES256' as const, use: 'sig' as const };
  const encryptionJwk = { ...(await point(encryption.publicKey)), alg: 'ECDH-ES+A256KW' as const, use: 'enc' as const };
  const nonce = await keyBindingNonce(await jwkThumbprint(signingJwk), await jwkThumbprint(encryptionJwk));
  const res = await fetch(`${options.apiUrl}/api/tee/sessions/${encodeURIComponent(options.sessionId)}/participants/me/keys`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${(await options.idp.issue(options.email)).token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ signing_jwk: signingJwk, encryption_jwk: encryptionJwk, binding_token: (await options.idp.issue(options.email, { nonce })).token }),
  });
  if (res.status !== 200) throw new Error(`key registration for ${options.email} answered ${res.status}: ${await res.text()}`);
  return { email: options.email, signingPrivateKey: signing.privateKey, encryptionPrivateKey: encryption.privateKey, signingJwk, encryptionJwk };
}
