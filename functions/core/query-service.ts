import { DATASET_LIMITS } from '../../protocol/dataset.ts';
import { CleanroomError } from '../../protocol/errors.ts';
import type { ProposeQueryRequest, QueryEvent, QueryStatus } from '../../protocol/query.ts';
import type { QueryCursor } from './ports.ts';
import { transact, type Decide } from './query-commit.ts';
import { resolveQueryDeps, type QueryServiceDeps, type ResolvedQueryDeps } from './query-deps.ts';
import { queueApproved } from './query-dispatch.ts';
import { reconcileQueries, type ReconcileReport } from './query-reconciler.ts';
import * as rules from './query-rules.ts';
import type { QueryRecord, SessionRecord } from './records.ts';
import { assertParticipant } from './session-rules.ts';

export type { QueryServiceDeps } from './query-deps.ts';
export type { ReconcileReport } from './query-reconciler.ts';

/** The worker's events contend with everything else in the session: more retries than people get. */
const EVENT_ATTEMPTS = 8;
/** Queries cancelled per status when a session closes; the reconciler handles any rest. */
const CANCEL_LIMIT = 1000;
const CANCEL_PAGE = 100;

/**
 * The query use cases: read session and query, decide with the pure rules, commit one
 * conditional transaction with its audit entry, and only then talk to the signer and the queue
 * (never inside a store transaction: a callback may run more than once; docs/architecture.md §9).
 * Callers pass verified emails only.
 */
export class QueryService {
  readonly #deps: ResolvedQueryDeps;

  constructor(deps: QueryServiceDeps) {
    this.#deps = resolveQueryDeps(deps);
  }

