import { CleanroomError } from '../../../protocol/errors.ts';
import type { Principal } from '../../core/ports.ts';

/**
 * The claim checks both identity adapters share once a token's signature, issuer, audience and
 * expiry are verified: a verified email, a subject, and the expected nonce when one is asked for.
 * Bearer (sign-in) tokens carry no nonce; key-binding tokens carry exactly the expected one.
 */
export function principalFromClaims(claims: Record<string, unknown>, expectedNonce?: string): Principal {
  const { email, email_verified: verified, sub, nonce } = claims;
  if (typeof email !== 'string' || email.length === 0 || email.length > 254) {
    throw new CleanroomError('UNAUTHENTICATED', 'token has no email');
  }
  if (verified !== true) throw new CleanroomError('UNAUTHENTICATED', 'token email is not verified');
  if (typeof sub !== 'string' || sub.length === 0) throw new CleanroomError('UNAUTHENTICATED', 'token has no subject');
  if (expectedNonce !== undefined && nonce !== expectedNonce) {
    throw new CleanroomError('UNAUTHENTICATED', 'token nonce does not match');
  }
  // Key-binding tokens carry a nonce and are stored where co-participants can read them (so they
  // can check the binding themselves); a token with a nonce must therefore never sign anyone in.
  if (expectedNonce === undefined && nonce !== undefined) {
    throw new CleanroomError('UNAUTHENTICATED', 'a key-binding token cannot be used as a bearer token');
  }
  return { email: email.toLowerCase(), sub };
}
