import { exportJWK, generateKeyPair, type CryptoKey, type JWK } from 'jose';
import { jwkThumbprint } from '../protocol/key-binding.ts';

/**
 * The worker's identity key pair, made at boot and never written anywhere: the private key is a
 * non-extractable WebCrypto key. Attestation tokens bind its thumbprint (docs/architecture.md invariant 1), so
 * a client that verified the token knows it talks to this process; later issues certify session
 * keys and sign receipts with it.
 */
export interface WorkerIdentity {
  readonly privateKey: CryptoKey;
  readonly publicJwk: JWK;
  readonly thumbprint: string;
}

export async function createWorkerIdentity(): Promise<WorkerIdentity> {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: false });
  const { kty, crv, x, y } = await exportJWK(publicKey);
  const thumbprint = await jwkThumbprint({ kty, crv, x, y } as JWK);
  return { privateKey, publicJwk: { kty, crv, x, y, alg: 'ES256', use: 'sig', kid: thumbprint } as JWK, thumbprint };
}
