import { objectKeys } from '../../protocol/dataset.ts';
import { CleanroomError } from '../../protocol/errors.ts';
import type { ObjectStore } from '../../runtime/object-store/port.ts';
import { listEpochs, readCurrentKey } from './key-objects.ts';
import type { KeyService } from './port.ts';
import { encodeStoredKey, rewrapStoredKey } from './stored-key.ts';

/**
 * Moving session keys to the next epoch under the key service's current version, so destroying
 * older versions kills every other copy of the wrapping (docs/architecture.md invariant 3; the
 * schedule and the version destruction are `rotation.ts`).
 */

/** Sessions worked on at once: each is a handful of object store and key service calls. */
const REWRAP_CONCURRENCY = 8;

/** What a rewrap of many sessions did; counts only. */
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

interface RewrapDeps {
  objects: ObjectStore;
  keys: KeyService;
}

/**
 * Moves one session's key to the next epoch: written create-only, then the older epochs deleted.
 * Null when the session has no key (or it was shredded meanwhile). Of workers racing on one
 * session exactly one writes the next epoch; the others return the same move without touching
 * anything. The public key and its thumbprint never change.
 */
export async function rewrapSession(deps: RewrapDeps, sessionId: string): Promise<{ from: number; to: number } | null> {
  const stored = await readCurrentKey(deps.objects, sessionId);
  if (!stored) return null;
  const from = stored.epoch;
  const to = from + 1;
  const record = await rewrapStoredKey(deps.keys, stored, to);
  try {
    await deps.objects.createOnly(objectKeys.sessionKey(sessionId, to), encodeStoredKey(record));
  } catch (error) {
    // Another worker moved it first, and deletes the old epoch itself.
    if (error instanceof CleanroomError && error.code === 'OBJECT_EXISTS') return { from, to };
    throw error;
  }
  // Only the writer of an epoch deletes the one before it, so an old epoch already gone, with
  // nothing newer than ours, means the session was shredded while this ran: the copy just
  // written must not outlive it. (The control plane's final shredding pass would catch it too.)
  const oldGone = !(await deps.objects.delete(objectKeys.sessionKey(sessionId, from)));
  const epochs = await listEpochs(deps.objects, sessionId);
  if (oldGone && (epochs.at(-1) ?? 0) <= to) {
    await deps.objects.deletePrefix(objectKeys.sessionKeyPrefix(sessionId));
    return null;
  }
  // Leftovers of a rewrap that stopped between its write and its delete.
  for (const epoch of epochs) if (epoch < from) await deps.objects.delete(objectKeys.sessionKey(sessionId, epoch));
  return { from, to };
}

/** Rewraps each of `sessionIds`, a few at a time; `onFailure` hears of each failed or unreadable one. */
export async function rewrapSessions(deps: RewrapDeps, sessionIds: readonly string[], onFailure?: (sessionId: string, error: unknown) => void): Promise<RewrapAllResult> {
  const result: RewrapAllResult = { rewrapped: 0, failed: 0, unreadable: 0 };
  const queue = [...sessionIds];
  const work = async (): Promise<void> => {
    for (let sessionId = queue.shift(); sessionId !== undefined; sessionId = queue.shift()) {
      try {
        if (await rewrapSession(deps, sessionId)) result.rewrapped++;
      } catch (error) {
        if (isUnreadable(error)) result.unreadable++;
        else result.failed++;
        onFailure?.(sessionId, error);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(REWRAP_CONCURRENCY, queue.length) }, work));
  return result;
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
