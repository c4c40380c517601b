import type { AuditEntry } from '../../protocol/audit.ts';
import type { QueryStatus } from '../../protocol/query.ts';
import type { SessionStatus } from '../../protocol/session.ts';
import type { DatasetRecord, QueryRecord, SessionRecord } from './records.ts';

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
  /**
   * CLOSED sessions still to be crypto-shredded (`shredded_at` null) that closed strictly before
   * `closedBefore`, oldest `closed_at` first, then id: the reconciler's view of unfinished closes.
   */
  listUnshredded(options: { closedBefore: string; limit: number; after?: ClosedCursor }): Promise<SessionRecord[]>;
}

/** Where a page of sessions to shred ends (oldest `closed_at` first, then id). */
export interface ClosedCursor {
  closed_at: string;
  id: string;
}

/** Where a page of a session's queries ends (newest first, as for sessions). */
export type QueryCursor = SessionCursor;

export interface ListQueriesOptions {
  status?: QueryStatus;
  limit: number;
  after?: QueryCursor;
}

/** Where a page of queries in one status ends (oldest `status_since` first, then id). */
export interface StatusCursor {
  status_since: string;
  id: string;
}

/**
 * One query transition: the query's new record, its audit entry (which extends the session's
 * chain) and the versions both were decided on. The session's own fields are not rewritten:
 * the adapter sets its `version` to `expectedSessionVersion + 1` and its `audit_head` to `entry`.
 */
export interface QueryWrite {
  query: QueryRecord;
  /** null: the query is new (its version must be 1). */
  expectedQueryVersion: number | null;
  expectedSessionVersion: number;
  entry: AuditEntry;
}

/**
 * A session's queries. Every transition is one transaction over the session record (version
 * check, audit head bump), the query record (version check or create) and the new audit entry.
 * Because each one bumps the session's version, transitions of one session's queries are
 * serialised by that version too. Adapters report failures as `SessionStore` does.
 */
export interface QueryStore {
  /** The query if it exists in that session, else null. */
  getQuery(sessionId: string, queryId: string): Promise<QueryRecord | null>;
  /** A session's queries, newest first (created_at, then id, both descending). */
  listQueries(sessionId: string, options: ListQueriesOptions): Promise<QueryRecord[]>;
  /** Applies `write`, or `CONFLICT` if either version moved (or the session vanished, or the id exists). */
  commitQuery(write: QueryWrite): Promise<void>;
  /**
   * Queries of every session in `status` since strictly before `before`, oldest first: the
   * reconciler's view of stale work.
   */
  listQueriesInStatus(status: QueryStatus, options: { before: string; limit: number; after?: StatusCursor }): Promise<QueryRecord[]>;
}

/**
 * A dataset registration: the dataset's record and its audit entry, which extends the session's
 * chain. As for a query write, the adapter sets the session's `version` to
 * `expectedSessionVersion + 1` and its `audit_head` to `entry`; nothing else of the session changes.
 */
export interface DatasetWrite {
  dataset: DatasetRecord;
  expectedSessionVersion: number;
  entry: AuditEntry;
}

/**
 * A session's registered datasets (metadata and wrapped keys; the ciphertext is in the object
 * store). Records are written once and never changed. A registration bumps the session's
 * version, so registrations of one session (and its query transitions) are serialised by it:
 * a check over the session's datasets made before the write still holds when it lands.
 * Adapters report failures as `SessionStore` does.
 */
export interface DatasetStore {
  /** The dataset if it exists in that session, else null. */
  getDataset(sessionId: string, datasetId: string): Promise<DatasetRecord | null>;
  /** A session's datasets, oldest first (created_at, then id). */
  listDatasets(sessionId: string, options: { limit: number }): Promise<DatasetRecord[]>;
  /** Applies `write`, or `CONFLICT` if the session moved (or vanished) or the dataset id exists in it. */
  commitDataset(write: DatasetWrite): Promise<void>;
}

/**
 * The worker's endpoints the control plane calls directly (tasks go through the queue). The
 * adapter authenticates as the control plane, owns the timeout, and translates failures:
 * unreachable or 5xx is `WORKER_UNAVAILABLE` (with `retryAfter`), a refusal carries the
 * worker's code when it is one of ours.
 */
export interface WorkerClient {
  /** `POST /session-keys` with a signed session key request (compact JWS); the worker's JSON answer as text. */
  sessionKey(jws: string): Promise<string>;
}

/** An object's size and generation (Cloud Storage's; locally a file identity). */
export interface ObjectInfo {
  key: string;
  size: number;
  generation: string;
}

/**
 * What the control plane needs of the object store (the whole port, with create-only writes, is
 * `runtime/object-store/port.ts`; its adapters satisfy this one). It holds ciphertext only. Keys
 * are `objectKeys` paths. Failures are `OBJECT_STORE_UNAVAILABLE` (with `retryAfter`) for an outage.
 */
export interface ObjectStore {
  /** The object's bytes as a stream, or null when it does not exist. */
  read(key: string): Promise<ReadableStream<Uint8Array> | null>;
  /** Size and generation, or null when it does not exist. */
  stat(key: string): Promise<ObjectInfo | null>;
  /** Deletes every object whose key starts with `prefix` (ending in `/`); returns how many. Never versioned. */
  deletePrefix(prefix: string): Promise<number>;
}

/**
 * Signs create-only upload URLs for the client to send ciphertext to directly: V4 signed URLs on
 * Cloud Storage, HMAC-signed URLs to the embedded API's `/objects/` route locally.
 */
export interface UploadSigner {
  signUpload(key: string, options: { expiresInSeconds: number; maxBytes: number }): Promise<{ url: string; method: 'PUT'; headers: Record<string, string>; expiresAt: Date }>;
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
