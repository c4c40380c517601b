import { CleanroomError } from '../../protocol/errors.ts';

/** What a token is asked for; the same limits for every adapter (the launcher's, REFERENCE.md). */
export interface TokenRequest {
  /** The token's `aud`: 1-512 bytes. */
  audience: string;
  /** Up to 6 values for `eat_nonce`, each 10-74 bytes. */
  nonces: string[];
}

/**
 * The attestation port: one method and a kind. Adapters: the Confidential Space launcher
 * (`confidential-space.ts`) and the local dev attester (`dev.ts`, `hwmodel: INSECURE_DEV`).
 * Each token binds the caller's nonces, so a token is only ever reused for identical requests.
 */
export interface Attester {
  /** A signed attestation token (compact JWT). Fails with `ATTESTATION_UNAVAILABLE` or `VALIDATION_FAILED`. */
  token(request: TokenRequest): Promise<string>;
  readonly kind: 'confidential-space' | 'insecure-dev';
}

/** The launcher's request limits (REFERENCE.md). */
export const MAX_NONCES = 6;
export const MIN_NONCE_BYTES = 10;
export const MAX_NONCE_BYTES = 74;
export const MAX_AUDIENCE_BYTES = 512;

const encoder = new TextEncoder();

/**
 * Refuses, with `VALIDATION_FAILED`, a request the launcher would answer with 400, so both
 * adapters behave alike and the launcher is never asked for something it refuses. 10-74 bytes
 * satisfies both the proto's bound and a newer page's 8-88 (REFERENCE.md).
 */
export function assertTokenRequest(request: TokenRequest): void {
  const { audience, nonces } = request;
  if (typeof audience !== 'string' || audience.length === 0 || encoder.encode(audience).byteLength > MAX_AUDIENCE_BYTES) {
    throw new CleanroomError('VALIDATION_FAILED', `attestation audience must be 1-${MAX_AUDIENCE_BYTES} bytes`);
  }
  if (!Array.isArray(nonces) || nonces.length > MAX_NONCES) {
    throw new CleanroomError('VALIDATION_FAILED', `at most ${MAX_NONCES} attestation nonces`);
  }
  for (const nonce of nonces) {
    const bytes = typeof nonce === 'string' ? encoder.encode(nonce).byteLength : -1;
    if (bytes < MIN_NONCE_BYTES || bytes > MAX_NONCE_BYTES) {
      throw new CleanroomError('VALIDATION_FAILED', `each attestation nonce must be ${MIN_NONCE_BYTES}-${MAX_NONCE_BYTES} bytes`);
    }
  }
}
