import * as v from 'valibot';
import { objectKeys, type SessionKeyBundle } from '../../protocol/dataset.ts';
import { CleanroomError } from '../../protocol/errors.ts';
import { SessionIdSchema } from '../../protocol/session.ts';
import type { ObjectStore } from '../../runtime/object-store/port.ts';
import type { WorkerIdentity } from '../identity.ts';
import { assembleKeyBundle, type Attest } from './key-bundle.ts';
import { FIRST_SESSION_KEY_EPOCH, listEpochs, readCurrentKey, sessionsWithKeys } from './key-objects.ts';
import type { KeyService } from './port.ts';
import { PrivateKeyCache } from './private-key-cache.ts';
import { rewrapSession, rewrapSessions, type RewrapAllResult } from './rewrap.ts';
import { encodeStoredKey, generateStoredKey, importStoredKey, publicKeyOf, type SessionPublicKey } from './stored-key.ts';

export type { Attest } from './key-bundle.ts';
export { FIRST_SESSION_KEY_EPOCH } from './key-objects.ts';
export { PRIVATE_KEY_CACHE_MS } from './private-key-cache.ts';
export type { RewrapAllResult } from './rewrap.ts';
export type { SessionPublicKey } from './stored-key.ts';

export interface SessionKeyManagerOptions {
  objects: ObjectStore;
  keys: KeyService;
  identity: WorkerIdentity;
  /** Milliseconds, for the private key cache (injected in tests). */
  now?: () => number;
}

/**
 * The worker's session keys (docs/architecture.md invariant 3): one ECDH-ES P-256 key pair per
 * session, made by whichever worker first needs it and written create-only, so that of two racing
 * workers (or requests) exactly one key survives and both use it. The private key exists in clear
 * only in this process, as a non-extractable WebCrypto key after import. The parts: the stored
 * format (`stored-key.ts`), where the objects live (`key-objects.ts`), the in-memory cache
 * (`private-key-cache.ts`), rewrapping (`rewrap.ts`, scheduled by `rotation.ts`) and the bundle
 * the control plane relays (`key-bundle.ts`). This class is the creation race and the composition.
 */
export class SessionKeyManager {
  readonly #objects: ObjectStore;
  readonly #keys: KeyService;
  readonly #identity: WorkerIdentity;
  readonly #now: () => number;
  readonly #creating = new Map<string, Promise<SessionPublicKey>>();
  readonly #cache: PrivateKeyCache;

  constructor(options: SessionKeyManagerOptions) {
    this.#objects = options.objects;
    this.#keys = options.keys;
    this.#identity = options.identity;
    this.#now = options.now ?? (() => Date.now());
    this.#cache = new PrivateKeyCache(this.#now);
  }

  /**
   * The session's key, created if absent. Concurrent calls in this process share one creation;
   * across processes the create-only write decides and the loser reads the winner's key.
   * Fails with `OBJECT_STORE_UNAVAILABLE` / `KEY_SERVICE_UNAVAILABLE` (retryable) or
   * `SESSION_KEY_INVALID` when the stored object is not a key of this session.
   */
  getOrCreate(sessionId: string): Promise<SessionPublicKey> {
    assertSessionId(sessionId);
    const pending = this.#creating.get(sessionId);
    if (pending) return pending;
    const created = this.#getOrCreate(sessionId).finally(() => this.#creating.delete(sessionId));
    this.#creating.set(sessionId, created);
    return created;
  }

  async #getOrCreate(sessionId: string): Promise<SessionPublicKey> {
    const stored = await readCurrentKey(this.#objects, sessionId);
    if (stored) return publicKeyOf(stored);
    const record = await generateStoredKey(this.#keys, sessionId, FIRST_SESSION_KEY_EPOCH, new Date(this.#now()));
    const key = objectKeys.sessionKey(sessionId, FIRST_SESSION_KEY_EPOCH);
    try {
      await this.#objects.createOnly(key, encodeStoredKey(record));
      // A listing is no snapshot: one taken while a rewrap moved epoch 1 on may have shown no epoch
      // at all. Then the key just written is an orphan and the rewrapped key is the session's.
      if ((await listEpochs(this.#objects, sessionId)).at(-1) === FIRST_SESSION_KEY_EPOCH) return publicKeyOf(record);
      await this.#objects.delete(key);
    } catch (error) {
      if (!(error instanceof CleanroomError && error.code === 'OBJECT_EXISTS')) throw error;
    }
    // Another worker or request won the race: its key is the session's key.
    const winner = await readCurrentKey(this.#objects, sessionId);
    if (!winner) throw new CleanroomError('OBJECT_STORE_UNAVAILABLE', 'the session key was deleted while it was created', { retryAfter: 1 });
    return publicKeyOf(winner);
  }

  /**
   * The session's private key as a non-extractable ECDH key, if its thumbprint is `thumbprint`.
   * `SESSION_KEY_UNAVAILABLE` when the key object is gone (the session was closed and shredded),
   * names another key, or no longer unwraps. Kept in memory for at most `PRIVATE_KEY_CACHE_MS`.
   */
  privateKey(sessionId: string, thumbprint: string): Promise<CryptoKey> {
    assertSessionId(sessionId);
    return this.#cache.get(sessionId, thumbprint, async () => {
      const stored = await readCurrentKey(this.#objects, sessionId);
      if (!stored) throw new CleanroomError('SESSION_KEY_UNAVAILABLE', 'the session has no key (it may have been closed)');
      if (stored.thumbprint !== thumbprint) throw new CleanroomError('SESSION_KEY_UNAVAILABLE', 'the session key named is not the session key');
      return importStoredKey(this.#keys, stored);
    });
  }

  /** Moves the session's key to the next epoch (`rewrap.ts` `rewrapSession`). */
  rewrap(sessionId: string): Promise<{ from: number; to: number } | null> {
    assertSessionId(sessionId);
    return rewrapSession({ objects: this.#objects, keys: this.#keys }, sessionId);
  }

  /**
   * Rewraps every session that has a key (the rotation job). Call it after the key service's
   * version changed: keys this manager is creating meanwhile are waited for, so none written under
   * the old version is missed. `onFailure` hears of each session that counted as failed or
   * unreadable (ids and errors: log codes only).
   */
  async rewrapAll(options: { onFailure?: (sessionId: string, error: unknown) => void } = {}): Promise<RewrapAllResult> {
    await Promise.allSettled(this.#creating.values());
    return rewrapSessions({ objects: this.#objects, keys: this.#keys }, await sessionsWithKeys(this.#objects), options.onFailure);
  }

  /** What `POST /session-keys` answers: the session key (created if absent), certified and attested. */
  async bundle(sessionId: string, nonce: string, attest: Attest): Promise<SessionKeyBundle> {
    return assembleKeyBundle(this.#identity, sessionId, await this.getOrCreate(sessionId), nonce, attest, new Date(this.#now()));
  }
}

function assertSessionId(sessionId: string): void {
  if (!v.is(SessionIdSchema, sessionId)) throw new TypeError('sessionId must be a valid session id');
}
