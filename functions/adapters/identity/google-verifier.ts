import { OAuth2Client } from 'google-auth-library';
import { CleanroomError } from '../../../protocol/errors.ts';
import type { IdentityVerifier, Principal } from '../../core/ports.ts';
import { principalFromClaims } from './claims.ts';

export interface GoogleVerifierOptions {
  /** OAuth client ids accepted as `aud` (the console's and the CLI's). Must not be empty. */
  audiences: string[];
  /** Injectable client (tests give one whose signing certs are generated at test time). */
  client?: OAuth2Client;
}

/**
 * Verifies Google-signed ID tokens with google-auth-library: signature against Google's certs,
 * issuer, expiry and (always) the audience; then a verified email.
 */
export class GoogleIdTokenVerifier implements IdentityVerifier {
  readonly #audiences: string[];
  readonly #client: OAuth2Client;

  constructor(options: GoogleVerifierOptions) {
    if (options.audiences.length === 0) throw new TypeError('GoogleIdTokenVerifier needs at least one audience');
    this.#audiences = options.audiences;
    this.#client = options.client ?? new OAuth2Client();
  }

  async verify(token: string, options?: { nonce?: string }): Promise<Principal> {
    let claims: Record<string, unknown> | undefined;
    try {
      // Left out, the audience would not be checked at all (REFERENCE.md).
      const ticket = await this.#client.verifyIdToken({ idToken: token, audience: this.#audiences });
      claims = ticket.getPayload() as Record<string, unknown> | undefined;
    } catch (cause) {
      throw new CleanroomError('UNAUTHENTICATED', 'invalid or expired token', { cause });
    }
    if (!claims) throw new CleanroomError('UNAUTHENTICATED', 'token has no payload');
    return principalFromClaims(claims, options?.nonce);
  }
}
