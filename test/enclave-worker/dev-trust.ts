import { createLocalJWKSet } from 'jose';
import { DevAttester } from '../../enclave-worker/attestation/dev.ts';
import { createWorkerIdentity, type WorkerIdentity } from '../../enclave-worker/identity.ts';
import { attestationNonce, type AttestationPolicy } from '../../protocol/attestation.ts';

export const AUDIENCE = 'cleanroom-clients';
export const IMAGE_DIGEST = `sha256:${'cd'.repeat(32)}`;
const ISSUER = 'http://127.0.0.1:9/dev-attestation';

/**
 * A worker identity and a dev attester made now, with the `attest` function the worker's
 * `/attestation` uses and what a client needs to verify its tokens offline (the dev opt-in).
 */
export async function devTrust(options: { now?: () => Date } = {}) {
  const attester = await DevAttester.create({ issuer: ISSUER, imageDigest: IMAGE_DIGEST, ...(options.now ? { now: options.now } : {}) });
  const identity: WorkerIdentity = await createWorkerIdentity();
  let issued = 0;
  const attest = async (nonce: string) => {
    issued++;
    return { token: await attester.token({ audience: AUDIENCE, nonces: [await attestationNonce(nonce, identity.thumbprint)] }), kind: attester.kind };
  };
  const policy: AttestationPolicy = { audience: AUDIENCE, allowedImageDigests: [IMAGE_DIGEST], allowInsecureDev: true, devIssuer: ISSUER };
  const devKeys = createLocalJWKSet(attester.jwks() as Parameters<typeof createLocalJWKSet>[0]);
  return { attester, identity, attest, policy, devKeys, issued: () => issued };
}

/** A fresh base64url nonce (256 bits). */
export const freshNonce = (): string => Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString('base64url');
