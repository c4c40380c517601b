import { verifyAuditChain, type AuditEntry, type AuditHead } from '../../protocol/audit.ts';
import type { CleanroomApi } from './api-client.ts';
import { TransportError } from './errors.ts';

/** Why a session's audit log was not accepted. */
export type AuditLogProblem =
  /** An entry does not follow the one before it (sequence, previous hash or its own hash). */
  | 'broken_link'
  /** The head the API reports is not an entry of the chain it served (entries are missing). */
  | 'head_mismatch'
  /** The chain no longer holds the head this client saw before: rewritten or cut since. */
  | 'rewritten';

/** A verified log, or where and why it failed. */
export type AuditLog = { ok: true; entries: AuditEntry[]; head: AuditHead | null } | { ok: false; entries: AuditEntry[]; problem: AuditLogProblem; seq: number };

/** Options of {@link readAuditLog}. */
export interface ReadAuditLogOptions {
  /** The head this client saw on an earlier read: it must still be on the chain. */
  remembered?: AuditHead | null;
  /** Entries per request (1-200; default 200). */
  pageSize?: number;
}

/**
 * Reads a session's whole audit log page by page and verifies it (docs/architecture.md invariant
 * 9): an unbroken hash chain from the genesis, the API's head one of its entries, and the head
 * this client `remembered` still on it. API and transport failures throw as the API client does.
 */
export async function readAuditLog(api: CleanroomApi, sessionId: string, options: ReadAuditLogOptions = {}): Promise<AuditLog> {
  const limit = options.pageSize ?? 200;
  const entries: AuditEntry[] = [];
  let served: AuditHead | null = null;
  let after = 0;
  for (;;) {
    const page = await api.listAudit(sessionId, { after_seq: after, limit });
    // Actions newer than this client are hashed as sent: the chain covers them all the same.
    entries.push(...(page.entries as AuditEntry[]));
    served = page.head === null ? null : { seq: page.head.seq, hash: page.head.hash };
    if (page.next_after_seq === null) break;
    if (page.next_after_seq <= after || page.entries.length === 0) {
      throw new TransportError('UNEXPECTED_RESPONSE', `/api/tee/sessions/${sessionId}/audit`, 'the API returned an audit page cursor that does not advance');
    }
    after = page.next_after_seq;
  }
  const chain = await verifyAuditChain(entries);
  if (!chain.ok) return { ok: false, entries, problem: 'broken_link', seq: chain.seq };
  // The API reads its head before the entries, so the head is one of them (or the log is empty).
  if (!onChain(entries, served)) return { ok: false, entries, problem: 'head_mismatch', seq: served?.seq ?? 0 };
  const remembered = options.remembered ?? null;
  if (remembered !== null && !onChain(entries, remembered)) return { ok: false, entries, problem: 'rewritten', seq: remembered.seq };
  return { ok: true, entries, head: chain.head };
}

/** True when `head` is null for an empty chain, or names one of its entries exactly. */
function onChain(entries: readonly AuditEntry[], head: AuditHead | null): boolean {
  if (head === null) return entries.length === 0;
  const entry = entries[head.seq - 1];
  return entry !== undefined && entry.seq === head.seq && entry.hash === head.hash;
}
