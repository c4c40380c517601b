import { nextAuditEntry, type AuditEntry } from '../../protocol/audit.ts';
import { CleanroomError } from '../../protocol/errors.ts';
import type { CreateSessionRequest, SessionStatus } from '../../protocol/session.ts';
import type { Clock, SessionCursor, SessionStore } from './ports.ts';
import type { ParticipantRecord, SessionRecord } from './records.ts';
import * as rules from './session-rules.ts';

export interface SessionServiceDeps {
  store: SessionStore;
  clock: Clock;
  /** New session ids; UUIDs in production, injectable for tests. */
  newId: () => string;
}

type AuditFields = Pick<AuditEntry, 'action' | 'details'>;

/** How often a write that lost a race is re-read and re-decided before the caller sees CONFLICT. */
const MAX_ATTEMPTS = 3;

/**
 * The sessions use cases: read, decide with the pure rules, write conditionally with an audit
 * entry. Callers pass verified emails only.
 */
export class SessionService {
  readonly #deps: SessionServiceDeps;

  constructor(deps: SessionServiceDeps) {
    this.#deps = deps;
  }

  async create(actor: string, input: CreateSessionRequest): Promise<SessionRecord> {
    const now = this.#now();
    const draft = rules.newSession(input, actor, this.#deps.newId(), now);
    const entry = await nextAuditEntry(null, {
      session_id: draft.id,
      at: now,
      actor,
      action: 'session.created',
      details: { participants: draft.participant_emails.length, approval_policy: draft.config.approval_policy },
    });
    const record: SessionRecord = { ...draft, version: 1, audit_head: { seq: entry.seq, hash: entry.hash } };
    await this.#deps.store.create(record, entry);
    return record;
  }

  /** The session if `actor` takes part in it; SESSION_NOT_FOUND otherwise. */
  async get(actor: string, id: string): Promise<SessionRecord> {
    const session = await this.#deps.store.get(id);
    rules.assertParticipant(session, actor);
    return session;
  }

  async list(actor: string, options: { status?: SessionStatus; limit: number; after?: SessionCursor }): Promise<{ sessions: SessionRecord[]; next: SessionCursor | null }> {
    // One extra row tells whether another page exists without a second query.
    const rows = await this.#deps.store.listForParticipant(actor, { ...options, limit: options.limit + 1 });
    const sessions = rows.slice(0, options.limit);
    const last = sessions.at(-1);
    const next = rows.length > options.limit && last ? { created_at: last.created_at, id: last.id } : null;
    return { sessions, next };
  }

  close(actor: string, id: string): Promise<SessionRecord> {
    return this.#mutate(actor, id, (s, now) => {
      const next = rules.closeSession(s, actor, now);
      return next && { next, audit: { action: 'session.closed', details: {} } };
    });
  }

  addParticipant(actor: string, id: string, email: string): Promise<SessionRecord> {
    return this.#mutate(actor, id, (s, now) => ({
      next: rules.addParticipant(s, actor, email, now),
      audit: { action: 'participant.added', details: { email } },
    }));
  }

  removeParticipant(actor: string, id: string, email: string): Promise<SessionRecord> {
    return this.#mutate(actor, id, (s, now) => ({
      next: rules.removeParticipant(s, actor, email, now),
      audit: { action: 'participant.removed', details: { email } },
    }));
  }

  registerKeys(actor: string, id: string, keys: Omit<NonNullable<ParticipantRecord['keys']>, 'registered_at'>): Promise<SessionRecord> {
    return this.#mutate(actor, id, (s, now) => ({
      next: rules.registerKeys(s, actor, { ...keys, registered_at: now }, now),
      audit: {
        action: 'participant.keys_registered',
        details: { signing_kid: keys.signing_kid, encryption_kid: keys.encryption_kid },
      },
    }));
  }

  async audit(actor: string, id: string, afterSeq: number, limit: number) {
    const session = await this.get(actor, id);
    const entries = await this.#deps.store.listAudit(id, afterSeq, limit);
    return { entries, head: session.audit_head };
  }

  /**
   * Read, decide, write if unchanged since the read. A lost race is decided again on fresh data
   * (it may now be refused, e.g. SESSION_CLOSED); `decide` returning null means "nothing to do".
   */
  async #mutate(actor: string, id: string, decide: (session: SessionRecord, now: string) => { next: SessionRecord; audit: AuditFields } | null): Promise<SessionRecord> {
    for (let attempt = 1; ; attempt++) {
      const current = await this.get(actor, id);
      const now = this.#now();
      const decision = decide(current, now);
      if (!decision) return current;
      const entry = await nextAuditEntry(current.audit_head, { session_id: id, at: now, actor, ...decision.audit });
      const next: SessionRecord = {
        ...decision.next,
        version: current.version + 1,
        audit_head: { seq: entry.seq, hash: entry.hash },
      };
      try {
        await this.#deps.store.update(next, current.version, entry);
        return next;
      } catch (error) {
        if (!(error instanceof CleanroomError && error.code === 'CONFLICT') || attempt >= MAX_ATTEMPTS) throw error;
      }
    }
  }

  #now(): string {
    return this.#deps.clock.now().toISOString();
  }
}
