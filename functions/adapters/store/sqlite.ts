import { DatabaseSync, type StatementSync } from 'node:sqlite';
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

export interface SqliteStoreOptions {
  /** How long a write waits for another connection's lock before `STORE_UNAVAILABLE`. */
  busyTimeoutMs?: number;
}

// `doc` is the source of truth; the other columns are copies of its fields for conditions and
// ordering. The participants side table turns "sessions of this email" into an index lookup.
const SCHEMA = `
CREATE TABLE IF NOT EXISTS sessions (
  id TEXT PRIMARY KEY,
  doc TEXT NOT NULL,
  status TEXT NOT NULL,
  created_at TEXT NOT NULL,
  version INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS session_participants (
  email TEXT NOT NULL,
  session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
  PRIMARY KEY (email, session_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS session_participants_by_session ON session_participants(session_id);
CREATE TABLE IF NOT EXISTS audit (
  session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
  seq INTEGER NOT NULL,
  doc TEXT NOT NULL,
  PRIMARY KEY (session_id, seq)
) STRICT, WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS queries (
  id TEXT PRIMARY KEY,
  session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
  doc TEXT NOT NULL,
  status TEXT NOT NULL,
  status_since TEXT NOT NULL,
  created_at TEXT NOT NULL,
  version INTEGER NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS queries_by_session ON queries(session_id, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS queries_by_session_status ON queries(session_id, status, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS queries_by_status ON queries(status, status_since, id);
CREATE TABLE IF NOT EXISTS datasets (
  session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
  id TEXT NOT NULL,
  doc TEXT NOT NULL,
  created_at TEXT NOT NULL,
  PRIMARY KEY (session_id, id)
) STRICT, WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS datasets_by_session ON datasets(session_id, created_at, id);
`;

// Added to `sessions` by `open` when missing (files from before shredding): the session's
// `closed_at` while its shredding is unfinished (`shredded_at` null), else NULL. A plain column,
// so the reconciler's listing is an index range and a session write evaluates no JSON.
const SHRED_COLUMN = 'shred_closed_at';
const SHRED_INDEX = `CREATE INDEX IF NOT EXISTS sessions_to_shred ON sessions(${SHRED_COLUMN}, id) WHERE ${SHRED_COLUMN} IS NOT NULL`;

// SQLite primary result codes (the low byte of the extended code node:sqlite reports).
const SQLITE_BUSY = 5;
const SQLITE_LOCKED = 6;
const SQLITE_CONSTRAINT = 19;

/**
 * The embedded stack's session store: one SQLite file (WAL), shared by every process of the
 * stack. `node:sqlite` is synchronous, so each method runs its transaction to the end before
 * yielding; `BEGIN IMMEDIATE` plus the version condition serialise writers across connections.
 */
export class SqliteSessionStore implements SessionStore, QueryStore, DatasetStore {
  /** The open connection, for other adapters that keep their tables in the same file. */
  readonly database: DatabaseSync;

  private constructor(database: DatabaseSync) {
    this.database = database;
  }

  /** Opens (creating if absent) the database file at `path` and its schema. */
  static open(path: string, options: SqliteStoreOptions = {}): SqliteSessionStore {
    const database = new DatabaseSync(path);
    try {
      // busy_timeout first: switching to WAL and creating tables may wait for another opener.
      database.exec(`PRAGMA busy_timeout = ${Math.trunc(options.busyTimeoutMs ?? 5000)}`);
      database.exec('PRAGMA journal_mode = WAL');
      // In WAL mode NORMAL still survives a crash of the process (every commit is in the WAL);
      // only an OS crash or power loss may roll back the last commits, never corrupt the file.
      // FULL would fsync on every commit, the main cost of a write here (docs/benchmarks.md).
      database.exec('PRAGMA synchronous = NORMAL');
      database.exec('PRAGMA foreign_keys = ON');
      immediateTransaction(database, () => {
        database.exec(SCHEMA);
        const columns = database
          .prepare('SELECT name FROM pragma_table_info(?)')
          .all('sessions')
          .map((row) => row.name);
        if (!columns.includes(SHRED_COLUMN)) database.exec(`ALTER TABLE sessions ADD COLUMN ${SHRED_COLUMN} TEXT`);
        database.exec(SHRED_INDEX);
      });
    } catch (error) {
      database.close();
      throw translateSqliteError(error);
    }
    return new SqliteSessionStore(database);
  }

  readonly #statements = new Map<string, StatementSync>();

