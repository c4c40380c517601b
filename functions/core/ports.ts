import type { AuditEntry } from '../../protocol/audit.ts';
import type { SessionStatus } from '../../protocol/session.ts';
import type { SessionRecord } from './records.ts';

/** Where a page of sessions ends; the next page starts strictly after it (newest first). */
export interface SessionCursor {
  created_at: string;
  id: string;
}

export interface ListSessionsOptions {
  status?: SessionStatus;
  limit: number;
  after?: SessionCursor;
}

/**
 * Session records and their audit chains. Every write carries its audit entry and both land in
 * one transaction, or neither does.
 *
 * Adapters translate their SDK's failures into `CleanroomError`: `CONFLICT` for a lost race or an
 * existing id, `STORE_UNAVAILABLE` (with `retryAfter`) for an outage.
 */
export interface SessionStore {
  /** Inserts a new session (version 1) with its first audit entry. `CONFLICT` if the id exists. */
  create(session: SessionRecord, entry: AuditEntry): Promise<void>;
  /** The session, or null when there is none. */
  get(id: string): Promise<SessionRecord | null>;
  /**
   * Replaces the session if the stored version is still `expectedVersion`, and appends `entry`.
   * `CONFLICT` if another write got there first (or the session vanished).
   */
  update(session: SessionRecord, expectedVersion: number, entry: AuditEntry): Promise<void>;
  /** Sessions in which `email` takes part, newest first. */
  listForParticipant(email: string, options: ListSessionsOptions): Promise<SessionRecord[]>;
  /** Audit entries of a session in sequence order, strictly after `afterSeq`. */
  listAudit(sessionId: string, afterSeq: number, limit: number): Promise<AuditEntry[]>;
}

/** Wall-clock time, injected so expiry and ordering are testable. */
export interface Clock {
  now(): Date;
}

/** A verified caller. */
export interface Principal {
  email: string;
  sub: string;
}

/** Checks a bearer ID token; throws `CleanroomError('UNAUTHENTICATED')` on any failure. */
export interface IdentityVerifier {
  verify(token: string, options?: { nonce?: string }): Promise<Principal>;
}

/** A task to hand to the queue: Cloud Tasks in GCP, the SQLite queue in the embedded stack. */
export interface QueuedTask {
  /** Deterministic (`taskName(query, attempt)`): the same name is never delivered twice. */
  name: string;
  /** The compact JWS the worker verifies (protocol/task.ts). */
  body: string;
}

/**
 * Hands signed tasks to the worker's intake with retries and back-off. Called only after the
 * state change that justifies it is committed, never inside a store transaction.
 */
export interface TaskQueue {
  /** `duplicate` when a task of that name was already enqueued (not an error). */
  enqueue(task: QueuedTask): Promise<'enqueued' | 'duplicate'>;
}
