import type { JWK } from 'jose';
import * as v from 'valibot';
import { objectKeys, SessionKeyBundleSchema, type SessionKeyBundle } from '../../protocol/dataset.ts';
import { CleanroomError } from '../../protocol/errors.ts';
import { jwkThumbprint } from '../../protocol/key-binding.ts';
import { certifySessionKey } from '../../protocol/session-key.ts';
import { SessionIdSchema, publicP256JwkSchema } from '../../protocol/session.ts';
import type { ObjectStore } from '../../runtime/object-store/port.ts';
import type { WorkerIdentity } from '../identity.ts';
import { sessionKeyAad, type KeyService } from './port.ts';

/**
 * The epoch a session key is first written at. Each `rewrap` writes the same key pair at the next
 * epoch, wrapped under the key service's current version, and deletes the previous epoch
 * (docs/architecture.md invariant 3); a session's current epoch is its highest `epoch-<n>.json`.
 */
export const FIRST_SESSION_KEY_EPOCH = 1;
/**
 * How long an unwrapped private key is kept in memory. After that it is read and unwrapped
 * again, so a session whose key object was deleted (closed and shredded) or whose key version was
 * destroyed stops decrypting within this window, even on a warm worker.
 */
export const PRIVATE_KEY_CACHE_MS = 60_000;
const MAX_CACHED_KEYS = 1024;
/** A stored key object is well under 2 KiB; anything much larger is not one of ours. */
const MAX_OBJECT_BYTES = 16 * 1024;
const ALG = 'ECDH-ES+A256KW' as const;
/** The name of an epoch's object under the session's prefix (`objectKeys.sessionKey`). */
const EPOCH_OBJECT = /^epoch-([1-9]\d{0,8})\.json$/;
/** Where every session's key objects live: `objectKeys.sessionKeyPrefix` without the session. */
const SESSION_KEYS_PREFIX = 'session-keys/';
/** Reads of a session's key that may find its epoch rewrapped away before giving up. */
const READ_ATTEMPTS = 3;
/** Sessions `rewrapAll` works on at once: each is a handful of store and key service calls. */
const REWRAP_CONCURRENCY = 8;
const ECDH = { name: 'ECDH', namedCurve: 'P-256' } as const;

const Thumbprint = v.pipe(v.string(), v.regex(/^[A-Za-z0-9_-]{43}$/));
const Coordinate = v.pipe(v.string(), v.regex(/^[A-Za-z0-9_-]{43}$/));

/** A session key as stored at `objectKeys.sessionKey(session, epoch)`: public parts and the KMS-wrapped private JWK. */
export const StoredSessionKeySchema = v.strictObject({
  v: v.literal(1),
  session_id: SessionIdSchema,
  epoch: v.pipe(v.number(), v.integer(), v.minValue(1)),
  public_jwk: publicP256JwkSchema(ALG, 'enc'),
  thumbprint: Thumbprint,
  /** base64url of `KeyService.wrap(JSON of the private JWK, sessionKeyAad(session, epoch))`. */
  wrapped_private: v.pipe(v.string(), v.minLength(16), v.maxLength(8192), v.regex(/^[A-Za-z0-9_-]+$/)),
  created_at: v.pipe(v.string(), v.isoTimestamp()),
});
export type StoredSessionKey = v.InferOutput<typeof StoredSessionKeySchema>;

/** The private JWK inside the wrapping: exactly the members an import needs. */
const PrivateJwkSchema = v.strictObject({ kty: v.literal('EC'), crv: v.literal('P-256'), x: Coordinate, y: Coordinate, d: Coordinate });

/** A session's public key, as `getOrCreate` returns it. */
export interface SessionPublicKey {
  epoch: number;
  publicJwk: JWK;
  thumbprint: string;
}

/** What `rewrapAll` did; counts only. */
export interface RewrapAllResult {
  /** Sessions now at a new epoch (rewrapped by this call, or by another worker meanwhile). */
  rewrapped: number;
  /** Sessions that could not be rewrapped now (an outage, a refusal): their old wrapping is still live. */
  failed: number;
  /**
   * Sessions whose stored key no longer unwraps or is not a key (its key version is already
   * destroyed, or the object is malformed): there is nothing a destroyed version could still lose.
   */
  unreadable: number;
}

/** A fresh attestation token whose nonce binds the caller's nonce and the identity key (the `/attestation` path). */
export type Attest = (nonce: string) => Promise<{ token: string; kind: string }>;

