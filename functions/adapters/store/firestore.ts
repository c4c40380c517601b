import { FieldPath, type DocumentReference, type DocumentSnapshot, type Firestore, type Query, type Transaction } from '@google-cloud/firestore';
import type { AuditEntry } from '../../../protocol/audit.ts';
import { CleanroomError } from '../../../protocol/errors.ts';
import type { QueryStatus } from '../../../protocol/query.ts';
import type { ClosedCursor, DatasetStore, DatasetWrite, ListQueriesOptions, ListSessionsOptions, QueryStore, QueryWrite, SessionStore, StatusCursor } from '../../core/ports.ts';
import type { DatasetRecord, QueryRecord, SessionRecord } from '../../core/records.ts';
import {
  STORE_RETRY_AFTER_SECONDS,
  assertClosedPage,
  assertDatasetWritable,
  assertPage,
  assertQueryWritable,
  assertStatusPage,
  assertWritable,
  extendsHead,
  parseStoredAuditEntry,
  parseStoredDataset,
  parseStoredQuery,
  parseStoredSession,
} from './stored.ts';

/** The sessions collection, as the deployment's rules and indexes name it. */
export const DEFAULT_SESSIONS_COLLECTION = 'collaboration_sessions';
/** The subcollection of a session document that holds its audit chain. */
export const AUDIT_COLLECTION = 'audit';
/** The subcollection of a session document that holds its queries. */
export const QUERIES_COLLECTION = 'queries';
/** The subcollection of a session document that holds its registered datasets. */
export const DATASETS_COLLECTION = 'datasets';

/** One query the adapter issues: its filters and its order, in the SDK's vocabulary. */
export interface FirestoreQueryShape {
  collectionGroup: string;
  /** `COLLECTION_GROUP` queries span every collection of that name (and need their own indexes). */
  scope?: 'COLLECTION' | 'COLLECTION_GROUP';
  /** A `<` filter's field must be the first `orderBy` field, as Firestore requires. */
  filters: ReadonlyArray<{ fieldPath: string; op: '==' | 'array-contains' | '<' }>;
  /** `__name__` is the document id. */
  orderBy: ReadonlyArray<{ fieldPath: string; direction: 'asc' | 'desc' }>;
}

/**
 * Every query shape the adapter issues (for the default collection name). The queries are built
 * from these very objects, so a test can hold them against `firestore.indexes.json`: the
 * emulator runs any query, production refuses one without its composite index.
 */
export const FIRESTORE_QUERY_SHAPES = {
  sessionsOfParticipant: {
    collectionGroup: DEFAULT_SESSIONS_COLLECTION,
    filters: [{ fieldPath: 'participant_emails', op: 'array-contains' }],
    orderBy: [
      { fieldPath: 'created_at', direction: 'desc' },
      { fieldPath: '__name__', direction: 'desc' },
    ],
  },
  sessionsOfParticipantByStatus: {
    collectionGroup: DEFAULT_SESSIONS_COLLECTION,
    filters: [
      { fieldPath: 'participant_emails', op: 'array-contains' },
      { fieldPath: 'status', op: '==' },
    ],
    orderBy: [
      { fieldPath: 'created_at', direction: 'desc' },
      { fieldPath: '__name__', direction: 'desc' },
    ],
  },
  auditAfterSeq: {
    collectionGroup: AUDIT_COLLECTION,
    filters: [],
    orderBy: [{ fieldPath: '__name__', direction: 'asc' }],
  },
  queriesOfSession: {
    collectionGroup: QUERIES_COLLECTION,
    filters: [],
    orderBy: [
      { fieldPath: 'created_at', direction: 'desc' },
      { fieldPath: '__name__', direction: 'desc' },
    ],
  },
  queriesOfSessionByStatus: {
    collectionGroup: QUERIES_COLLECTION,
    filters: [{ fieldPath: 'status', op: '==' }],
    orderBy: [
      { fieldPath: 'created_at', direction: 'desc' },
      { fieldPath: '__name__', direction: 'desc' },
    ],
  },
  // The reconciler's sweep over every session. Ordered by the `id` field rather than the document
  // id: a collection-group cursor on the document id would need the full path.
  queriesInStatusSince: {
    collectionGroup: QUERIES_COLLECTION,
    scope: 'COLLECTION_GROUP',
    filters: [
      { fieldPath: 'status', op: '==' },
      { fieldPath: 'status_since', op: '<' },
    ],
    orderBy: [
      { fieldPath: 'status_since', direction: 'asc' },
      { fieldPath: 'id', direction: 'asc' },
    ],
  },
  // The reconciler's sessions whose crypto-shredding is unfinished (`shredded_at` is null).
  sessionsToShred: {
    collectionGroup: DEFAULT_SESSIONS_COLLECTION,
    filters: [
      { fieldPath: 'shredded_at', op: '==' },
      { fieldPath: 'closed_at', op: '<' },
    ],
    orderBy: [
      { fieldPath: 'closed_at', direction: 'asc' },
      { fieldPath: '__name__', direction: 'asc' },
    ],
  },
  datasetsOfSession: {
    collectionGroup: DATASETS_COLLECTION,
    filters: [],
    orderBy: [
      { fieldPath: 'created_at', direction: 'asc' },
      { fieldPath: '__name__', direction: 'asc' },
    ],
  },
} as const satisfies Record<string, FirestoreQueryShape>;

