import type { DatabaseSync } from 'node:sqlite';
import { CleanroomError } from '../../../protocol/errors.ts';
import { immediateTransaction } from '../store/sqlite.ts';

// One row per task name, kept after delivery ('done') so a name is never delivered twice.
// `attempts` counts dispatches started, `responses` the non-5xx answers (Cloud Tasks' execution
// count). A row is 'in_flight' under a lease: `lease_owner` is the dispatcher, and past
// `lease_until` (longer than the dispatch deadline) a dispatcher that died is presumed gone.
const SCHEMA = `
CREATE TABLE IF NOT EXISTS tasks (
  name TEXT PRIMARY KEY,
  body TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('pending', 'in_flight', 'done', 'failed')),
  attempts INTEGER NOT NULL DEFAULT 0,
  responses INTEGER NOT NULL DEFAULT 0,
  next_attempt_at INTEGER NOT NULL,
  lease_owner TEXT,
  lease_until INTEGER,
  last_status INTEGER,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS tasks_due ON tasks (state, next_attempt_at);
`;

/** A task claimed for one dispatch. */
export interface ClaimedTask {
  name: string;
  body: string;
  /** Dispatches including this one. */
  attempts: number;
  responses: number;
  /** When this dispatch was scheduled (epoch ms): Cloud Tasks' ETA. */
  scheduledAt: number;
  lastStatus: number | null;
}

/** The `tasks` table of the embedded queue; every method is one synchronous statement or transaction. */
export class TaskTable {
  readonly #db: DatabaseSync;

  constructor(database: DatabaseSync) {
    this.#db = database;
    guard(() => immediateTransaction(database, () => database.exec(SCHEMA)));
  }

  /** False when a task of that name exists (in any state). */
  insert(name: string, body: string, now: number): boolean {
    return guard(
      () =>
        this.#db
          .prepare(
            `INSERT INTO tasks (name, body, state, next_attempt_at, created_at, updated_at)
             VALUES (?, ?, 'pending', ?, ?, ?) ON CONFLICT (name) DO NOTHING`,
          )
          .run(name, body, now, now, now).changes === 1,
    );
  }

  /** Returns every in-flight row to 'pending', due now: their dispatcher is gone (start of a dispatcher). */
  reclaimAll(now: number): number {
    return Number(
      guard(() => this.#db.prepare(`UPDATE tasks SET state = 'pending', lease_owner = NULL, lease_until = NULL, next_attempt_at = ?, updated_at = ? WHERE state = 'in_flight'`).run(now, now)).changes,
    );
  }

  /** Leases up to `limit` due tasks (pending and due, or in flight past their lease) to `owner`. */
  claim(owner: string, now: number, leaseMs: number, limit: number, skip: ReadonlySet<string>): ClaimedTask[] {
    if (limit <= 0) return [];
    return guard(() =>
      immediateTransaction(this.#db, () => {
        const rows = this.#db
          .prepare(
            `SELECT name, body, attempts, responses, next_attempt_at, last_status FROM tasks
             WHERE (state = 'pending' AND next_attempt_at <= ?) OR (state = 'in_flight' AND lease_until <= ?)
             ORDER BY next_attempt_at, created_at LIMIT ?`,
          )
          .all(now, now, limit + skip.size);
        const lease = this.#db.prepare(`UPDATE tasks SET state = 'in_flight', lease_owner = ?, lease_until = ?, attempts = attempts + 1, updated_at = ? WHERE name = ?`);
        const claimed: ClaimedTask[] = [];
        for (const row of rows) {
          const name = String(row.name);
          if (skip.has(name) || claimed.length >= limit) continue;
          lease.run(owner, now + leaseMs, now, name);
          claimed.push({
            name,
            body: String(row.body),
            attempts: Number(row.attempts) + 1,
            responses: Number(row.responses),
            scheduledAt: Number(row.next_attempt_at),
            lastStatus: row.last_status === null ? null : Number(row.last_status),
          });
        }
        return claimed;
      }),
    );
  }

  /** Marks a delivered task done; its body is dropped, its name kept for de-duplication. */
  done(name: string, status: number, now: number): void {
    guard(() =>
      this.#db
        .prepare(
          `UPDATE tasks SET state = 'done', body = '', responses = responses + 1, last_status = ?, lease_owner = NULL,
           lease_until = NULL, updated_at = ? WHERE name = ? AND state != 'done'`,
        )
        .run(status, now, name),
    );
  }

  /**
   * Schedules the next dispatch (`nextAt`) or gives the task up (`nextAt` null), if `owner`
   * still holds this dispatch's lease; a dispatcher that lost its lease changes nothing.
   */
  retry(task: ClaimedTask, owner: string, result: { status: number; responded: boolean; nextAt: number | null }, now: number): void {
    guard(() =>
      this.#db
        .prepare(
          `UPDATE tasks SET state = ?, next_attempt_at = COALESCE(?, next_attempt_at), responses = responses + ?,
           last_status = ?, lease_owner = NULL, lease_until = NULL, updated_at = ?
           WHERE name = ? AND state = 'in_flight' AND lease_owner = ? AND attempts = ?`,
        )
        .run(result.nextAt === null ? 'failed' : 'pending', result.nextAt, result.responded ? 1 : 0, result.status, now, task.name, owner, task.attempts),
    );
  }

  /** The earliest time a task becomes due (or its lease lapses), or null when none is waiting. */
  nextDueAt(): number | null {
    const row = guard(() => this.#db.prepare(`SELECT MIN(CASE state WHEN 'pending' THEN next_attempt_at ELSE lease_until END) AS due FROM tasks WHERE state IN ('pending', 'in_flight')`).get());
    return row?.due === null || row?.due === undefined ? null : Number(row.due);
  }
}

// SQLite primary result codes (the low byte of the extended code node:sqlite reports).
const SQLITE_BUSY = 5;
const SQLITE_LOCKED = 6;

function guard<T>(body: () => T): T {
  try {
    return body();
  } catch (error) {
    if (error instanceof CleanroomError || error instanceof TypeError) throw error;
    const code = typeof error === 'object' && error !== null && 'errcode' in error ? Number(error.errcode) & 0xff : NaN;
    if (code === SQLITE_BUSY || code === SQLITE_LOCKED) {
      throw new CleanroomError('QUEUE_UNAVAILABLE', 'the task queue is busy', { cause: error, retryAfter: 1 });
    }
    throw new CleanroomError('INTERNAL', 'task queue failure', { cause: error });
  }
}
