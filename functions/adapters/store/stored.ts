import * as v from 'valibot';
import { AuditEntrySchema, type AuditEntry } from '../../../protocol/audit.ts';
import { CleanroomError } from '../../../protocol/errors.ts';
import { objectKeys } from '../../../protocol/dataset.ts';
import type { ClosedCursor, DatasetWrite, QueryWrite } from '../../core/ports.ts';
import { DatasetRecordSchema, QueryRecordSchema, SessionRecordSchema, type DatasetRecord, type QueryRecord, type SessionRecord } from '../../core/records.ts';

/**
 * What both SessionStore adapters check at their edge: documents read back are parsed, writes
 * are consistent. Kept apart so neither adapter imports the other's SDK.
 */

/** Seconds a caller should wait after an outage of the store before retrying. */
export const STORE_RETRY_AFTER_SECONDS = 1;

/**
 * A session document read back from a store, parsed. `id` is the key it was stored under; a
 * document that disagrees with it is as malformed as one that fails the schema.
 */
export function parseStoredSession(data: unknown, id: string): SessionRecord {
  const result = v.safeParse(SessionRecordSchema, data);
  if (!result.success || result.output.id !== id) throw malformed('stored session record is malformed', result);
  return result.output;
}

/** An audit entry read back from a store, parsed and checked against the key it was stored under. */
export function parseStoredAuditEntry(data: unknown, sessionId: string, seq: number): AuditEntry {
  const result = v.safeParse(AuditEntrySchema, data);
  if (!result.success || result.output.session_id !== sessionId || result.output.seq !== seq) {
    throw malformed('stored audit entry is malformed', result);
  }
  return result.output;
}

/**
 * Refuses writes our own code got wrong (a `TypeError`, not a coded error): the record must
 * parse, the entry must be the record's audit head, and the version must be the next one.
 * Storing such a record would make the session unreadable or its chain unverifiable.
 */
export function assertWritable(session: SessionRecord, entry: AuditEntry, expectedVersion: number | null): void {
  if (!v.is(SessionRecordSchema, session)) throw new TypeError('session record does not match SessionRecordSchema');
  if (!v.is(AuditEntrySchema, entry)) throw new TypeError('audit entry does not match AuditEntrySchema');
  if (entry.session_id !== session.id) throw new TypeError('audit entry belongs to another session');
  if (session.audit_head.seq !== entry.seq || session.audit_head.hash !== entry.hash) {
    throw new TypeError("the record's audit_head is not the entry written with it");
  }
  const version = expectedVersion === null ? 1 : expectedVersion + 1;
  if (session.version !== version) throw new TypeError(`session version must be ${version}`);
}

/**
 * A query document read back from a store, parsed. It must be the one stored under
 * `queryId` in session `sessionId`.
 */
export function parseStoredQuery(data: unknown, sessionId: string, queryId: string): QueryRecord {
  const result = v.safeParse(QueryRecordSchema, data);
  if (!result.success || result.output.id !== queryId || result.output.session_id !== sessionId) {
    throw malformed('stored query record is malformed', result);
  }
  return result.output;
}

/**
 * Refuses query writes our own code got wrong (a `TypeError`): the record must parse, its version
 * must be the next one, and the entry must belong to the query's session and name the query.
 */
export function assertQueryWritable(write: QueryWrite): void {
  const { query, entry, expectedQueryVersion, expectedSessionVersion } = write;
  if (!v.is(QueryRecordSchema, query)) throw new TypeError('query record does not match QueryRecordSchema');
  if (!v.is(AuditEntrySchema, entry)) throw new TypeError('audit entry does not match AuditEntrySchema');
  if (entry.session_id !== query.session_id) throw new TypeError('audit entry belongs to another session than the query');
  if (entry.details.query_id !== query.id) throw new TypeError('audit entry does not name the query');
  const version = (expectedQueryVersion ?? 0) + 1;
  if (query.version !== version) throw new TypeError(`query version must be ${version}`);
  if (!Number.isSafeInteger(expectedSessionVersion) || expectedSessionVersion < 1) {
    throw new TypeError('expectedSessionVersion must be a positive integer');
  }
}