export interface FirestoreSessionStoreOptions {
  /**
   * The sessions collection. Another name needs its own rules and composite indexes: the
   * deployed ones name {@link DEFAULT_SESSIONS_COLLECTION}.
   */
  collection?: string;
  /**
   * Deadline of each call in milliseconds, transaction retries included; past it the call fails
   * with `STORE_UNAVAILABLE`. A write that times out may still commit: its caller's retry then
   * sees `CONFLICT` or the new version, never a half-written session.
   */
  timeoutMs?: number;
  /** Attempts of a transaction that Firestore aborts for contention (the SDK's default is 5). */
  maxAttempts?: number;
}

// gRPC status codes, as the SDK reports them on `error.code`.
const ABORTED = 10;
const ALREADY_EXISTS = 6;
const FAILED_PRECONDITION = 9;
const UNAVAILABLE = 14;
const DEADLINE_EXCEEDED = 4;
const RESOURCE_EXHAUSTED = 8;
/** What the REST fallback reports for an aborted transaction. */
const HTTP_CONFLICT = 409;

/**
 * The session store on Firestore: `collaboration_sessions/{id}` holds the record as-is (ISO
 * string timestamps), `collaboration_sessions/{id}/audit/{seq, 10 digits}` its chain,
 * `collaboration_sessions/{id}/queries/{query id}` its queries and
 * `collaboration_sessions/{id}/datasets/{dataset id}` its datasets. Every write is one transaction
 * over the record, the query or dataset it writes (if any) and the new audit entry.
 */
export class FirestoreSessionStore implements SessionStore, QueryStore, DatasetStore {
  readonly #db: Firestore;
  readonly #collection: string;
  readonly #timeoutMs: number;
  readonly #maxAttempts: number;

  constructor(db: Firestore, options: FirestoreSessionStoreOptions = {}) {
    this.#db = db;
    this.#collection = options.collection ?? DEFAULT_SESSIONS_COLLECTION;
    this.#timeoutMs = options.timeoutMs ?? 10_000;
    this.#maxAttempts = options.maxAttempts ?? 5;
  }

  async create(session: SessionRecord, entry: AuditEntry): Promise<void> {
    assertWritable(session, entry, null);
    const ref = this.#sessionRef(session.id);
    const doc = plain(session);
    const audit = plain(entry);
    // Everything written is computed above: the callback may run more than once.
    await this.#call('write', () =>
      this.#db.runTransaction(
        async (tx) => {
          if ((await tx.get(ref)).exists) throw new CleanroomError('CONFLICT', 'a session with this id already exists');
          tx.create(ref, doc).create(this.#auditRef(session.id, entry.seq), audit);
        },
        { maxAttempts: this.#maxAttempts },
      ),
    );
  }

