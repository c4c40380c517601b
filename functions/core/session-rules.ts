import { CleanroomError } from '../../protocol/errors.ts';
import type { CreateSessionRequest, ParticipantView, SessionView } from '../../protocol/session.ts';
import { LIMITS } from '../../protocol/session.ts';
import type { ParticipantRecord, SessionRecord } from './records.ts';

/**
 * The session lifecycle as pure functions over records. Each returns the next record (without
 * version or audit head, which the service sets) or throws a coded error.
 */
export type SessionDraft = Omit<SessionRecord, 'version' | 'audit_head'>;

/** Secure defaults for a session created with `{name}` alone (the seed client's request). */
export const DEFAULT_CONFIG = { allow_cross_party_joins: false, approval_policy: 'all_participants' } as const;

/** A new, instantly ACTIVE session; the creator is its owner and first participant. */
export function newSession(input: CreateSessionRequest, owner: string, id: string, now: string): SessionDraft {
  const others = [...new Set(input.participant_emails ?? [])].filter((e) => e !== owner);
  const participants: ParticipantRecord[] = [
    { email: owner, role: 'owner', added_at: now, keys: null },
    ...others.map((email): ParticipantRecord => ({ email, role: 'participant', added_at: now, keys: null })),
  ];
  return {
    id,
    name: input.name,
    owner_email: owner,
    participant_emails: participants.map((p) => p.email),
    participants,
    config: {
      allow_cross_party_joins: input.allow_cross_party_joins ?? DEFAULT_CONFIG.allow_cross_party_joins,
      approval_policy: input.approval_policy ?? DEFAULT_CONFIG.approval_policy,
    },
    status: 'ACTIVE',
    created_at: now,
    updated_at: now,
    closed_at: null,
  };
}

/**
 * Non-participants get the same answer as for a missing session, so ids leak nothing.
 */
export function assertParticipant(session: SessionRecord | null, email: string): asserts session is SessionRecord {
  if (!session || !session.participant_emails.includes(email)) {
    throw new CleanroomError('SESSION_NOT_FOUND', 'session not found');
  }
}

export function assertOwner(session: SessionRecord, email: string): void {
  if (session.owner_email !== email) throw new CleanroomError('NOT_SESSION_OWNER', `only the session owner can do this: ask ${session.owner_email}`);
}

export function assertActive(session: SessionRecord): void {
  if (session.status !== 'ACTIVE') throw new CleanroomError('SESSION_CLOSED', 'the session is closed and accepts no changes');
}

/**
 * Closing is for the owner; closing a closed session changes nothing (null). The session's key
 * and dataset objects are then due for crypto-shredding (`shredded_at: null`, docs/architecture.md invariant 3).
 */
export function closeSession(session: SessionRecord, actor: string, now: string): SessionRecord | null {
  assertOwner(session, actor);
  if (session.status === 'CLOSED') return null;
  return { ...session, status: 'CLOSED', closed_at: now, updated_at: now, shredded_at: null };
}

/**
 * Records that a closed session's key and dataset objects are gone for good (null when there is
 * nothing to record: not closed, or already recorded).
 */
export function markShredded(session: SessionRecord, now: string): SessionRecord | null {
  if (session.status !== 'CLOSED' || session.shredded_at !== null) return null;
  return { ...session, shredded_at: now, updated_at: now };
}

export function addParticipant(session: SessionRecord, actor: string, email: string, now: string): SessionRecord {
  assertOwner(session, actor);
  assertActive(session);
  if (session.participant_emails.includes(email)) throw new CleanroomError('PARTICIPANT_EXISTS', `${email} is already a participant: nothing to do`);
  if (session.participants.length >= LIMITS.maxParticipants) {
    throw new CleanroomError('VALIDATION_FAILED', `a session has at most ${LIMITS.maxParticipants} participants`);
  }
  const participants = [...session.participants, { email, role: 'participant' as const, added_at: now, keys: null }];
  return withParticipants(session, participants, now);
}

export function removeParticipant(session: SessionRecord, actor: string, email: string, now: string): SessionRecord {
  assertOwner(session, actor);
  assertActive(session);
  if (email === session.owner_email) throw new CleanroomError('OWNER_CANNOT_LEAVE', 'the owner cannot be removed; close the session instead');
  if (!session.participant_emails.includes(email)) throw new CleanroomError('PARTICIPANT_NOT_FOUND', `${email} is not a participant (\`cleanroom session show ${session.id}\` lists them)`);
  return withParticipants(
    session,
    session.participants.filter((p) => p.email !== email),
    now,
  );
}

/** A participant sets (or replaces) their own public keys. */
export function registerKeys(session: SessionRecord, actor: string, keys: NonNullable<ParticipantRecord['keys']>, now: string): SessionRecord {
  assertActive(session);
  const participants = session.participants.map((p) => (p.email === actor ? { ...p, keys } : p));
  return withParticipants(session, participants, now);
}

function withParticipants(session: SessionRecord, participants: ParticipantRecord[], now: string): SessionRecord {
  return { ...session, participants, participant_emails: participants.map((p) => p.email), updated_at: now };
}

/** The API's view of a session: public keys are summarised by thumbprint, tokens never leave. */
export function toSessionView(session: SessionRecord): SessionView {
  const view: SessionView = {
    id: session.id,
    name: session.name,
    owner_email: session.owner_email,
    participants: session.participants.map(toParticipantView),
    config: { ...session.config },
    status: session.status,
    created_at: session.created_at,
    updated_at: session.updated_at,
    closed_at: session.closed_at,
  };
  if (session.migrated_from) view.migrated_from = session.migrated_from;
  return view;
}

export function toParticipantView(p: ParticipantRecord): ParticipantView {
  return {
    email: p.email,
    role: p.role,
    added_at: p.added_at,
    keys: p.keys ? { signing_kid: p.keys.signing_kid, encryption_kid: p.keys.encryption_kid, registered_at: p.keys.registered_at } : null,
  };
}