  /** A prepared statement, compiled once per connection: preparing is a large share of a small write. */
  #stmt(sql: string): StatementSync {
    let statement = this.#statements.get(sql);
    if (!statement) {
      statement = this.database.prepare(sql);
      this.#statements.set(sql, statement);
    }
    return statement;
  }

  close(): void {
    if (this.database.isOpen) this.database.close();
  }

  async create(session: SessionRecord, entry: AuditEntry): Promise<void> {
    assertWritable(session, entry, null);
    this.#write(() => {
      const inserted = this.#stmt(
        `INSERT INTO sessions (id, doc, status, created_at, version, ${SHRED_COLUMN}) VALUES (?, ?, ?, ?, ?, ?)
           ON CONFLICT (id) DO NOTHING`,
      ).run(session.id, JSON.stringify(session), session.status, session.created_at, session.version, shredClosedAt(session));
      if (inserted.changes === 0) throw new CleanroomError('CONFLICT', 'a session with this id already exists');
      this.#writeParticipants(session);
      this.#appendAudit(entry);
    });
  }

  async get(id: string): Promise<SessionRecord | null> {
    const row = this.#read(() => this.#stmt('SELECT doc FROM sessions WHERE id = ?').get(id));
    return row === undefined ? null : parseSessionRow(row, id);
  }

  async update(session: SessionRecord, expectedVersion: number, entry: AuditEntry): Promise<void> {
    assertWritable(session, entry, expectedVersion);
    this.#write(() => {
      const updated = this.#stmt(`UPDATE sessions SET doc = ?, status = ?, created_at = ?, version = ?, ${SHRED_COLUMN} = ? WHERE id = ? AND version = ?`).run(
        JSON.stringify(session),
        session.status,
        session.created_at,
        session.version,
        shredClosedAt(session),
        session.id,
        expectedVersion,
      );
      if (updated.changes === 0) throw new CleanroomError('CONFLICT', 'the session changed or no longer exists');
      this.#writeParticipants(session);
      this.#appendAudit(entry);
    });
  }

  async listForParticipant(email: string, options: ListSessionsOptions): Promise<SessionRecord[]> {
    assertPage(options.limit);
    const conditions = ['p.email = ?'];
    const params: string[] = [email];
    if (options.status !== undefined) {
      conditions.push('s.status = ?');
      params.push(options.status);
    }
    if (options.after !== undefined) {
      // Strictly after the cursor in (created_at DESC, id DESC) order, so ties are not skipped.
      conditions.push('(s.created_at < ? OR (s.created_at = ? AND s.id < ?))');
      params.push(options.after.created_at, options.after.created_at, options.after.id);
    }
    const rows = this.#read(() =>
      this.#stmt(
        `SELECT s.id, s.doc FROM session_participants p JOIN sessions s ON s.id = p.session_id
           WHERE ${conditions.join(' AND ')} ORDER BY s.created_at DESC, s.id DESC LIMIT ?`,
      ).all(...params, options.limit),
    );
    return rows.map((row) => parseSessionRow(row, String(row.id)));
  }

  async listAudit(sessionId: string, afterSeq: number, limit: number): Promise<AuditEntry[]> {
    assertPage(limit, afterSeq);
    const rows = this.#read(() => this.#stmt('SELECT seq, doc FROM audit WHERE session_id = ? AND seq > ? ORDER BY seq LIMIT ?').all(sessionId, afterSeq, limit));
    return rows.map((row) => parseStoredAuditEntry(parseJson(row.doc, 'stored audit entry is malformed'), sessionId, Number(row.seq)));
  }

  async getQuery(sessionId: string, queryId: string): Promise<QueryRecord | null> {
    const row = this.#read(() => this.#stmt('SELECT doc FROM queries WHERE id = ? AND session_id = ?').get(queryId, sessionId));
    return row === undefined ? null : parseQueryRow(row, sessionId, queryId);
  }

  async listQueries(sessionId: string, options: ListQueriesOptions): Promise<QueryRecord[]> {
    assertPage(options.limit);
    const conditions = ['session_id = ?'];
    const params: string[] = [sessionId];
    if (options.status !== undefined) {
      conditions.push('status = ?');
      params.push(options.status);
    }
    if (options.after !== undefined) {
      conditions.push('(created_at < ? OR (created_at = ? AND id < ?))');
      params.push(options.after.created_at, options.after.created_at, options.after.id);
    }
    const rows = this.#read(() => this.#stmt(`SELECT id, doc FROM queries WHERE ${conditions.join(' AND ')} ORDER BY created_at DESC, id DESC LIMIT ?`).all(...params, options.limit));
    return rows.map((row) => parseQueryRow(row, sessionId, String(row.id)));
  }

  async commitQuery(write: QueryWrite): Promise<void> {
    assertQueryWritable(write);
    const { query, entry, expectedQueryVersion, expectedSessionVersion } = write;
    try {
      immediateTransaction(this.database, () => {
        this.#bumpSession(query.session_id, expectedSessionVersion, entry);
        const doc = JSON.stringify(query);
        const written =
          expectedQueryVersion === null
            ? this.#stmt(
                `INSERT INTO queries (id, session_id, doc, status, status_since, created_at, version) VALUES (?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (id) DO NOTHING`,
              ).run(query.id, query.session_id, doc, query.status, query.status_since, query.created_at, query.version)
            : this.#stmt(
                `UPDATE queries SET doc = ?, status = ?, status_since = ?, version = ?
                   WHERE id = ? AND session_id = ? AND version = ?`,
              ).run(doc, query.status, query.status_since, query.version, query.id, query.session_id, expectedQueryVersion);
        if (written.changes === 0) throw new CleanroomError('CONFLICT', 'the query changed, exists already or does not exist');
        this.#appendAudit(entry);
      });
    } catch (error) {
      // Our own misuse stays a TypeError; everything else becomes a store code.
      if (error instanceof TypeError) throw error;
      throw translateSqliteError(error);
    }
  }

  async getDataset(sessionId: string, datasetId: string): Promise<DatasetRecord | null> {
    const row = this.#read(() => this.#stmt('SELECT doc FROM datasets WHERE session_id = ? AND id = ?').get(sessionId, datasetId));
    return row === undefined ? null : parseDatasetRow(row, sessionId, datasetId);
  }

  async listDatasets(sessionId: string, options: { limit: number }): Promise<DatasetRecord[]> {
    assertPage(options.limit);
    const rows = this.#read(() => this.#stmt('SELECT id, doc FROM datasets WHERE session_id = ? ORDER BY created_at, id LIMIT ?').all(sessionId, options.limit));
    return rows.map((row) => parseDatasetRow(row, sessionId, String(row.id)));
  }

  async commitDataset(write: DatasetWrite): Promise<void> {
    assertDatasetWritable(write);
    const { dataset, entry, expectedSessionVersion } = write;
    try {
      immediateTransaction(this.database, () => {
        this.#bumpSession(dataset.session_id, expectedSessionVersion, entry);
        const inserted = this.#stmt(`INSERT INTO datasets (session_id, id, doc, created_at) VALUES (?, ?, ?, ?) ON CONFLICT (session_id, id) DO NOTHING`).run(
          dataset.session_id,
          dataset.id,
          JSON.stringify(dataset),
          dataset.created_at,
        );
        if (inserted.changes === 0) throw new CleanroomError('CONFLICT', 'a dataset with this id exists in the session');
        this.#appendAudit(entry);
      });
    } catch (error) {
      if (error instanceof TypeError) throw error;
      throw translateSqliteError(error);
    }
  }

  async listUnshredded(options: { closedBefore: string; limit: number; after?: ClosedCursor }): Promise<SessionRecord[]> {
    assertClosedPage(options.closedBefore, options.limit, options.after);
    const conditions = [`${SHRED_COLUMN} IS NOT NULL`, `${SHRED_COLUMN} < ?`];
    const params: string[] = [options.closedBefore];
    if (options.after !== undefined) {
      conditions.push(`(${SHRED_COLUMN} > ? OR (${SHRED_COLUMN} = ? AND id > ?))`);
      params.push(options.after.closed_at, options.after.closed_at, options.after.id);
    }
    const rows = this.#read(() => this.#stmt(`SELECT id, doc FROM sessions WHERE ${conditions.join(' AND ')} ORDER BY ${SHRED_COLUMN}, id LIMIT ?`).all(...params, options.limit));
    return rows.map((row) => parseSessionRow(row, String(row.id)));
  }

  async listQueriesInStatus(status: QueryStatus, options: { before: string; limit: number; after?: StatusCursor }): Promise<QueryRecord[]> {
    assertStatusPage(options.before, options.limit);
    const conditions = ['status = ?', 'status_since < ?'];
    const params: string[] = [status, options.before];
    if (options.after !== undefined) {
      conditions.push('(status_since > ? OR (status_since = ? AND id > ?))');
      params.push(options.after.status_since, options.after.status_since, options.after.id);
    }
    const rows = this.#read(() => this.#stmt(`SELECT id, session_id, doc FROM queries WHERE ${conditions.join(' AND ')} ORDER BY status_since, id LIMIT ?`).all(...params, options.limit));
    return rows.map((row) => parseQueryRow(row, String(row.session_id), String(row.id)));
  }

  /**
   * Inside a transaction: the session must still be at `expectedSessionVersion` (else CONFLICT);
   * its version and audit head move to `entry`, nothing else of it changes.
   */
  #bumpSession(sessionId: string, expectedSessionVersion: number, entry: AuditEntry): void {
    const session = this.#stmt(`SELECT version, json_extract(doc, '$.audit_head') AS head FROM sessions WHERE id = ?`).get(sessionId);
    if (session === undefined || session.version !== expectedSessionVersion) {
      throw new CleanroomError('CONFLICT', 'the session changed or no longer exists');
    }
    if (!extendsHead(parseJson(session.head, 'stored session record is malformed'), entry)) {
      throw new TypeError("the audit entry does not extend the session's stored chain");
    }
    this.#stmt(`UPDATE sessions SET doc = json_set(doc, '$.version', ?, '$.audit_head', json(?)), version = ? WHERE id = ?`).run(
      expectedSessionVersion + 1,
      JSON.stringify({ seq: entry.seq, hash: entry.hash }),
      expectedSessionVersion + 1,
      sessionId,
    );
  }

  #writeParticipants(session: SessionRecord): void {
    // Rewritten whole on every write: simpler than a diff, and a session has at most 50.
    this.#stmt('DELETE FROM session_participants WHERE session_id = ?').run(session.id);
    const insert = this.#stmt('INSERT OR IGNORE INTO session_participants (email, session_id) VALUES (?, ?)');
    for (const email of session.participant_emails) insert.run(email, session.id);
  }

  #appendAudit(entry: AuditEntry): void {
    // A duplicate (session_id, seq) means the chain moved without the version: a lost race.
    this.#stmt('INSERT INTO audit (session_id, seq, doc) VALUES (?, ?, ?)').run(entry.session_id, entry.seq, JSON.stringify(entry));
  }

  #write(body: () => void): void {
    try {
      immediateTransaction(this.database, body);
    } catch (error) {
      throw translateSqliteError(error);
    }
  }

  #read<T>(body: () => T): T {
    try {
      return body();
    } catch (error) {
      throw translateSqliteError(error);
    }
  }
}

