import { sha256 as nobleSha256 } from '@noble/hashes/sha2.js';

/**
 * Incremental SHA-256 for every client. WebCrypto only hashes a whole buffer at once, so a browser
 * that streams a multi-gigabyte ciphertext (the dataset's `ciphertext_sha256`) needs an
 * incremental hash; `@noble/hashes` (audited, dependency-free, browser-safe) provides it, and Node
 * code uses the same one so every client hashes alike.
 */

/** An incremental hash: feed bytes with `update`, read the 32-byte result once with `digest`. */
export interface Sha256 {
  /** Absorbs `bytes` (any length, any number of calls). Throws `TypeError` after `digest`. */
  update(bytes: Uint8Array): void;
  /** The 32-byte digest of everything absorbed. Callable once; throws `TypeError` after that. */
  digest(): Uint8Array;
}

/** A fresh incremental SHA-256. */
export function createSha256(): Sha256 {
  const hash = nobleSha256.create();
  let finished = false;
  return {
    update(bytes) {
      if (finished) throw new TypeError('sha256: update after digest');
      if (!(bytes instanceof Uint8Array)) throw new TypeError('sha256: update takes a Uint8Array');
      hash.update(bytes);
    },
    digest() {
      if (finished) throw new TypeError('sha256: digest twice');
      finished = true;
      return hash.digest();
    },
  };
}

/** SHA-256 of one buffer, synchronously (WebCrypto's digest is async only). */
export function sha256(bytes: Uint8Array): Uint8Array {
  return nobleSha256(bytes);
}

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

/** Lowercase hex of `bytes`. */
export function toHex(bytes: Uint8Array): string {
  let out = '';
  for (const byte of bytes) out += HEX[byte]!;
  return out;
}