  async get(id: string): Promise<SessionRecord | null> {
    const snapshot = await this.#call('read', () => this.#sessionRef(id).get());
    return snapshot.exists ? parseStoredSession(snapshot.data(), snapshot.id) : null;
  }

  async update(session: SessionRecord, expectedVersion: number, entry: AuditEntry): Promise<void> {
    assertWritable(session, entry, expectedVersion);
    const ref = this.#sessionRef(session.id);
    const doc = plain(session);
    const audit = plain(entry);
    await this.#call('write', () =>
      this.#db.runTransaction(
        async (tx) => {
          const current = await tx.get(ref);
          // Only the version is compared: the rest of the stored document is not parsed here, so
          // a lost race never depends on the shape of what won it.
          if (!current.exists || current.get('version') !== expectedVersion) {
            throw new CleanroomError('CONFLICT', 'the session changed or no longer exists');
          }
          // `create` for the entry: an existing seq means the chain moved without the version.
          tx.set(ref, doc).create(this.#auditRef(session.id, entry.seq), audit);
        },
        { maxAttempts: this.#maxAttempts },
      ),
    );
  }

  async listForParticipant(email: string, options: ListSessionsOptions): Promise<SessionRecord[]> {
    assertPage(options.limit);
    const sessions = this.#db.collection(this.#collection);
    let query =
      options.status === undefined
        ? shaped(sessions, FIRESTORE_QUERY_SHAPES.sessionsOfParticipant, [email])
        : shaped(sessions, FIRESTORE_QUERY_SHAPES.sessionsOfParticipantByStatus, [email, options.status]);
    if (options.after !== undefined) query = query.startAfter(options.after.created_at, options.after.id);
    const snapshot = await this.#call('read', () => query.limit(options.limit).get());
    return snapshot.docs.map((doc) => parseStoredSession(doc.data(), doc.id));
  }