export interface SessionKeyManagerOptions {
  objects: ObjectStore;
  keys: KeyService;
  identity: WorkerIdentity;
  /** Milliseconds, for the private key cache (injected in tests). */
  now?: () => number;
}

/**
 * The worker's session keys (docs/architecture.md invariant 3): one ECDH-ES P-256 key pair per session, made by
 * whichever worker first needs it, persisted only as `KeyService`-wrapped JSON with AAD
 * `session-key/v1|<session>|<epoch>`, written create-only so that of two racing workers (or
 * requests) exactly one key survives and both use it. The private key exists in clear only in
 * this process, as a non-extractable WebCrypto key after import. `rewrap` moves a key to the next
 * epoch under the key service's current version, so destroying older versions kills every
 * other copy of the wrapping (backups, soft delete); see `rotation.ts`.
 */
export class SessionKeyManager {
  readonly #objects: ObjectStore;
  readonly #keys: KeyService;
  readonly #identity: WorkerIdentity;
  readonly #now: () => number;
  readonly #creating = new Map<string, Promise<SessionPublicKey>>();
  readonly #cache = new Map<string, { thumbprint: string; key: CryptoKey; expiresAt: number }>();
  readonly #loading = new Map<string, Promise<CryptoKey>>();

  constructor(options: SessionKeyManagerOptions) {
    this.#objects = options.objects;
    this.#keys = options.keys;
    this.#identity = options.identity;
    this.#now = options.now ?? (() => Date.now());
  }

  /**
   * The session's key, created if absent. Concurrent calls in this process share one creation;
   * across processes the create-only write decides and the loser reads the winner's key.
   * Fails with `OBJECT_STORE_UNAVAILABLE` / `KEY_SERVICE_UNAVAILABLE` (retryable) or
   * `SESSION_KEY_INVALID` when the stored object is not a key of this session.
   */
  getOrCreate(sessionId: string): Promise<SessionPublicKey> {
    if (!v.is(SessionIdSchema, sessionId)) throw new TypeError('sessionId must be a valid session id');
    const pending = this.#creating.get(sessionId);
    if (pending) return pending;
    const created = this.#getOrCreate(sessionId).finally(() => this.#creating.delete(sessionId));
    this.#creating.set(sessionId, created);
    return created;
  }