/**
 * A dataset document read back from a store, parsed. It must be the one stored under
 * `datasetId` in session `sessionId`.
 */
export function parseStoredDataset(data: unknown, sessionId: string, datasetId: string): DatasetRecord {
  const result = v.safeParse(DatasetRecordSchema, data);
  if (!result.success || result.output.id !== datasetId || result.output.session_id !== sessionId) {
    throw malformed('stored dataset record is malformed', result);
  }
  return result.output;
}

/**
 * Refuses dataset writes our own code got wrong (a `TypeError`): the record must parse and name
 * its own object, and the entry must belong to the dataset's session and name the dataset.
 */
export function assertDatasetWritable(write: DatasetWrite): void {
  const { dataset, entry, expectedSessionVersion } = write;
  if (!v.is(DatasetRecordSchema, dataset)) throw new TypeError('dataset record does not match DatasetRecordSchema');
  if (dataset.object_key !== objectKeys.dataset(dataset.session_id, dataset.id)) throw new TypeError("object_key is not the dataset's object");
  if (!v.is(AuditEntrySchema, entry)) throw new TypeError('audit entry does not match AuditEntrySchema');
  if (entry.session_id !== dataset.session_id) throw new TypeError('audit entry belongs to another session than the dataset');
  if (entry.details.dataset_id !== dataset.id) throw new TypeError('audit entry does not name the dataset');
  if (!Number.isSafeInteger(expectedSessionVersion) || expectedSessionVersion < 1) {
    throw new TypeError('expectedSessionVersion must be a positive integer');
  }
}

/** Refuses a listing of sessions to shred our own code got wrong. */
export function assertClosedPage(closedBefore: string, limit: number, after?: ClosedCursor): void {
  assertPage(limit);
  const timestamp = v.pipe(v.string(), v.isoTimestamp());
  if (!v.is(timestamp, closedBefore)) throw new TypeError('closedBefore must be an ISO timestamp');
  if (after !== undefined && (!v.is(timestamp, after.closed_at) || typeof after.id !== 'string')) throw new TypeError('malformed cursor');
}

/**
 * Whether `entry` extends the chain whose head is stored: the session version matched, so a
 * mismatch here means the caller built the entry from another read, a bug rather than a race.
 */
export function extendsHead(head: unknown, entry: AuditEntry): boolean {
  return typeof head === 'object' && head !== null && (head as { seq?: unknown }).seq === entry.seq - 1 && (head as { hash?: unknown }).hash === entry.prev_hash;
}

/** Refuses a reconciler listing our own code got wrong. */
export function assertStatusPage(before: string, limit: number): void {
  assertPage(limit);
  if (!v.is(v.pipe(v.string(), v.isoTimestamp()), before)) throw new TypeError('before must be an ISO timestamp');
}

/** Refuses page sizes and sequence numbers no caller should send (the HTTP layer bounds them). */
export function assertPage(limit: number, afterSeq = 0): void {
  if (!Number.isSafeInteger(limit) || limit < 1) throw new TypeError('limit must be a positive integer');
  if (!Number.isSafeInteger(afterSeq) || afterSeq < 0) throw new TypeError('afterSeq must be a non-negative integer');
}

/**
 * The error for a document that does not parse. Its message and cause never quote the
 * document: a session holds ID tokens and keys. The cause names only where parsing failed.
 */
function malformed(message: string, result: v.SafeParseResult<v.GenericSchema>): CleanroomError {
  const where = result.success ? 'key mismatch' : result.issues.map((issue) => `${v.getDotPath(issue) ?? '(root)'}: ${issue.type}`).join('; ');
  return new CleanroomError('INTERNAL', message, { cause: new Error(where) });
}
