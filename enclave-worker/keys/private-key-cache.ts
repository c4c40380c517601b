/**
 * Unwrapped session private keys kept in memory for a short while (docs/architecture.md
 * invariant 3). After {@link PRIVATE_KEY_CACHE_MS} a key is read and unwrapped again, so a
 * session whose key object was deleted (closed and shredded) or whose key version was destroyed
 * stops decrypting within that window, even on a warm worker. Loads of one session and key share
 * one read and one unwrap.
 */
export const PRIVATE_KEY_CACHE_MS = 60_000;
const MAX_CACHED_KEYS = 1024;

export class PrivateKeyCache {
  readonly #now: () => number;
  readonly #entries = new Map<string, { thumbprint: string; key: CryptoKey; expiresAt: number }>();
  readonly #loading = new Map<string, Promise<CryptoKey>>();

  /** @param now milliseconds (injected in tests) */
  constructor(now: () => number) {
    this.#now = now;
  }

  /** The session's key of `thumbprint`, from memory while fresh, otherwise from `load`. */
  get(sessionId: string, thumbprint: string, load: () => Promise<CryptoKey>): Promise<CryptoKey> {
    const cached = this.#entries.get(sessionId);
    if (cached && cached.expiresAt > this.#now() && cached.thumbprint === thumbprint) return Promise.resolve(cached.key);
    const slot = `${sessionId}|${thumbprint}`;
    let loading = this.#loading.get(slot);
    if (!loading) {
      loading = this.#load(sessionId, thumbprint, load).finally(() => this.#loading.delete(slot));
      this.#loading.set(slot, loading);
    }
    return loading;
  }

  async #load(sessionId: string, thumbprint: string, load: () => Promise<CryptoKey>): Promise<CryptoKey> {
    this.#entries.delete(sessionId);
    // The window starts before the read, so a key is never used longer than that after a shred.
    const readAt = this.#now();
    const key = await load();
    if (this.#entries.size >= MAX_CACHED_KEYS) this.#entries.delete(this.#entries.keys().next().value!);
    this.#entries.set(sessionId, { thumbprint, key, expiresAt: readAt + PRIVATE_KEY_CACHE_MS });
    return key;
  }
}
