import { NONCE_PREFIX_BYTES, TAG_BYTES } from './header.ts';

/**
 * One AES-256-GCM operation on one record. Keys are raw 32-byte arrays; an implementation may
 * cache per-key state by array identity (the stream functions copy the caller's key once, so each
 * stream has its own array and nobody else can change it underneath the cache).
 */
export interface ChunkAead {
  /** Ciphertext followed by the 16-byte tag. */
  seal(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, plaintext: Uint8Array): Promise<Uint8Array>;
  /** The plaintext, or `null` when authentication fails. */
  open(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, ciphertext: Uint8Array): Promise<Uint8Array | null>;
}

/** Bytes of a data key. */
export const DATA_KEY_BYTES = 32;

/** A fresh random 256-bit data key. */
export function generateDataKey(): Uint8Array {
  return crypto.getRandomValues(new Uint8Array(DATA_KEY_BYTES));
}

/** A fresh random nonce prefix (7 bytes: each stream gets its own nonce space). */
export function generateNoncePrefix(): Uint8Array {
  return crypto.getRandomValues(new Uint8Array(NONCE_PREFIX_BYTES));
}

/** STREAM nonce of record `index`: prefix (7 bytes) | u32 BE index | 1 if last else 0. */
export function recordNonce(prefix: Uint8Array, index: number, last: boolean): Uint8Array<ArrayBuffer> {
  const nonce = new Uint8Array(12);
  nonce.set(prefix, 0);
  new DataView(nonce.buffer).setUint32(NONCE_PREFIX_BYTES, index);
  nonce[11] = last ? 1 : 0;
  return nonce;
}

/** Throws `TypeError` unless `key` is 32 bytes. */
export function assertDataKey(key: unknown): asserts key is Uint8Array {
  if (!(key instanceof Uint8Array) || key.byteLength !== DATA_KEY_BYTES) throw new TypeError('a data key is 32 bytes');
}

const importedKeys = new WeakMap<Uint8Array, Promise<CryptoKey>>();

function cryptoKey(raw: Uint8Array): Promise<CryptoKey> {
  let key = importedKeys.get(raw);
  if (!key) {
    assertDataKey(raw);
    key = crypto.subtle.importKey('raw', unshared(raw), 'AES-GCM', false, ['encrypt', 'decrypt']);
    importedKeys.set(raw, key);
  }
  return key;
}

/** WebCrypto wants `ArrayBuffer`-backed views; copy when handed anything else (e.g. a shared buffer). */
function unshared(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  return bytes.buffer instanceof ArrayBuffer ? (bytes as Uint8Array<ArrayBuffer>) : new Uint8Array(bytes);
}

/** The browser-safe implementation: WebCrypto AES-GCM, the imported key cached per key array. */
export const webCryptoAead: ChunkAead = {
  async seal(key, nonce, aad, plaintext) {
    const params = { name: 'AES-GCM', iv: unshared(nonce), additionalData: unshared(aad), tagLength: TAG_BYTES * 8 };
    return new Uint8Array(await crypto.subtle.encrypt(params, await cryptoKey(key), unshared(plaintext)));
  },
  async open(key, nonce, aad, ciphertext) {
    if (ciphertext.byteLength < TAG_BYTES) return null;
    const params = { name: 'AES-GCM', iv: unshared(nonce), additionalData: unshared(aad), tagLength: TAG_BYTES * 8 };
    const k = await cryptoKey(key);
    try {
      return new Uint8Array(await crypto.subtle.decrypt(params, k, unshared(ciphertext)));
    } catch (error) {
      // WebCrypto reports a failed tag check as OperationError and nothing else; rethrow anything else.
      if (error instanceof DOMException && error.name === 'OperationError') return null;
      throw error;
    }
  },
};
