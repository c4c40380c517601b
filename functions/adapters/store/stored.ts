import * as v from 'valibot';
import { AuditEntrySchema, type AuditEntry } from '../../../protocol/audit.ts';
import { CleanroomError } from '../../../protocol/errors.ts';
import { SessionRecordSchema, type SessionRecord } from '../../core/records.ts';

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
  const where = result.success
    ? 'key mismatch'
    : result.issues.map((issue) => `${v.getDotPath(issue) ?? '(root)'}: ${issue.type}`).join('; ');
  return new CleanroomError('INTERNAL', message, { cause: new Error(where) });
}
