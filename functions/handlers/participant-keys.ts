import { importJWK } from 'jose';
import { CleanroomError } from '../../protocol/errors.ts';
import { jwkThumbprint, keyBindingNonce } from '../../protocol/key-binding.ts';
import { RegisterKeysRequestSchema, type PublicJwk } from '../../protocol/session.ts';
import { toParticipantView } from '../core/session-rules.ts';
import { readJson } from '../http/body.ts';
import { json } from '../http/responses.ts';
import type { Handler } from '../http/types.ts';
import { sessionIdParam } from './session-id.ts';

/**
 * `PUT /api/tee/sessions/:id/participants/me/keys`: a participant registers a signing and an
 * encryption public key. The body carries an ID token of the same person whose nonce binds both
 * keys' thumbprints (docs/architecture.md invariant 12), so the control plane cannot slip in keys of its own
 * without a token from the identity provider; the worker checks that token again.
 */
export const registerKeys: Handler = async ({ request, params, principal, deps }) => {
  const id = sessionIdParam(params);
  const body = await readJson(request, RegisterKeysRequestSchema);
  await assertUsablePoint(body.signing_jwk, 'ES256', 'signing_jwk');
  await assertUsablePoint(body.encryption_jwk, 'ECDH-ES+A256KW', 'encryption_jwk');
  const signing_kid = await jwkThumbprint(body.signing_jwk);
  const encryption_kid = await jwkThumbprint(body.encryption_jwk);
  if (signing_kid === encryption_kid) {
    throw new CleanroomError('VALIDATION_FAILED', 'the signing and encryption keys must differ');
  }
  const bound = await deps.identity.verify(body.binding_token, { nonce: await keyBindingNonce(signing_kid, encryption_kid) });
  if (bound.email !== principal.email || bound.sub !== principal.sub) {
    throw new CleanroomError('FORBIDDEN', 'the binding token belongs to someone else');
  }
  const session = await deps.sessions.registerKeys(principal.email, id, {
    signing_jwk: body.signing_jwk,
    encryption_jwk: body.encryption_jwk,
    signing_kid,
    encryption_kid,
    binding_token: body.binding_token,
    sub: principal.sub,
  });
  const me = session.participants.find((p) => p.email === principal.email)!;
  return json(toParticipantView(me));
};

/** The coordinates must be a point on P-256: WebCrypto refuses to import anything else. */
async function assertUsablePoint(jwk: PublicJwk, alg: string, field: string): Promise<void> {
  try {
    await importJWK({ kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y }, alg);
  } catch {
    throw new CleanroomError('VALIDATION_FAILED', `${field}: not a valid P-256 public key`);
  }
}
