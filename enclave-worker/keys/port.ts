/**
 * The key service port (docs/architecture.md §4): Cloud KMS symmetric encrypt/decrypt in GCP, a key
 * ring file on disk in the embedded stack. It wraps session private keys; the additional
 * authenticated data binds each wrapped key to its session and epoch
 * (`session-key/v1|<session>|<epoch>`), so a wrapped key moved to another session does not unwrap.
 *
 * Adapters translate failures into `CleanroomError`: `DATASET_KEY_UNWRAP` when a ciphertext does
 * not authenticate (wrong AAD, tampered, destroyed key version), `KEY_SERVICE_UNAVAILABLE` (with
 * `retryAfter`) for an outage or a permission error.
 */
export interface KeyService {
  /** Encrypts `plaintext` under the current key version, bound to `aad`. */
  wrap(plaintext: Uint8Array, aad: Uint8Array): Promise<Uint8Array>;
  /** Decrypts what `wrap` returned, only with the same `aad`. */
  unwrap(ciphertext: Uint8Array, aad: Uint8Array): Promise<Uint8Array>;
}

/** The AAD of a session's wrapped private key (docs/architecture.md invariant 3). */
export function sessionKeyAad(sessionId: string, epoch: number): Uint8Array {
  return new TextEncoder().encode(`session-key/v1|${sessionId}|${epoch}`);
}