  async #getOrCreate(sessionId: string): Promise<SessionPublicKey> {
    const stored = await this.#read(sessionId);
    if (stored) return publicKeyOf(stored);
    const record = await this.#generate(sessionId);
    const key = objectKeys.sessionKey(sessionId, FIRST_SESSION_KEY_EPOCH);
    try {
      await this.#objects.createOnly(key, encodeRecord(record));
      // A listing is no snapshot: one taken while a rewrap moved epoch 1 on may have shown no epoch
      // at all. Then the key just written is an orphan and the rewrapped key is the session's.
      if ((await this.#epochs(sessionId)).at(-1) === FIRST_SESSION_KEY_EPOCH) return publicKeyOf(record);
      await this.#objects.delete(key);
    } catch (error) {
      if (!(error instanceof CleanroomError && error.code === 'OBJECT_EXISTS')) throw error;
    }
    // Another worker or request won the race: its key is the session's key.
    const winner = await this.#read(sessionId);
    if (!winner) throw new CleanroomError('OBJECT_STORE_UNAVAILABLE', 'the session key was deleted while it was created', { retryAfter: 1 });
    return publicKeyOf(winner);
  }

  /**
   * The session's private key as a non-extractable ECDH key, if its thumbprint is `thumbprint`.
   * `SESSION_KEY_UNAVAILABLE` when the key object is gone (the session was closed and shredded),
   * names another key, or no longer unwraps. Kept in memory for at most {@link PRIVATE_KEY_CACHE_MS}.
   */
  async privateKey(sessionId: string, thumbprint: string): Promise<CryptoKey> {
    if (!v.is(SessionIdSchema, sessionId)) throw new TypeError('sessionId must be a valid session id');
    const cached = this.#cache.get(sessionId);
    if (cached && cached.expiresAt > this.#now() && cached.thumbprint === thumbprint) return cached.key;
    // Queries of one session starting together share one read and one unwrap.
    const slot = `${sessionId}|${thumbprint}`;
    let loading = this.#loading.get(slot);
    if (!loading) {
      loading = this.#load(sessionId, thumbprint).finally(() => this.#loading.delete(slot));
      this.#loading.set(slot, loading);
    }
    return loading;
  }

  async #load(sessionId: string, thumbprint: string): Promise<CryptoKey> {
    this.#cache.delete(sessionId);
    const readAt = this.#now();
    const stored = await this.#read(sessionId);
    if (!stored) throw new CleanroomError('SESSION_KEY_UNAVAILABLE', 'the session has no key (it may have been closed)');
    if (stored.thumbprint !== thumbprint) throw new CleanroomError('SESSION_KEY_UNAVAILABLE', 'the session key named is not the session key');
    const key = await this.#import(stored);
    if (this.#cache.size >= MAX_CACHED_KEYS) this.#cache.delete(this.#cache.keys().next().value!);
    // The window starts before the read, so a key is never used longer than that after a shred.
    this.#cache.set(sessionId, { thumbprint, key, expiresAt: readAt + PRIVATE_KEY_CACHE_MS });
    return key;
  }

  /**
   * Moves the session's key to the next epoch: the same private key, unwrapped with the current
   * epoch's AAD and wrapped again (under the key service's current version) with the next one's,
   * written create-only, and then the older epochs deleted. Null when the session has no key (or
   * it was shredded meanwhile). Of workers racing on one session exactly one writes the next
   * epoch; the others return the same move without touching anything. The public key and its
   * thumbprint never change, so pinned manifests and cached private keys stay valid.
   */
  async rewrap(sessionId: string): Promise<{ from: number; to: number } | null> {
    if (!v.is(SessionIdSchema, sessionId)) throw new TypeError('sessionId must be a valid session id');
    const stored = await this.#read(sessionId);
    if (!stored) return null;
    const from = stored.epoch;
    const to = from + 1;
    const plaintext = await this.#unwrap(stored);
    let wrapped: Uint8Array;
    try {
      wrapped = await this.#keys.wrap(plaintext, sessionKeyAad(sessionId, to));
    } finally {
      plaintext.fill(0);
    }
    // `created_at` stays: it dates the key pair, which this does not change.
    const record: StoredSessionKey = { ...stored, epoch: to, wrapped_private: Buffer.from(wrapped).toString('base64url') };
    try {
      await this.#objects.createOnly(objectKeys.sessionKey(sessionId, to), encodeRecord(record));
    } catch (error) {
      // Another worker moved it first, and deletes the old epoch itself.
      if (error instanceof CleanroomError && error.code === 'OBJECT_EXISTS') return { from, to };
      throw error;
    }
    // Only the writer of an epoch deletes the one before it, so an old epoch already gone, with
    // nothing newer than ours, means the session was shredded while this ran: the copy just
    // written must not outlive it. (The control plane's final shredding pass would catch it too.)
    const oldGone = !(await this.#objects.delete(objectKeys.sessionKey(sessionId, from)));
    const epochs = await this.#epochs(sessionId);
    if (oldGone && (epochs.at(-1) ?? 0) <= to) {
      await this.#objects.deletePrefix(objectKeys.sessionKeyPrefix(sessionId));
      return null;
    }
    // Leftovers of a rewrap that stopped between its write and its delete.
    for (const epoch of epochs) if (epoch < from) await this.#objects.delete(objectKeys.sessionKey(sessionId, epoch));
    return { from, to };
  }

  /**
   * Rewraps every session that has a key (the rotation job, `rotation.ts`), a few at a time.
   * Call it after the key service's version changed: keys this manager is creating meanwhile are
   * waited for, so none written under the old version is missed. `onFailure` hears of each
   * session that counted as failed or unreadable (ids and errors: log codes only).
   */
  async rewrapAll(options: { onFailure?: (sessionId: string, error: unknown) => void } = {}): Promise<RewrapAllResult> {
    await Promise.allSettled(this.#creating.values());
    const sessions = new Set<string>();
    for (const { key } of await this.#objects.list(SESSION_KEYS_PREFIX)) {
      const [, sessionId, name, ...rest] = key.split('/');
      if (rest.length === 0 && v.is(SessionIdSchema, sessionId) && EPOCH_OBJECT.test(name ?? '')) sessions.add(sessionId);
    }
    const result: RewrapAllResult = { rewrapped: 0, failed: 0, unreadable: 0 };
    const queue = [...sessions];
    const work = async (): Promise<void> => {
      for (let sessionId = queue.shift(); sessionId !== undefined; sessionId = queue.shift()) {
        try {
          if (await this.rewrap(sessionId)) result.rewrapped++;
        } catch (error) {
          if (isUnreadable(error)) result.unreadable++;
          else result.failed++;
          options.onFailure?.(sessionId, error);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(REWRAP_CONCURRENCY, queue.length) }, work));
    return result;
  }

  /**
   * What `POST /session-keys` answers: the session key (created if absent), its certificate by
   * the identity key, and an attestation binding the caller's nonce and that identity key.
   */
  async bundle(sessionId: string, nonce: string, attest: Attest): Promise<SessionKeyBundle> {
    const key = await this.getOrCreate(sessionId);
    const [certificate, attestation] = await Promise.all([
      certifySessionKey({
        identityPrivateKey: this.#identity.privateKey,
        identityThumbprint: this.#identity.thumbprint,
        sessionId,
        epoch: key.epoch,
        publicJwk: key.publicJwk,
        now: new Date(this.#now()),
      }),
      attest(nonce),
    ]);
    const { kty, crv, x, y } = this.#identity.publicJwk;
    return v.parse(SessionKeyBundleSchema, {
      session_id: sessionId,
      epoch: key.epoch,
      public_jwk: key.publicJwk,
      thumbprint: key.thumbprint,
      certificate,
      identity_jwk: { kty, crv, x, y, alg: 'ES256', use: 'sig' },
      attestation: attestation.token,
      attestation_kind: attestation.kind,
    });
  }

  /** The session's key at its current (highest) epoch, or null when it has none. */
  async #read(sessionId: string): Promise<StoredSessionKey | null> {
    for (let attempt = 0; attempt < READ_ATTEMPTS; attempt++) {
      const epoch = (await this.#epochs(sessionId)).at(-1);
      if (epoch === undefined) return null;
      const stored = await this.#readEpoch(sessionId, epoch);
      if (stored) return stored;
      // Rewrapped between the listing and the read (the next epoch is written before this one
      // is deleted), or shredded: the next listing tells which.
    }
    throw new CleanroomError('OBJECT_STORE_UNAVAILABLE', 'the session key moved on while it was read', { retryAfter: 1 });
  }

  /** The epochs the session has key objects for, ascending (one, except while a rewrap runs). */
  async #epochs(sessionId: string): Promise<number[]> {
    const prefix = objectKeys.sessionKeyPrefix(sessionId);
    const epochs: number[] = [];
    for (const { key } of await this.#objects.list(prefix)) {
      const match = EPOCH_OBJECT.exec(key.slice(prefix.length));
      if (match) epochs.push(Number(match[1]));
    }
    return epochs.sort((a, b) => a - b);
  }

  async #readEpoch(sessionId: string, epoch: number): Promise<StoredSessionKey | null> {
    const invalid = new CleanroomError('SESSION_KEY_INVALID', 'the stored session key is not a key of this session');
    const bytes = await readSmall(this.#objects, objectKeys.sessionKey(sessionId, epoch), invalid);
    if (bytes === null) return null;
    let json: unknown;
    try {
      json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
    } catch {
      throw invalid;
    }
    const parsed = v.safeParse(StoredSessionKeySchema, json);
    if (!parsed.success) throw invalid;
    const stored = parsed.output;
    // The object's place names the session and epoch; what it says must agree, and the
    // thumbprint must be the public key's (the AAD checks the private part at unwrap).
    if (stored.session_id !== sessionId || stored.epoch !== epoch) throw invalid;
    const { kty, crv, x, y } = stored.public_jwk;
    if ((await jwkThumbprint({ kty, crv, x, y })) !== stored.thumbprint) throw invalid;
    return stored;
  }

  async #generate(sessionId: string): Promise<StoredSessionKey> {
    const pair = (await crypto.subtle.generateKey(ECDH, true, ['deriveBits'])) as CryptoKeyPair;
    const { kty, crv, x, y, d } = await crypto.subtle.exportKey('jwk', pair.privateKey);
    // Exported only to be wrapped; the clear bytes are zeroed once the key service has them.
    const plaintext = new TextEncoder().encode(JSON.stringify({ kty, crv, x, y, d }));
    let wrapped: Uint8Array;
    try {
      wrapped = await this.#keys.wrap(plaintext, sessionKeyAad(sessionId, FIRST_SESSION_KEY_EPOCH));
    } finally {
      plaintext.fill(0);
    }
    const publicJwk = { kty: 'EC' as const, crv: 'P-256' as const, x: x!, y: y!, alg: ALG, use: 'enc' as const };
    return {
      v: 1,
      session_id: sessionId,
      epoch: FIRST_SESSION_KEY_EPOCH,
      public_jwk: publicJwk,
      thumbprint: await jwkThumbprint({ kty: kty!, crv: crv!, x: x!, y: y! }),
      wrapped_private: Buffer.from(wrapped).toString('base64url'),
      created_at: new Date(this.#now()).toISOString(),
    };
  }

  /**
   * The stored private JWK in clear, checked to be the stored public key's; the caller zeroes it.
   * `SESSION_KEY_UNAVAILABLE` when it no longer unwraps, `SESSION_KEY_INVALID` when it is not that key.
   */
  async #unwrap(stored: StoredSessionKey): Promise<Uint8Array> {
    let plaintext: Uint8Array;
    try {
      plaintext = await this.#keys.unwrap(Buffer.from(stored.wrapped_private, 'base64url'), sessionKeyAad(stored.session_id, stored.epoch));
    } catch (cause) {
      // An outage is retryable; a ciphertext that no longer authenticates (moved from another
      // session, or its key version destroyed) means the key is gone.
      if (cause instanceof CleanroomError && cause.code === 'KEY_SERVICE_UNAVAILABLE') throw cause;
      throw new CleanroomError('SESSION_KEY_UNAVAILABLE', 'the session key does not unwrap', { cause });
    }
    try {
      const { x, y } = parsePrivateJwk(plaintext);
      if (x !== stored.public_jwk.x || y !== stored.public_jwk.y) throw new CleanroomError('SESSION_KEY_INVALID', 'the unwrapped key is not the stored public key');
      return plaintext;
    } catch (error) {
      plaintext.fill(0);
      throw error;
    }
  }

  async #import(stored: StoredSessionKey): Promise<CryptoKey> {
    const plaintext = await this.#unwrap(stored);
    try {
      return await crypto.subtle.importKey('jwk', { ...parsePrivateJwk(plaintext), ext: false }, ECDH, false, ['deriveBits']);
    } catch (error) {
      if (error instanceof CleanroomError) throw error;
      throw new CleanroomError('SESSION_KEY_INVALID', 'the unwrapped session key does not import');
    } finally {
      // JS strings (the parsed `d`) cannot be wiped; the bytes can.
      plaintext.fill(0);
    }
  }
}

/** The private JWK in `plaintext`, or `SESSION_KEY_INVALID` (with no cause: it could quote key material). */
function parsePrivateJwk(plaintext: Uint8Array): v.InferOutput<typeof PrivateJwkSchema> {
  let jwk: unknown;
  try {
    jwk = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(plaintext));
  } catch {
    throw new CleanroomError('SESSION_KEY_INVALID', 'the unwrapped session key is not JSON');
  }
  const parsed = v.safeParse(PrivateJwkSchema, jwk);
  if (!parsed.success) throw new CleanroomError('SESSION_KEY_INVALID', 'the unwrapped session key is malformed');
  return parsed.output;
}

/**
 * Whether a rewrap failed because the stored key is beyond saving (the key service says its
 * ciphertext does not authenticate, or the object is not a key) rather than for now.
 */
function isUnreadable(error: unknown): boolean {
  if (!(error instanceof CleanroomError)) return false;
  if (error.code === 'SESSION_KEY_INVALID') return true;
  return error.code === 'SESSION_KEY_UNAVAILABLE' && error.cause instanceof CleanroomError && error.cause.code === 'DATASET_KEY_UNWRAP';
}

function encodeRecord(record: StoredSessionKey): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(record));
}

function publicKeyOf(stored: StoredSessionKey): SessionPublicKey {
  return { epoch: stored.epoch, publicJwk: { ...stored.public_jwk }, thumbprint: stored.thumbprint };
}

/** The whole (small) object, or null when absent; past {@link MAX_OBJECT_BYTES} it is not ours: `tooLarge`. */
async function readSmall(objects: ObjectStore, key: string, tooLarge: CleanroomError): Promise<Uint8Array | null> {
  const stream = await objects.read(key);
  if (stream === null) return null;
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = stream.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > MAX_OBJECT_BYTES) {
        await reader.cancel().catch(() => {});
        throw tooLarge;
      }
      chunks.push(value);
    }
  } finally {
    reader.releaseLock();
  }
  return Buffer.concat(chunks);
}
