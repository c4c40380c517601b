import { nextAuditEntry } from '../../protocol/audit.ts';
import { objectKeys } from '../../protocol/dataset.ts';
import { CleanroomError } from '../../protocol/errors.ts';
import type { ResolvedDataPathDeps } from './datapath-deps.ts';
import type { ClosedCursor, ObjectStore } from './ports.ts';
import { CONTROL_PLANE_ACTOR } from './query-rules.ts';
import { markShredded } from './session-rules.ts';

/** What one reconciler run did about closed sessions. */
export interface ShredReport {
  /** Closed sessions whose final shredding pass finished (recorded as `shredded_at`, audited). */
  shredded: number;
  /** Sessions whose objects could not be deleted (an object store outage); tried again next run. */
  shred_failures: number;
}

/** Sessions handled per run; the rest wait for the next run. */
const SWEEP_LIMIT = 1000;
const SWEEP_PAGE = 100;

/**
 * Crypto-shredding (docs/architecture.md invariant 3): deletes a session's key objects and its dataset
 * ciphertext, never its sealed results (those are encrypted to their recipients). Idempotent:
 * what is gone stays gone, so it may run any number of times.
 */
export async function shredObjects(objects: ObjectStore, sessionId: string): Promise<number> {
  const keys = await objects.deletePrefix(objectKeys.sessionKeyPrefix(sessionId));
  const datasets = await objects.deletePrefix(objectKeys.datasetPrefix(sessionId));
  return keys + datasets;
}

/**
 * The reconciler's part in closing sessions, relative to `now`. Closing shreds at once (best
 * effort, see the close handler), but an upload URL or a session key request issued just before
 * the close may still write afterwards, and the first pass may have failed. So each closed session
 * gets a final pass once `shredAfterSeconds` have passed since its close, and only that pass's
 * success is recorded (`shredded_at`, audit entry `session.shredded`). A failed pass leaves the
 * session for the next run; a store outage propagates.
 */
export async function reconcileShredding(deps: ResolvedDataPathDeps, now: Date): Promise<ShredReport> {
  const report: ShredReport = { shredded: 0, shred_failures: 0 };
  const closedBefore = new Date(now.getTime() - deps.shredAfterSeconds * 1000).toISOString();
  let after: ClosedCursor | undefined;
  for (let seen = 0; seen < SWEEP_LIMIT; ) {
    const sessions = await deps.store.listUnshredded({ closedBefore, limit: SWEEP_PAGE, ...(after ? { after } : {}) });
    for (const session of sessions) {
      let deleted: number;
      try {
        deleted = await shredObjects(deps.objects, session.id);
      } catch {
        // Ids and counts only: the log line is the caller's (the report).
        report.shred_failures++;
        continue;
      }
      if (await recordShredded(deps, session.id, deleted)) report.shredded++;
    }
    seen += sessions.length;
    const last = sessions.at(-1);
    if (sessions.length < SWEEP_PAGE || !last?.closed_at) return report;
    after = { closed_at: last.closed_at, id: last.id };
  }
  return report;
}

/** Records the final pass on a fresh read; false when someone else recorded it or the session moved. */
async function recordShredded(deps: ResolvedDataPathDeps, sessionId: string, deleted: number): Promise<boolean> {
  const current = await deps.store.get(sessionId);
  const at = deps.clock.now().toISOString();
  const next = current && markShredded(current, at);
  if (!current || !next) return false;
  const entry = await nextAuditEntry(current.audit_head, {
    session_id: sessionId,
    at,
    actor: CONTROL_PLANE_ACTOR,
    action: 'session.shredded',
    // What the final pass found; the pass at close deleted the rest.
    details: { deleted_objects: deleted },
  });
  try {
    await deps.store.update({ ...next, version: current.version + 1, audit_head: { seq: entry.seq, hash: entry.hash } }, current.version, entry);
    return true;
  } catch (error) {
    // Lost to another writer: the next run passes again (deleting is idempotent) and records it.
    if (error instanceof CleanroomError && error.code === 'CONFLICT') return false;
    throw error;
  }
}
