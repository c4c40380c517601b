import { DatabaseSync } from 'node:sqlite';
import { CleanroomError } from '../../protocol/errors.ts';

/** One task arrival: its unique id and the query attempt it runs. */
export interface LeaseKey {
  jti: string;
  queryId: string;
  attempt: number;
}

/** Who asks for a lease: this worker process (`bootId`) at `now`, for `leaseMs`. */
export interface LeaseHolder {
  bootId: string;
  now: Date;
  leaseMs: number;
}

/** What `acquire` found. */
export type LeaseClaim =
  /** Run it. `takenOver`: a previous boot held the lease and died (or the lease lapsed). */
  | { kind: 'acquired'; takenOver: boolean }
  /** This boot is running it right now; the lease lasts until `until`. */
  | { kind: 'busy'; until: Date }
  /** It ran to the end already (this jti or this query attempt): a replay. */
  | { kind: 'completed' };

/** How a task ended: recorded with the lease, answered to the queue. */
export interface LeaseOutcome {
  status: 'SUCCEEDED' | 'FAILED';
  code?: string;
}

/**
 * The worker's record of task arrivals, keyed by query attempt and by jti. `acquire` is a
 * conditional write: of two arrivals of one attempt, exactly one gets `acquired`.
 */
export interface LeaseStore {
  acquire(key: LeaseKey, holder: LeaseHolder): Promise<LeaseClaim>;
  /** Records the outcome; false when this boot no longer holds the lease. */
  complete(key: LeaseKey, bootId: string, outcome: LeaseOutcome, now: Date): Promise<boolean>;
  /** Gives the lease back unfinished (the query was interrupted), so a redelivery runs it. */
  release(key: LeaseKey, bootId: string): Promise<void>;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS task_leases (
  query_id TEXT NOT NULL,
  attempt INTEGER NOT NULL,
  jti TEXT NOT NULL UNIQUE,
  state TEXT NOT NULL CHECK (state IN ('running', 'completed')),
  boot_id TEXT NOT NULL,
  expires_at INTEGER NOT NULL,
  outcome TEXT,
  updated_at INTEGER NOT NULL,
  PRIMARY KEY (query_id, attempt)
) STRICT;
`;

/**
 * Leases in a SQLite file in the worker's own data directory (`:memory:` for tests). Rows of
 * completed attempts are kept: they are what refuses a replay.
 */
export class SqliteLeaseStore implements LeaseStore {
  readonly #db: DatabaseSync;

  private constructor(db: DatabaseSync) {
    this.#db = db;
  }

  static open(path: string): SqliteLeaseStore {
    const db = new DatabaseSync(path);
    try {
      db.exec('PRAGMA busy_timeout = 5000');
      db.exec('PRAGMA journal_mode = WAL');
      db.exec(SCHEMA);
    } catch (error) {
      db.close();
      throw error;
    }
    return new SqliteLeaseStore(db);
  }

  close(): void {
    if (this.#db.isOpen) this.#db.close();
  }

  async acquire(key: LeaseKey, holder: LeaseHolder): Promise<LeaseClaim> {
    const now = holder.now.getTime();
    return this.#transaction(() => {
      // A jti is signed to one query attempt; seen with another, it is a replay whatever its state.
      const byJti = this.#db.prepare('SELECT query_id, attempt FROM task_leases WHERE jti = ?').get(key.jti);
      if (byJti && (byJti.query_id !== key.queryId || Number(byJti.attempt) !== key.attempt)) return { kind: 'completed' };
      const inserted = this.#db
        .prepare(
          `INSERT INTO task_leases (query_id, attempt, jti, state, boot_id, expires_at, updated_at)
           VALUES (?, ?, ?, 'running', ?, ?, ?) ON CONFLICT (query_id, attempt) DO NOTHING`,
        )
        .run(key.queryId, key.attempt, key.jti, holder.bootId, now + holder.leaseMs, now);
      if (inserted.changes === 1) return { kind: 'acquired', takenOver: false };
      const row = this.#db.prepare('SELECT state, boot_id, expires_at FROM task_leases WHERE query_id = ? AND attempt = ?').get(key.queryId, key.attempt)!;
      if (row.state === 'completed') return { kind: 'completed' };
      if (row.boot_id === holder.bootId && Number(row.expires_at) > now) return { kind: 'busy', until: new Date(Number(row.expires_at)) };
      // Held by a boot that is gone (or lapsed): this arrival takes it over under its own jti.
      this.#db
        .prepare('UPDATE task_leases SET jti = ?, boot_id = ?, expires_at = ?, updated_at = ? WHERE query_id = ? AND attempt = ?')
        .run(key.jti, holder.bootId, now + holder.leaseMs, now, key.queryId, key.attempt);
      return { kind: 'acquired', takenOver: true };
    });
  }

  async complete(key: LeaseKey, bootId: string, outcome: LeaseOutcome, now: Date): Promise<boolean> {
    return this.#transaction(
      () =>
        this.#db
          .prepare(
            `UPDATE task_leases SET state = 'completed', outcome = ?, updated_at = ?
             WHERE query_id = ? AND attempt = ? AND jti = ? AND boot_id = ? AND state = 'running'`,
          )
          .run(JSON.stringify(outcome), now.getTime(), key.queryId, key.attempt, key.jti, bootId).changes === 1,
    );
  }

  async release(key: LeaseKey, bootId: string): Promise<void> {
    this.#transaction(() =>
      this.#db.prepare(`DELETE FROM task_leases WHERE query_id = ? AND attempt = ? AND jti = ? AND boot_id = ? AND state = 'running'`).run(key.queryId, key.attempt, key.jti, bootId),
    );
  }

  #transaction<T>(body: () => T): T {
    try {
      // BEGIN IMMEDIATE: read-then-write without another connection slipping in between.
      this.#db.exec('BEGIN IMMEDIATE');
      try {
        const result = body();
        this.#db.exec('COMMIT');
        return result;
      } catch (error) {
        if (this.#db.isTransaction) this.#db.exec('ROLLBACK');
        throw error;
      }
    } catch (cause) {
      throw new CleanroomError('STORE_UNAVAILABLE', 'the lease store failed', { cause, retryAfter: 1 });
    }
  }
}