/**
 * Runs `body` in a `BEGIN IMMEDIATE` transaction on `database`: the write lock is taken up
 * front, so two writers never both read and then fail to upgrade. Commits when `body` returns,
 * rolls back when it throws. `body` must be synchronous: nothing else may run inside it.
 */
export function immediateTransaction<T>(database: DatabaseSync, body: () => T): T {
  database.exec('BEGIN IMMEDIATE');
  try {
    const result = body();
    database.exec('COMMIT');
    return result;
  } catch (error) {
    if (database.isTransaction) database.exec('ROLLBACK');
    throw error;
  }
}

/** Maps a node:sqlite failure to the store's codes; our own `CleanroomError`s pass through. */
export function translateSqliteError(error: unknown): CleanroomError {
  if (error instanceof CleanroomError) return error;
  const code = typeof error === 'object' && error !== null && 'errcode' in error ? Number(error.errcode) & 0xff : NaN;
  if (code === SQLITE_BUSY || code === SQLITE_LOCKED) {
    return new CleanroomError('STORE_UNAVAILABLE', 'the session store is busy', { cause: error, retryAfter: STORE_RETRY_AFTER_SECONDS });
  }
  if (code === SQLITE_CONSTRAINT) return new CleanroomError('CONFLICT', 'the session changed concurrently', { cause: error });
  return new CleanroomError('INTERNAL', 'session store failure', { cause: error });
}

function parseSessionRow(row: Record<string, unknown>, id: string): SessionRecord {
  return parseStoredSession(parseJson(row.doc, 'stored session record is malformed'), id);
}

function parseQueryRow(row: Record<string, unknown>, sessionId: string, queryId: string): QueryRecord {
  return parseStoredQuery(parseJson(row.doc, 'stored query record is malformed'), sessionId, queryId);
}

/** The `shred_closed_at` column of a session: its close time while its shredding is unfinished. */
function shredClosedAt(session: SessionRecord): string | null {
  return session.shredded_at === null ? session.closed_at : null;
}

function parseDatasetRow(row: Record<string, unknown>, sessionId: string, datasetId: string): DatasetRecord {
  return parseStoredDataset(parseJson(row.doc, 'stored dataset record is malformed'), sessionId, datasetId);
}

function parseJson(text: unknown, message: string): unknown {
  try {
    if (typeof text !== 'string') throw new TypeError('not text');
    return JSON.parse(text);
  } catch {
    // No cause: JSON.parse's message quotes the text it choked on.
    throw new CleanroomError('INTERNAL', message);
  }
}
