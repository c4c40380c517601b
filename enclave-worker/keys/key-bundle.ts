import * as v from 'valibot';
import { SessionKeyBundleSchema, type SessionKeyBundle } from '../../protocol/dataset.ts';
import { certifySessionKey } from '../../protocol/session-key.ts';
import type { WorkerIdentity } from '../identity.ts';
import type { SessionPublicKey } from './stored-key.ts';

/** A fresh attestation token whose nonce binds the caller's nonce and the identity key (the `/attestation` path). */
export type Attest = (nonce: string) => Promise<{ token: string; kind: string }>;

/**
 * What `POST /session-keys` answers (docs/architecture.md invariant 3): the session's public key,
 * its certificate by the worker's identity key, and an attestation binding the caller's nonce and
 * that identity key, checked against its schema before it leaves.
 */
export async function assembleKeyBundle(identity: WorkerIdentity, sessionId: string, key: SessionPublicKey, nonce: string, attest: Attest, now: Date): Promise<SessionKeyBundle> {
  const [certificate, attestation] = await Promise.all([
    certifySessionKey({
      identityPrivateKey: identity.privateKey,
      identityThumbprint: identity.thumbprint,
      sessionId,
      epoch: key.epoch,
      publicJwk: key.publicJwk,
      now,
    }),
    attest(nonce),
  ]);
  const { kty, crv, x, y } = identity.publicJwk;
  return v.parse(SessionKeyBundleSchema, {
    session_id: sessionId,
    epoch: key.epoch,
    public_jwk: key.publicJwk,
    thumbprint: key.thumbprint,
    certificate,
    identity_jwk: { kty, crv, x, y, alg: 'ES256', use: 'sig' },
    attestation: attestation.token,
    attestation_kind: attestation.kind,
  });
}
