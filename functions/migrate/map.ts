import * as v from 'valibot';
import { nextAuditEntry, type AuditEntry } from '../../protocol/audit.ts';
import { sha256Hex } from '../../protocol/canonical-json.ts';
import { LIMITS, SessionIdSchema, type SessionStatus } from '../../protocol/session.ts';
import type { ParticipantRecord, SessionRecord } from '../core/records.ts';
import { DEFAULT_CONFIG } from '../core/session-rules.ts';
import { LegacyTeeSchema, legacyVm, type LegacyStatus, type LegacyVm } from './legacy.ts';

/** The legacy collection, and the prefix of `migrated_from`. */
export const LEGACY_COLLECTION = 'tees';
/** The actor of every migration audit entry. */
export const MIGRATION_ACTOR = 'migration';
/** Subcollection names the new layout owns; a legacy child collection of that name cannot be copied. */
export const RESERVED_SUBCOLLECTIONS: readonly string[] = ['audit'];

const STATUS_MAP: Record<LegacyStatus, SessionStatus> = {
  // Creation is instant now; a tee still booting its VM becomes a usable session.
  CREATING: 'ACTIVE',
  ACTIVE: 'ACTIVE',
  TERMINATED: 'CLOSED',
};

/** One legacy record as the driver read it: Firestore values already turned into JSON. */
export interface LegacyInput {
  id: string;
  data: Readonly<Record<string, unknown>>;
  /** Names of the record's subcollections (none for NDJSON rows). */
  subcollections: readonly string[];
}

export interface MapContext {
  /** The migration's time (ISO): `updated_at` and the audit entry's `at`. */
  now: string;
  /** Where the record came from, recorded in the audit entry. */
  source: 'firestore' | 'ndjson';
}

/** A record that maps cleanly: the session to create with its first audit entry. */
export interface MappedTee {
  kind: 'ok';
  id: string;
  legacyStatus: LegacyStatus;
  record: SessionRecord;
  auditEntry: AuditEntry;
  /** Subcollections to copy under the new session, same names. */
  subcollections: string[];
  vm: LegacyVm | null;
}

/** A record that is reported and not migrated, with every reason found. */
export interface OddTee {
  kind: 'odd';
  id: string;
  reasons: string[];
  vm: LegacyVm | null;
}

export type MapResult = MappedTee | OddTee;

/**
 * Maps one legacy tee to a migrated session (docs/architecture.md §10): VM fields dropped,
 * `terminated_at` → `closed_at`, `CREATING`/`ACTIVE` → `ACTIVE`, `TERMINATED` → `CLOSED`, emails
 * lowercased, the owner first, keys null (data was sealed to dead per-VM keys, so everyone
 * rejoins), secure config defaults, the legacy id kept. Its audit chain starts with one
 * `session.migrated` entry carrying the SHA-256 of the archived record.
 *
 * Anything it cannot map without guessing makes the record odd, with all the reasons at once.
 */
