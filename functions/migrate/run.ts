import type { DocumentReference, Firestore } from '@google-cloud/firestore';
import { CleanroomError } from '../../protocol/errors.ts';
import type { Clock, SessionStore } from '../core/ports.ts';
import { DEFAULT_PAGE_SIZE, walkChildren } from './firestore-source.ts';
import { mapChildData, mapLegacyTee, type MappedTee } from './map.ts';
import { emptyReport, nextSteps, type MigrationReport } from './report.ts';
import type { LegacySource } from './source.ts';

/** Points where a test can make the run fail or stop, to prove it resumes cleanly. */
export interface MigrationHooks {
  /** After a session's child documents were copied, just before its document is created. */
  beforeCreate?(id: string): void | Promise<void>;
  /** Right after a session document was created. */
  afterCreate?(id: string): void | Promise<void>;
}

export interface MigrationOptions {
  source: LegacySource;
  /** Writes the target collection on `db`: `FirestoreSessionStore` in production. */
  store: SessionStore;
  /** Where child documents are copied; must be the database `store` writes to. */
  db: Firestore;
  /** The sessions collection `store` writes to. */
  targetCollection: string;
  clock: Clock;
  /** Read and report only; nothing is written. */
  dryRun: boolean;
  /** Examine at most this many legacy records. */
  limit?: number;
  /** Page size for child documents (the source pages itself). */
  pageSize?: number;
  /** Stops the run between two steps; the report then says `interrupted`. */
  signal?: AbortSignal;
  hooks?: MigrationHooks;
  /** Progress lines (one per record); never a token. */
  log?: (line: string) => void;
}

/** Child writes per batch, under Firestore's 500 operations per commit. */
const BATCH_SIZE = 400;

/**
 * Migrates legacy records from `source` to sessions (docs/architecture.md §10) and reports what it did.
 *
 * Re-runnable and interruptible: for each record, the child documents are written first
 * (idempotent `set` under the same ids) and the session document last, through
 * `SessionStore.create`. That document's existence marks completion: a session is either absent
 * (nothing visible, a re-run redoes it) or complete (a re-run counts it `already_migrated` and
 * writes nothing). The legacy records are only read.
 */
export async function runMigration(options: MigrationOptions): Promise<MigrationReport> {
  const { source, signal } = options;
  const report = emptyReport(options.dryRun, source.description, options.targetCollection);
  const log = options.log ?? (() => {});

  for await (const item of source.items()) {
    if (signal?.aborted || (options.limit !== undefined && report.counts.scanned >= options.limit)) {
      report.interrupted = signal?.aborted === true;
      break;
    }
    if (item.kind === 'unreadable') {
      addOdd(report, item.id, item.reasons);
      continue;
    }
    const mapped = await mapLegacyTee(item.input, { now: options.clock.now().toISOString(), source: source.origin });
    if (mapped.vm) {
      const status = item.input.data.status;
      report.vms.push({ session_id: mapped.id, legacy_status: typeof status === 'string' ? status : null, ...mapped.vm });
    }
    if (mapped.kind === 'odd') {
      addOdd(report, mapped.id, mapped.reasons);
      log(`odd ${mapped.id}: ${mapped.reasons.length} reason(s)`);
      continue;
    }
    try {
      const outcome = await migrateOne(mapped, item.ref, options, report);
      if (outcome === 'interrupted') {
        report.interrupted = true;
        break;
      }
      report.counts.scanned++;
      if (outcome === 'migrated') report.counts.migrated++;
      else if (outcome === 'already_migrated') report.counts.already_migrated++;
      else {
        report.counts.odd++;
        report.odd.push({ id: mapped.id, reasons: outcome.reasons });
      }
      log(`${typeof outcome === 'object' ? 'odd' : options.dryRun && outcome === 'migrated' ? 'would migrate' : outcome} ${mapped.id}`);
    } catch (error) {
      report.counts.scanned++;
      report.counts.failed++;
      report.failed.push({ id: mapped.id, error: describe(error) });
      log(`failed ${mapped.id}: ${describe(error)}`);
    }
  }
  report.next_steps = nextSteps(report);
  return report;
}

type Outcome = 'migrated' | 'already_migrated' | 'interrupted' | { reasons: string[] };

async function migrateOne(mapped: MappedTee, ref: DocumentReference | null, options: MigrationOptions, report: MigrationReport): Promise<Outcome> {
  const { store, hooks, signal } = options;
  const existing = await store.get(mapped.id);
  if (existing) {
    // The id is the legacy id, so a session there is ours from an earlier run, unless something
    // else took the id: that one is never overwritten.
    return existing.migrated_from === mapped.record.migrated_from ? 'already_migrated' : { reasons: [`id: taken by a session that was not migrated from ${mapped.record.migrated_from}`] };
  }

  // First pass: check every child before writing any, so an odd child leaves nothing behind.
  let children = 0;
  const problems: string[] = [];
  if (ref) {
    for await (const child of walkChildren(ref, options.pageSize)) {
      children++;
      const result = mapChildData(child.data);
      if (!result.ok) problems.push(`child ${child.path}: ${result.reason}`);
    }
  }
  if (problems.length > 0) return { reasons: problems };
  if (options.dryRun) {
    report.children += children;
    return 'migrated';
  }

  if (ref) report.children += await copyChildren(ref, options);
  if (signal?.aborted) return 'interrupted';
  await hooks?.beforeCreate?.(mapped.id);
  if (signal?.aborted) return 'interrupted';
  try {
    await store.create(mapped.record, mapped.auditEntry);
  } catch (error) {
    // Another run created it between our check and now: it is complete, not ours to redo.
    if (error instanceof CleanroomError && error.code === 'CONFLICT') return 'already_migrated';
    throw error;
  }
  await hooks?.afterCreate?.(mapped.id);
  return 'migrated';
}

/** Copies the children of `ref` below the new session, same relative paths. Returns how many. */
async function copyChildren(ref: DocumentReference, options: MigrationOptions): Promise<number> {
  const target = options.db.collection(options.targetCollection).doc(ref.id);
  let batch = options.db.batch();
  let pending = 0;
  let copied = 0;
  for await (const child of walkChildren(ref, options.pageSize ?? DEFAULT_PAGE_SIZE)) {
    const result = mapChildData(child.data);
    // The first pass found none; a child changed since then, so stop before the session exists.
    if (!result.ok) throw new CleanroomError('CONFLICT', `child ${child.path} changed during the migration: ${result.reason}`);
    batch.set(target.firestore.doc(`${target.path}/${child.path}`), result.data);
    copied++;
    if (++pending === BATCH_SIZE) {
      await batch.commit();
      batch = options.db.batch();
      pending = 0;
    }
  }
  if (pending > 0) await batch.commit();
  return copied;
}

function addOdd(report: MigrationReport, id: string, reasons: string[]): void {
  report.counts.scanned++;
  report.counts.odd++;
  report.odd.push({ id, reasons });
}

/** An error for the report: its code and message, never its cause (which may quote data). */
function describe(error: unknown): string {
  if (error instanceof CleanroomError) return `${error.code}: ${error.message}`;
  if (error instanceof Error) return `${error.name}: ${error.message}`;
  return String(error);
}