  /** A participant proposes a query; with the proposer as the only approver it is queued at once. */
  async propose(actor: string, sessionId: string, input: ProposeQueryRequest): Promise<QueryRecord> {
    const id = this.#deps.newId();
    const { query } = await transact(this.#deps, sessionId, id, async (session, existing, now) => {
      assertParticipant(session, actor);
      if (existing) throw new CleanroomError('CONFLICT', 'a query with the generated id exists; retry');
      // Read after the session: a dataset registered meanwhile moved the session's version, so
      // the commit (conditional on the version read above) fails and this is decided again.
      const datasets = await this.#deps.store.listDatasets(sessionId, { limit: DATASET_LIMITS.maxDatasetsPerSession });
      return { transition: await rules.proposeQuery(session, actor, input, id, now, datasets), actor };
    });
    return query.status === 'APPROVED' ? (await queueApproved(this.#deps, sessionId, id)).query : query;
  }

  /** A required approver approves; the approval that completes the policy queues the query. */
  async approve(actor: string, sessionId: string, queryId: string): Promise<QueryRecord> {
    const { query, changed } = await transact(this.#deps, sessionId, queryId, this.#byPerson(actor, rules.approveQuery));
    return changed && query.status === 'APPROVED' ? (await queueApproved(this.#deps, sessionId, queryId)).query : query;
  }

  /** A required approver rejects; the query is final. */
  async reject(actor: string, sessionId: string, queryId: string): Promise<QueryRecord> {
    return (await transact(this.#deps, sessionId, queryId, this.#byPerson(actor, rules.rejectQuery))).query;
  }

  /**
   * The proposer or the session owner cancels a query that has not started. A QUEUED query's task
   * may still reach the worker: its RUNNING report is then refused, so it does not run.
   */
  async cancel(actor: string, sessionId: string, queryId: string): Promise<QueryRecord> {
    return (await transact(this.#deps, sessionId, queryId, this.#byPerson(actor, rules.cancelQuery))).query;
  }

  /** The query if `actor` takes part in its session: SESSION_NOT_FOUND, then QUERY_NOT_FOUND. */
  async get(actor: string, sessionId: string, queryId: string): Promise<QueryRecord> {
    assertParticipant(await this.#deps.store.get(sessionId), actor);
    const query = await this.#deps.store.getQuery(sessionId, queryId);
    if (!query) throw new CleanroomError('QUERY_NOT_FOUND', 'query not found');
    return query;
  }

  /** A session's queries, newest first, for its participants. */
  async list(actor: string, sessionId: string, options: { status?: QueryStatus; limit: number; after?: QueryCursor }): Promise<{ queries: QueryRecord[]; next: QueryCursor | null }> {
    assertParticipant(await this.#deps.store.get(sessionId), actor);
    // One extra row tells whether another page exists without a second query.
    const rows = await this.#deps.store.listQueries(sessionId, { ...options, limit: options.limit + 1 });
    const queries = rows.slice(0, options.limit);
    const last = queries.at(-1);
    return { queries, next: rows.length > options.limit && last ? { created_at: last.created_at, id: last.id } : null };
  }

  /**
   * After a session is closed: cancels its queries that have not started, each with its audit
   * entry by `actor` (who closed it). Anything missed here (a crash) cannot start anyway: the
   * worker's RUNNING report is refused for a closed session, and the reconciler cancels or
   * expires the rest. Returns how many were cancelled.
   */
  async cancelOpen(actor: string, sessionId: string): Promise<number> {
    const session = await this.#deps.store.get(sessionId);
    assertParticipant(session, actor);
    if (session.status !== 'CLOSED') return 0;
    let cancelled = 0;
    for (const status of rules.OPEN_STATUSES) {
      for (let page = 0; page * CANCEL_PAGE < CANCEL_LIMIT; page++) {
        const rows = await this.#deps.store.listQueries(sessionId, { status, limit: CANCEL_PAGE });
        let progressed = false;
        for (const row of rows) {
          const { changed } = await transact(this.#deps, sessionId, row.id, (s, q, now) => {
            if (!s || !q) throw new CleanroomError('QUERY_NOT_FOUND', 'query not found');
            const transition = rules.cancelForClosedSession(s, q, now);
            return transition ? { transition, actor } : { unchanged: q };
          });
          if (changed) cancelled++;
          progressed ||= changed;
        }
        // What is left moved on by itself (e.g. started); listing it again would loop.
        if (!progressed) break;
      }
    }
    return cancelled;
  }

  /**
   * A worker event, from the authenticated worker (`caller`). Events of another attempt than the
   * current one, and repeats, change nothing (`applied: false`). RUNNING for a closed session is
   * refused with SESSION_CLOSED (and the query cancelled): the worker must not run it. Illegal
   * transitions are ILLEGAL_TRANSITION. Lost races end in STORE_UNAVAILABLE, which the worker
   * retries, never in a 4xx it would take as final.
   */
  async recordEvent(event: QueryEvent, caller: string): Promise<{ query: QueryRecord; applied: boolean }> {
    let refusal: CleanroomError | undefined;
    const decide: Decide = (session, query, now) => {
      refusal = undefined;
      if (!session || !query) throw new CleanroomError('QUERY_NOT_FOUND', 'query not found');
      if (query.task_id !== event.task_id) return { unchanged: query };
      if (event.event === 'RUNNING' && session.status !== 'ACTIVE') {
        refusal = new CleanroomError('SESSION_CLOSED', 'the session is closed: do not run this query');
        const transition = rules.cancelForClosedSession(session, query, now);
        return transition ? { transition, actor: caller } : { unchanged: query };
      }
      const transition = rules.applyWorkerEvent(query, event, now);
      return transition ? { transition, actor: caller } : { unchanged: query };
    };
    try {
      const { query, changed } = await transact(this.#deps, event.session_id, event.query_id, decide, EVENT_ATTEMPTS);
      if (refusal) throw refusal;
      return { query, applied: changed };
    } catch (error) {
      if (error instanceof CleanroomError && error.code === 'CONFLICT') {
        throw new CleanroomError('STORE_UNAVAILABLE', 'the session is busy; retry', { cause: error, retryAfter: 1 });
      }
      throw error;
    }
  }

  /** One reconciler run relative to `now` (see `reconcileQueries`). */
  reconcile(now: Date = this.#deps.clock.now()): Promise<ReconcileReport> {
    return reconcileQueries(this.#deps, now);
  }

  /** A person's decision: participants only (no leak), then the query must exist in that session. */
  #byPerson(actor: string, rule: (session: SessionRecord, query: QueryRecord, actor: string, now: string) => rules.QueryTransition): Decide {
    return (session, query, now) => {
      assertParticipant(session, actor);
      if (!query) throw new CleanroomError('QUERY_NOT_FOUND', 'query not found');
      return { transition: rule(session, query, actor, now), actor };
    };
  }
}
