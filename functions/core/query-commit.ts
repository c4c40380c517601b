import { nextAuditEntry } from '../../protocol/audit.ts';
import { CleanroomError } from '../../protocol/errors.ts';
import type { Clock, QueryStore, SessionStore } from './ports.ts';
import type { QueryTransition } from './query-rules.ts';
import type { QueryRecord, SessionRecord } from './records.ts';

/** What to do with a query, decided on a fresh read: a transition by `actor`, or nothing. */
export type Decision = { transition: QueryTransition; actor: string } | { unchanged: QueryRecord };

/** Decides on the session and query as just read (either may be missing); may throw a coded error. */
export type Decide = (session: SessionRecord | null, query: QueryRecord | null, now: string) => Decision | Promise<Decision>;

/** Re-reads and re-decisions after a lost race, by default. */
export const COMMIT_ATTEMPTS = 4;

/**
 * Read, decide, commit if neither the session nor the query moved since the read: one
 * transaction with the audit entry that extends the session's chain. A lost race is decided
 * again on fresh data (it may now be refused, or have nothing left to do); after `attempts`
 * the caller sees CONFLICT.
 */
export async function transact(
  deps: { store: SessionStore & QueryStore; clock: Clock },
  sessionId: string,
  queryId: string,
  decide: Decide,
  attempts = COMMIT_ATTEMPTS,
): Promise<{ query: QueryRecord; changed: boolean }> {
  for (let attempt = 1; ; attempt++) {
    const [session, current] = await Promise.all([deps.store.get(sessionId), deps.store.getQuery(sessionId, queryId)]);
    const now = deps.clock.now().toISOString();
    const decision = await decide(session, current, now);
    if ('unchanged' in decision) return { query: decision.unchanged, changed: false };
    if (!session) throw new TypeError('a transition was decided without a session');
    const { transition, actor } = decision;
    const entry = await nextAuditEntry(session.audit_head, { session_id: sessionId, at: now, actor, ...transition.audit });
    const query: QueryRecord = { ...transition.next, version: (current?.version ?? 0) + 1 };
    try {
      await deps.store.commitQuery({ query, expectedQueryVersion: current?.version ?? null, expectedSessionVersion: session.version, entry });
      return { query, changed: true };
    } catch (error) {
      if (!(error instanceof CleanroomError && error.code === 'CONFLICT') || attempt >= attempts) throw error;
    }
  }
}