export async function mapLegacyTee(input: LegacyInput, context: MapContext): Promise<MapResult> {
  const { id, data } = input;
  const vm = legacyVm(data);
  const reasons: string[] = [];
  const odd = (): OddTee => ({ kind: 'odd', id, reasons, vm });

  if (!v.is(SessionIdSchema, id)) reasons.push('id: is not a valid session id ([A-Za-z0-9_-]{1,128})');
  for (const name of input.subcollections) {
    if (RESERVED_SUBCOLLECTIONS.includes(name)) reasons.push(`subcollection ${name}: collides with the new layout's ${name} subcollection`);
  }
  let archiveHash: string | null = null;
  try {
    archiveHash = await sha256Hex(archiveJson(data));
  } catch (error) {
    if (!(error instanceof TypeError)) throw error;
    reasons.push(`record: holds a value JSON cannot represent (${error.message})`);
  }

  const parsed = v.safeParse(LegacyTeeSchema, data, { abortEarly: false });
  if (!parsed.success) return { ...odd(), reasons: [...reasons, ...parsed.issues.map(issueReason)] };
  const tee = parsed.output;

  if (tee.id !== undefined && String(tee.id) !== id) reasons.push('id: the id field differs from the document id');
  if (tee.owner_email && tee.created_by && tee.owner_email !== tee.created_by) {
    reasons.push('owner_email: differs from created_by');
  }
  const owner = tee.owner_email ?? tee.created_by;
  if (!owner) reasons.push('owner_email: missing (and no created_by)');
  const closedAt = tee.terminated_at ?? null;
  if (tee.status === 'TERMINATED' && closedAt === null) reasons.push('terminated_at: missing on a TERMINATED tee');
  if (tee.status !== 'TERMINATED' && closedAt !== null) reasons.push(`terminated_at: set on a ${tee.status} tee`);
  if (closedAt !== null && closedAt < tee.created_at) reasons.push('terminated_at: earlier than created_at');
  const others = [...new Set(tee.participant_emails ?? [])].filter((e) => e !== owner);
  if (others.length + 1 > LIMITS.maxParticipants) reasons.push(`participant_emails: more than ${LIMITS.maxParticipants} participants`);
  if (reasons.length > 0 || !owner || archiveHash === null) return odd();

  const participants: ParticipantRecord[] = [owner, ...others].map((email, i) => ({
    email,
    role: i === 0 ? 'owner' : 'participant',
    // As far as the legacy record tells, everyone was there from the start.
    added_at: tee.created_at,
    keys: null,
  }));
  const migratedFrom = `${LEGACY_COLLECTION}/${id}`;
  const auditEntry = await nextAuditEntry(null, {
    session_id: id,
    at: context.now,
    actor: MIGRATION_ACTOR,
    action: 'session.migrated',
    details: {
      migrated_from: migratedFrom,
      source: context.source,
      legacy_status: tee.status,
      archived_record_sha256: archiveHash,
    },
  });
  const record: SessionRecord = {
    id,
    name: tee.name,
    owner_email: owner,
    participant_emails: participants.map((p) => p.email),
    participants,
    config: {
      allow_cross_party_joins: tee.allow_cross_party_joins ?? DEFAULT_CONFIG.allow_cross_party_joins,
      approval_policy: tee.approval_policy ?? DEFAULT_CONFIG.approval_policy,
    },
    status: STATUS_MAP[tee.status],
    created_at: tee.created_at,
    updated_at: context.now,
    closed_at: closedAt,
    version: 1,
    audit_head: { seq: auditEntry.seq, hash: auditEntry.hash },
    migrated_from: migratedFrom,
  };
  return { kind: 'ok', id, legacyStatus: tee.status, record, auditEntry, subcollections: [...input.subcollections], vm };
}

/**
 * A child document's data with its `tee_id` reference renamed to `session_id` (the id is kept,
 * so the value stays valid). Values are passed through untouched, Firestore types included.
 */
export function mapChildData<T>(data: Readonly<Record<string, T>>): { ok: true; data: Record<string, T> } | { ok: false; reason: string } {
  if (!Object.hasOwn(data, 'tee_id')) return { ok: true, data: { ...data } };
  const { tee_id: teeId, ...rest } = data;
  if (Object.hasOwn(rest, 'session_id') && rest.session_id !== teeId) {
    return { ok: false, reason: 'has both tee_id and a different session_id' };
  }
  return { ok: true, data: { ...rest, session_id: teeId as T } };
}

/**
 * Canonical JSON of an archived legacy record (RFC 8785). Unlike protocol's `canonicalJson`, which
 * only needs safe integers, legacy data may hold any finite number; ECMAScript's number-to-string
 * is exactly RFC 8785's number form. Throws `TypeError` on what JSON cannot represent (NaN).
 */
export function archiveJson(value: unknown): string {
  if (value === null || typeof value === 'boolean' || typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new TypeError(`non-finite number ${value}`);
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map(archiveJson).join(',')}]`;
  if (typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, x]) => x !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, x]) => `${JSON.stringify(k)}:${archiveJson(x)}`).join(',')}}`;
  }
  throw new TypeError(`unsupported value of type ${typeof value}`);
}

function issueReason(issue: v.BaseIssue<unknown>): string {
  const path = issue.path?.map((item) => String(item.key)).join('.') ?? 'record';
  if (issue.input === undefined) return `${path}: missing`;
  // strictObject reports an unknown key with the key as the last path item, expecting `never`.
  if (issue.type === 'strict_object' && issue.expected === 'never') return `${path}: unknown field (it would be lost by the migration)`;
  // Naming the unknown value helps the operator; picklists only, so no token ever lands here.
  if (issue.type === 'picklist') return `${path}: ${issue.message} (got ${issue.received})`;
  return `${path}: ${issue.message}`;
}