  async listAudit(sessionId: string, afterSeq: number, limit: number): Promise<AuditEntry[]> {
    assertPage(limit, afterSeq);
    // Zero-padded ids sort as numbers, so the document id alone orders the chain (no index).
    const query = shaped(this.#sessionRef(sessionId).collection(AUDIT_COLLECTION), FIRESTORE_QUERY_SHAPES.auditAfterSeq, []).startAfter(auditDocId(afterSeq)).limit(limit);
    const snapshot = await this.#call('read', () => query.get());
    return snapshot.docs.map((doc) => {
      const seq = /^\d{10}$/.test(doc.id) ? Number(doc.id) : NaN;
      return parseStoredAuditEntry(doc.data(), sessionId, seq);
    });
  }

  async getQuery(sessionId: string, queryId: string): Promise<QueryRecord | null> {
    const snapshot = await this.#call('read', () => this.#queryRef(sessionId, queryId).get());
    return snapshot.exists ? parseStoredQuery(snapshot.data(), sessionId, snapshot.id) : null;
  }

  async listQueries(sessionId: string, options: ListQueriesOptions): Promise<QueryRecord[]> {
    assertPage(options.limit);
    const queries = this.#sessionRef(sessionId).collection(QUERIES_COLLECTION);
    let query = options.status === undefined ? shaped(queries, FIRESTORE_QUERY_SHAPES.queriesOfSession, []) : shaped(queries, FIRESTORE_QUERY_SHAPES.queriesOfSessionByStatus, [options.status]);
    if (options.after !== undefined) query = query.startAfter(options.after.created_at, options.after.id);
    const snapshot = await this.#call('read', () => query.limit(options.limit).get());
    return snapshot.docs.map((doc) => parseStoredQuery(doc.data(), sessionId, doc.id));
  }

  async commitQuery(write: QueryWrite): Promise<void> {
    assertQueryWritable(write);
    const { query, entry, expectedQueryVersion, expectedSessionVersion } = write;
    const queryRef = this.#queryRef(query.session_id, query.id);
    const doc = plain(query);
    await this.#commitUnderSession(query.session_id, expectedSessionVersion, entry, queryRef, (tx, current) => {
      if (expectedQueryVersion === null ? current?.exists : !current?.exists || current.get('version') !== expectedQueryVersion) {
        throw new CleanroomError('CONFLICT', 'the query changed, exists already or does not exist');
      }
      tx.set(queryRef, doc);
    });
  }

  /**
   * One transaction over a session and one of its child documents (a query, a dataset): the
   * session's version and audit head are checked and bumped, `child` decides on the child as it
   * is stored and writes it, and `entry` is appended, or none of it happens.
   */
  async #commitUnderSession(
    sessionId: string,
    expectedSessionVersion: number,
    entry: AuditEntry,
    childRef: DocumentReference,
    child: (tx: Transaction, current: DocumentSnapshot | undefined) => void,
  ): Promise<void> {
    const sessionRef = this.#sessionRef(sessionId);
    const audit = plain(entry);
    const head = { seq: entry.seq, hash: entry.hash };
    // A TypeError thrown in the callback would be translated like an SDK failure; keep it apart.
    let misuse: TypeError | undefined;
    try {
      await this.#call('write', () =>
        this.#db.runTransaction(
          async (tx) => {
            // Firestore wants every read before the first write.
            const [session, current] = await tx.getAll(sessionRef, childRef);
            if (!session?.exists || session.get('version') !== expectedSessionVersion) {
              throw new CleanroomError('CONFLICT', 'the session changed or no longer exists');
            }
            if (!extendsHead(session.get('audit_head'), entry)) {
              misuse = new TypeError("the audit entry does not extend the session's stored chain");
              throw misuse;
            }
            child(tx, current);
            // Only the two fields a child's write changes: the rest of the session stays as stored.
            tx.update(sessionRef, { version: expectedSessionVersion + 1, audit_head: head }).create(this.#auditRef(sessionId, entry.seq), audit);
          },
          { maxAttempts: this.#maxAttempts },
        ),
      );
    } catch (error) {
      throw misuse ?? error;
    }
  }

  async getDataset(sessionId: string, datasetId: string): Promise<DatasetRecord | null> {
    const snapshot = await this.#call('read', () => this.#datasetRef(sessionId, datasetId).get());
    return snapshot.exists ? parseStoredDataset(snapshot.data(), sessionId, snapshot.id) : null;
  }

  async listDatasets(sessionId: string, options: { limit: number }): Promise<DatasetRecord[]> {
    assertPage(options.limit);
    const query = shaped(this.#sessionRef(sessionId).collection(DATASETS_COLLECTION), FIRESTORE_QUERY_SHAPES.datasetsOfSession, []);
    const snapshot = await this.#call('read', () => query.limit(options.limit).get());
    return snapshot.docs.map((doc) => parseStoredDataset(doc.data(), sessionId, doc.id));
  }

  async commitDataset(write: DatasetWrite): Promise<void> {
    assertDatasetWritable(write);
    const { dataset, entry, expectedSessionVersion } = write;
    const datasetRef = this.#datasetRef(dataset.session_id, dataset.id);
    const doc = plain(dataset);
    await this.#commitUnderSession(dataset.session_id, expectedSessionVersion, entry, datasetRef, (tx, current) => {
      if (current?.exists) throw new CleanroomError('CONFLICT', 'a dataset with this id exists in the session');
      tx.create(datasetRef, doc);
    });
  }

  async listUnshredded(options: { closedBefore: string; limit: number; after?: ClosedCursor }): Promise<SessionRecord[]> {
    assertClosedPage(options.closedBefore, options.limit, options.after);
    let query = shaped(this.#db.collection(this.#collection), FIRESTORE_QUERY_SHAPES.sessionsToShred, [null, options.closedBefore]);
    if (options.after !== undefined) query = query.startAfter(options.after.closed_at, options.after.id);
    const snapshot = await this.#call('read', () => query.limit(options.limit).get());
    return snapshot.docs.map((doc) => parseStoredSession(doc.data(), doc.id));
  }

  async listQueriesInStatus(status: QueryStatus, options: { before: string; limit: number; after?: StatusCursor }): Promise<QueryRecord[]> {
    assertStatusPage(options.before, options.limit);
    let query = shaped(this.#db.collectionGroup(QUERIES_COLLECTION), FIRESTORE_QUERY_SHAPES.queriesInStatusSince, [status, options.before]);
    if (options.after !== undefined) query = query.startAfter(options.after.status_since, options.after.id);
    const snapshot = await this.#call('read', () => query.limit(options.limit).get());
    // The collection group spans every `queries` collection of the database: the deployment has
    // one sessions collection. Filtering others out here would shorten pages and end paging early.
    return snapshot.docs.map((doc) => parseStoredQuery(doc.data(), doc.ref.parent.parent?.id ?? '', doc.id));
  }

  #sessionRef(id: string): DocumentReference {
    return this.#db.collection(this.#collection).doc(id);
  }

  #queryRef(sessionId: string, queryId: string): DocumentReference {
    return this.#sessionRef(sessionId).collection(QUERIES_COLLECTION).doc(queryId);
  }

  #datasetRef(sessionId: string, datasetId: string): DocumentReference {
    return this.#sessionRef(sessionId).collection(DATASETS_COLLECTION).doc(datasetId);
  }

  #auditRef(sessionId: string, seq: number): DocumentReference {
    return this.#sessionRef(sessionId).collection(AUDIT_COLLECTION).doc(auditDocId(seq));
  }

  /** Runs one SDK call under the adapter's deadline and translates what it throws. */
  async #call<T>(kind: 'read' | 'write', body: () => Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new CleanroomError('STORE_UNAVAILABLE', 'the session store did not answer in time', {
              retryAfter: STORE_RETRY_AFTER_SECONDS,
            }),
          ),
        this.#timeoutMs,
      );
    });
    try {
      return await Promise.race([body(), deadline]);
    } catch (error) {
      throw translateFirestoreError(error, kind);
    } finally {
      clearTimeout(timer);
    }
  }
}

