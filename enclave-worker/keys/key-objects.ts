import * as v from 'valibot';
import { objectKeys } from '../../protocol/dataset.ts';
import { CleanroomError } from '../../protocol/errors.ts';
import { SessionIdSchema } from '../../protocol/session.ts';
import type { ObjectStore } from '../../runtime/object-store/port.ts';
import { decodeStoredKey, type StoredSessionKey } from './stored-key.ts';

/**
 * Where session keys live in the object store: one object per session and epoch,
 * `objectKeys.sessionKey(session, epoch)`. A session's current epoch is its highest object; there
 * is more than one only while a rewrap runs (the next epoch is written before the old is deleted).
 */

/** The epoch a session key is first written at. */
export const FIRST_SESSION_KEY_EPOCH = 1;
/** The name of an epoch's object under the session's prefix. */
const EPOCH_OBJECT = /^epoch-([1-9]\d{0,8})\.json$/;
/** Where every session's key objects live: `objectKeys.sessionKeyPrefix` without the session. */
const SESSION_KEYS_PREFIX = 'session-keys/';
/** A stored key object is well under 2 KiB; anything much larger is not one of ours. */
const MAX_OBJECT_BYTES = 16 * 1024;
/** Reads of a session's key that may find its epoch rewrapped away before giving up. */
const READ_ATTEMPTS = 3;

/** The epochs the session has key objects for, ascending. */
export async function listEpochs(objects: ObjectStore, sessionId: string): Promise<number[]> {
  const prefix = objectKeys.sessionKeyPrefix(sessionId);
  const epochs: number[] = [];
  for (const { key } of await objects.list(prefix)) {
    const match = EPOCH_OBJECT.exec(key.slice(prefix.length));
    if (match) epochs.push(Number(match[1]));
  }
  return epochs.sort((a, b) => a - b);
}

/** Every session that has at least one key object. */
export async function sessionsWithKeys(objects: ObjectStore): Promise<string[]> {
  const sessions = new Set<string>();
  for (const { key } of await objects.list(SESSION_KEYS_PREFIX)) {
    const [, sessionId, name, ...rest] = key.split('/');
    if (rest.length === 0 && v.is(SessionIdSchema, sessionId) && EPOCH_OBJECT.test(name ?? '')) sessions.add(sessionId);
  }
  return [...sessions];
}

/** The session's key at its current (highest) epoch, or null when it has none. */
export async function readCurrentKey(objects: ObjectStore, sessionId: string): Promise<StoredSessionKey | null> {
  for (let attempt = 0; attempt < READ_ATTEMPTS; attempt++) {
    const epoch = (await listEpochs(objects, sessionId)).at(-1);
    if (epoch === undefined) return null;
    const stored = await readKeyAt(objects, sessionId, epoch);
    if (stored) return stored;
    // Rewrapped between the listing and the read, or shredded: the next listing tells which.
  }
  throw new CleanroomError('OBJECT_STORE_UNAVAILABLE', 'the session key moved on while it was read', { retryAfter: 1 });
}

/** The record at one epoch, or null when that object does not exist. */
export async function readKeyAt(objects: ObjectStore, sessionId: string, epoch: number): Promise<StoredSessionKey | null> {
  const bytes = await readSmall(objects, objectKeys.sessionKey(sessionId, epoch));
  return bytes === null ? null : decodeStoredKey(bytes, sessionId, epoch);
}

/** The whole (small) object, or null when absent; past {@link MAX_OBJECT_BYTES} it is not ours. */
async function readSmall(objects: ObjectStore, key: string): Promise<Uint8Array | null> {
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
        throw new CleanroomError('SESSION_KEY_INVALID', 'the stored session key is not a key of this session');
      }
      chunks.push(value);
    }
  } finally {
    reader.releaseLock();
  }
  return Buffer.concat(chunks);
}
