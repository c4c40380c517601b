import { CleanroomError } from '../../../protocol/errors.ts';
import type { Principal } from '../../core/ports.ts';

/**
 * The claim checks both identity adapters share once a token's signature, issuer, audience and
 * expiry are verified: a verified email, a subject, and the expected nonce when one is asked for.
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
  return { email: email.toLowerCase(), sub };
}
