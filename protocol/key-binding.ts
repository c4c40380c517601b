import { calculateJwkThumbprint, type JWK } from 'jose';

const DOMAIN = 'cleanroom-key-binding/v1';

/** RFC 7638 SHA-256 thumbprint of a public JWK (base64url). */
export function jwkThumbprint(jwk: JWK): Promise<string> {
  return calculateJwkThumbprint(jwk, 'sha256');
}

/**
 * The ID-token `nonce` that binds a participant's two public keys to their identity
 * (docs/architecture.md invariant 12): base64url(SHA-256("cleanroom-key-binding/v1|<sig thumbprint>|<enc thumbprint>")).
 */
export async function keyBindingNonce(signingThumbprint: string, encryptionThumbprint: string): Promise<string> {
  const data = new TextEncoder().encode(`${DOMAIN}|${signingThumbprint}|${encryptionThumbprint}`);
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', data));
  let binary = '';
  for (const byte of digest) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}
