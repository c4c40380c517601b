import * as v from 'valibot';
import { canonicalJson, sha256Hex } from './canonical-json.ts';

/** The `prev_hash` of a session's first audit entry. */
export const GENESIS_HASH = '0'.repeat(64);

/** Audit actions; one per kind of state change. */
export const AUDIT_ACTIONS = [
  'session.created',
  'session.closed',
  'session.migrated',
  'participant.added',
  'participant.removed',
  'participant.keys_registered',
  // The query lifecycle (docs/architecture.md §5): a query's entries share its session's chain.
  'query.proposed',
  'query.approved',
  'query.rejected',
  'query.queued',
  'query.cancelled',
  'query.expired',
  'query.running',
  'query.succeeded',
  'query.failed',
  // The confidential data path: metadata only (ids, table, hashes), never a key or a row.
  'dataset.registered',
  'session.shredded',
] as const;

const Hex64 = v.pipe(v.string(), v.regex(/^[0-9a-f]{64}$/));

/** One audit entry as stored and as served. `hash` covers every other field. */
export const AuditEntrySchema = v.strictObject({
  session_id: v.pipe(v.string(), v.minLength(1), v.maxLength(128)),
  seq: v.pipe(v.number(), v.integer(), v.minValue(1)),
  at: v.pipe(v.string(), v.isoTimestamp()),
  actor: v.pipe(v.string(), v.minLength(1), v.maxLength(320)),
  action: v.picklist(AUDIT_ACTIONS),
  details: v.record(v.string(), v.union([v.string(), v.number(), v.boolean(), v.null()])),
  prev_hash: Hex64,
  hash: Hex64,
});
export type AuditEntry = v.InferOutput<typeof AuditEntrySchema>;

/** The head of a session's chain: the last entry's sequence number and hash. */
export interface AuditHead {
  seq: number;
  hash: string;
}

/** The entry's hash: SHA-256 over the canonical JSON of every field but `hash`. */
export function auditEntryHash(entry: Omit<AuditEntry, 'hash'>): Promise<string> {
  const { session_id, seq, at, actor, action, details, prev_hash } = entry;
  return sha256Hex(canonicalJson({ session_id, seq, at, actor, action, details, prev_hash }));
}

/** Builds the entry that follows `head` (or starts the chain when `head` is null). */
export async function nextAuditEntry(head: AuditHead | null, fields: Pick<AuditEntry, 'session_id' | 'at' | 'actor' | 'action' | 'details'>): Promise<AuditEntry> {
  const unsigned = { ...fields, seq: (head?.seq ?? 0) + 1, prev_hash: head?.hash ?? GENESIS_HASH };
  return { ...unsigned, hash: await auditEntryHash(unsigned) };
}

/**
 * Checks that `entries` form an unbroken chain from the genesis (or from `from`, the head a client
 * saw before) and returns the new head. Returns `{ ok: false, seq }` at the first broken link.
 */
export async function verifyAuditChain(entries: readonly AuditEntry[], from: AuditHead | null = null): Promise<{ ok: true; head: AuditHead | null } | { ok: false; seq: number }> {
  let head = from;
  for (const entry of entries) {
    const expectedSeq = (head?.seq ?? 0) + 1;
    const expectedPrev = head?.hash ?? GENESIS_HASH;
    if (entry.seq !== expectedSeq || entry.prev_hash !== expectedPrev) return { ok: false, seq: entry.seq };
    if ((await auditEntryHash(entry)) !== entry.hash) return { ok: false, seq: entry.seq };
    head = { seq: entry.seq, hash: entry.hash };
  }
  return { ok: true, head };
}
