import { createRemoteJWKSet, jwtVerify, type JWTVerifyGetKey } from 'jose';
import { CleanroomError } from '../../../protocol/errors.ts';
import type { IdentityVerifier, Principal } from '../../core/ports.ts';
import { principalFromClaims } from './claims.ts';

/** Verified tokens remembered (oldest dropped first). */
const VERIFIED_CACHE_SIZE = 1000;

export interface JwksVerifierOptions {
  issuer: string;
  audience: string | string[];
  /** Where the issuer publishes its JWKS; fetched with a timeout and cached by jose. */
  jwksUrl: URL;
  algorithms?: string[];
  /** Seconds of clock skew tolerated on `exp`/`iat`/`nbf`. */
  clockToleranceSeconds?: number;
  /** Injectable time, for expiry tests. */
  currentDate?: () => Date;
  /** Injectable key source (tests); defaults to the remote JWKS. */
  keys?: JWTVerifyGetKey;
}

/**
 * Verifies ID tokens from an OIDC issuer that publishes a JWKS: the dev identity provider in the
 * embedded stack. Order: signature with pinned algorithms, issuer, audience, expiry, then claims.
 */
export class JwksIdentityVerifier implements IdentityVerifier {
  readonly #options: JwksVerifierOptions;
  readonly #keys: JWTVerifyGetKey;
  readonly #verified = new Map<string, Record<string, unknown>>();

  constructor(options: JwksVerifierOptions) {
    this.#options = options;
    this.#keys = options.keys ?? createRemoteJWKSet(options.jwksUrl, { timeoutDuration: 5000, cooldownDuration: 30_000 });
  }

  async verify(token: string, options?: { nonce?: string }): Promise<Principal> {
    const cached = this.#verified.get(token);
    const nowSeconds = (this.#options.currentDate?.() ?? new Date()).getTime() / 1000;
    // A token whose signature, issuer and audience were verified stays valid until it expires
    // (ID tokens cannot be revoked), so the signature check is not repeated on every request.
    if (cached && typeof cached.exp === 'number' && cached.exp > nowSeconds) return principalFromClaims(cached, options?.nonce);
    let payload: Record<string, unknown>;
    try {
      ({ payload } = await jwtVerify(token, this.#keys, {
        issuer: this.#options.issuer,
        audience: this.#options.audience,
        algorithms: this.#options.algorithms ?? ['ES256'],
        clockTolerance: this.#options.clockToleranceSeconds ?? 5,
        requiredClaims: ['exp', 'iat', 'sub'],
        ...(this.#options.currentDate ? { currentDate: this.#options.currentDate() } : {}),
      }));
    } catch (cause) {
      // Say little to the caller; the cause (never the token) is kept for the log.
      throw new CleanroomError('UNAUTHENTICATED', 'invalid or expired token', { cause });
    }
    const principal = principalFromClaims(payload, options?.nonce);
    if (this.#verified.size >= VERIFIED_CACHE_SIZE) this.#verified.delete(this.#verified.keys().next().value!);
    this.#verified.set(token, payload);
    return principal;
  }
}