/**
 * Maps a Firestore SDK failure to the store's codes; our own `CleanroomError`s pass through.
 * ABORTED / ALREADY_EXISTS / FAILED_PRECONDITION mean a lost race only for a write: on a read,
 * FAILED_PRECONDITION is how production reports a missing index, which is a bug (`INTERNAL`).
 */
export function translateFirestoreError(error: unknown, kind: 'read' | 'write'): CleanroomError {
  if (error instanceof CleanroomError) return error;
  const code = typeof error === 'object' && error !== null && 'code' in error ? error.code : undefined;
  switch (code) {
    case UNAVAILABLE:
    case DEADLINE_EXCEEDED:
    case RESOURCE_EXHAUSTED:
      return new CleanroomError('STORE_UNAVAILABLE', 'the session store is unavailable', {
        cause: error,
        retryAfter: STORE_RETRY_AFTER_SECONDS,
      });
    case ABORTED:
    case ALREADY_EXISTS:
    case FAILED_PRECONDITION:
    case HTTP_CONFLICT:
      if (kind === 'write') return new CleanroomError('CONFLICT', 'the session changed concurrently', { cause: error });
      break;
  }
  return new CleanroomError('INTERNAL', 'session store failure', { cause: error });
}

/** The audit entry's document id: its seq zero-padded to 10 digits, so ids sort by seq. */
export function auditDocId(seq: number): string {
  return String(seq).padStart(10, '0');
}

/** Applies `shape` to `base`, filling its filters with `values` in order. */
function shaped(base: Query, shape: FirestoreQueryShape, values: readonly unknown[]): Query {
  if (values.length !== shape.filters.length) throw new TypeError('one value per filter of the query shape');
  let query = base;
  shape.filters.forEach((filter, i) => {
    query = query.where(filter.fieldPath, filter.op, values[i]);
  });
  for (const order of shape.orderBy) {
    query = query.orderBy(order.fieldPath === '__name__' ? FieldPath.documentId() : order.fieldPath, order.direction);
  }
  return query;
}

/**
 * A plain JSON copy for the SDK: it refuses `undefined` fields (an absent `migrated_from` may be
 * present as undefined) and stores only data, never class instances.
 */
function plain<T>(value: T): Record<string, unknown> {
  return JSON.parse(JSON.stringify(value)) as Record<string, unknown>;
}
