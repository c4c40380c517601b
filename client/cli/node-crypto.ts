import { createCipheriv, createDecipheriv, createHash } from 'node:crypto';
import type { ChunkAead } from '../../protocol/dataset-format.ts';
import type { Sha256 } from '../../protocol/sha256.ts';

const TAG_BYTES = 16;

/**
 * AES-256-GCM on one record with node:crypto (OpenSSL, several times the speed of WebCrypto's
 * per-call promise for megabyte chunks), for the CLI's uploads. The same contract as the
 * browser-safe `webCryptoAead`: the client may not import `runtime/`, so this mirrors
 * `runtime/aead-node.ts` in the CLI layer.
 */
export const nodeAead: ChunkAead = {
  async seal(key, nonce, aad, plaintext) {
    const cipher = createCipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG_BYTES });
    cipher.setAAD(aad);
    const head = cipher.update(plaintext);
    const tail = cipher.final();
    const tag = cipher.getAuthTag();
    const out = new Uint8Array(head.byteLength + tail.byteLength + TAG_BYTES);
    out.set(head, 0);
    out.set(tail, head.byteLength);
    out.set(tag, head.byteLength + tail.byteLength);
    return out;
  },
  async open(key, nonce, aad, ciphertext) {
    if (ciphertext.byteLength < TAG_BYTES) return null;
    const decipher = createDecipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG_BYTES });
    decipher.setAAD(aad);
    decipher.setAuthTag(ciphertext.subarray(ciphertext.byteLength - TAG_BYTES));
    const head = decipher.update(ciphertext.subarray(0, ciphertext.byteLength - TAG_BYTES));
    try {
      const tail = decipher.final();
      const out = new Uint8Array(head.byteLength + tail.byteLength);
      out.set(head, 0);
      out.set(tail, head.byteLength);
      return out;
    } catch {
      return null;
    }
  },
};

/** An incremental SHA-256 by node:crypto, with the contract of `protocol/sha256.ts`. */
export function nodeSha256(): Sha256 {
  const hash = createHash('sha256');
  let done = false;
  return {
    update(bytes) {
      if (done) throw new TypeError('update after digest');
      hash.update(bytes);
    },
    digest() {
      if (done) throw new TypeError('digest called twice');
      done = true;
      return new Uint8Array(hash.digest());
    },
  };
}
