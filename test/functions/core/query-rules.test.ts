import test from 'ava';
import { CleanroomError } from '../../../protocol/errors.ts';
import { QUERY_STATUSES, type QueryStatus } from '../../../protocol/query.ts';
import { TaskPayloadSchema } from '../../../protocol/task.ts';
import * as v from 'valibot';
import {
  TRANSITIONS,
  applyWorkerEvent,
  assertTransition,
  coarseStats,
  fixedCode,
  proposeQuery,
  requiredApprovers,
} from '../../../functions/core/query-rules.ts';
import { TASK_EXPIRY_GRACE_SECONDS, attemptExpired, taskPayloadFor } from '../../../functions/core/query-task.ts';
import { QueryRecordSchema, type QueryRecord, type SessionRecord } from '../../../functions/core/records.ts';

const NOW = '2026-01-01T00:00:00.000Z';

function session(policy: SessionRecord['config']['approval_policy'], status: SessionRecord['status'] = 'ACTIVE'): SessionRecord {
  const emails = ['a@example.com', 'b@example.com', 'c@example.com'];
  return {
    id: 's1',
    name: 's',
    owner_email: emails[0]!,
    participant_emails: emails,
    participants: emails.map((email, i) => ({ email, role: i === 0 ? 'owner' : 'participant', added_at: NOW, keys: null })),
    config: { allow_cross_party_joins: false, approval_policy: policy },
    status,
    created_at: NOW,
    updated_at: NOW,
    closed_at: null,
    version: 1,
    audit_head: { seq: 1, hash: '0'.repeat(64) },
  };
}

async function query(policy: SessionRecord['config']['approval_policy'] = 'none', proposer = 'b@example.com'): Promise<QueryRecord> {
  const { next } = await proposeQuery(session(policy), proposer, { sql: 'SELECT 1' }, crypto.randomUUID(), NOW);
  return { ...next, version: 1 };
}

test('transition table: the final statuses have no way out; everything off the table is ILLEGAL_TRANSITION', (t) => {
  for (const final of ['SUCCEEDED', 'FAILED', 'REJECTED', 'CANCELLED', 'EXPIRED'] as const) t.deepEqual(TRANSITIONS[final], []);
  for (const from of QUERY_STATUSES) {
    for (const to of QUERY_STATUSES) {
      const allowed = TRANSITIONS[from].includes(to);
      const error = allowed ? undefined : t.throws(() => assertTransition(from, to));
      if (!allowed) t.is((error as CleanroomError).code, 'ILLEGAL_TRANSITION', `${from} → ${to}`);
    }
  }
  // Nothing goes back to approval, and nothing runs without having been queued.
  t.false(QUERY_STATUSES.some((s) => TRANSITIONS[s].includes('PENDING_APPROVAL')));
  t.deepEqual(QUERY_STATUSES.filter((s: QueryStatus) => TRANSITIONS[s].includes('RUNNING')), ['QUEUED']);
});

test('approvers by policy: none → the proposer alone (never nobody); all_participants and dataset_owners → everyone now', (t) => {
  t.deepEqual(requiredApprovers(session('none'), 'b@example.com'), ['b@example.com']);
  t.deepEqual(requiredApprovers(session('all_participants'), 'b@example.com'), ['a@example.com', 'b@example.com', 'c@example.com']);
  t.deepEqual(requiredApprovers(session('dataset_owners'), 'b@example.com'), ['a@example.com', 'b@example.com', 'c@example.com']);
});

test('propose: the record parses, recipients default to the proposer, a closed session is SESSION_CLOSED', async (t) => {
  const q = await query('all_participants');
  t.true(v.is(QueryRecordSchema, q));
  t.deepEqual(q.recipients, ['b@example.com']);
  t.is(q.status, 'PENDING_APPROVAL');
  t.is((await query('none')).status, 'APPROVED');
  const error = await t.throwsAsync(proposeQuery(session('none', 'CLOSED'), 'a@example.com', { sql: 'x' }, crypto.randomUUID(), NOW));
  t.is((error as CleanroomError).code, 'SESSION_CLOSED');
});

test('worker events: only our closed set of codes survives; stats lose the row count and are rounded up to seconds', (t) => {
  t.is(fixedCode('QUERY_TIMEOUT'), 'QUERY_TIMEOUT');
  for (const other of [undefined, '', 'VALUE_ALICE', 'toString', '__proto__', 'constructor']) t.is(fixedCode(other), 'QUERY_FAILED', String(other));
  t.deepEqual(coarseStats({ rows: 12345, bytes: 7, elapsed_ms: 0 }), { rows: null, bytes: 7, elapsed_ms: 0 });
  t.deepEqual(coarseStats({ rows: 1, bytes: 7, elapsed_ms: 1000 }), { rows: null, bytes: 7, elapsed_ms: 1000 });
  t.deepEqual(coarseStats({ rows: 1, bytes: 7, elapsed_ms: 1000.5 }), { rows: null, bytes: 7, elapsed_ms: 2000 });
});

test('worker events: the same event again is null (no change); the table decides the rest', async (t) => {
  const queued: QueryRecord = { ...(await query()), status: 'QUEUED', attempt: 1, task_id: crypto.randomUUID(), queued_at: NOW };
  const event = (kind: 'RUNNING' | 'SUCCEEDED' | 'FAILED') => ({ session_id: 's1', query_id: queued.id, task_id: queued.task_id!, event: kind, at: NOW });
  const running = applyWorkerEvent(queued, event('RUNNING'), NOW)!;
  t.is(running.next.status, 'RUNNING');
  t.is(applyWorkerEvent({ ...running.next, version: 2 }, event('RUNNING'), NOW), null);
  t.is((t.throws(() => applyWorkerEvent(queued, event('SUCCEEDED'), NOW)) as CleanroomError).code, 'ILLEGAL_TRANSITION');
  t.is(applyWorkerEvent(queued, event('FAILED'), NOW)!.next.error_code, 'QUERY_FAILED');
});

test('task payload: a function of the record alone, valid, exp = queued_at + TTL; the attempt is dead only past exp and the grace', async (t) => {
  const queued: QueryRecord = { ...(await query()), status: 'QUEUED', attempt: 2, task_id: crypto.randomUUID(), queued_at: '2026-01-01T00:00:10.900Z' };
  const payload = taskPayloadFor(queued, 3600);
  t.true(v.is(TaskPayloadSchema, payload));
  t.deepEqual(payload, taskPayloadFor(structuredClone(queued), 3600));
  t.like(payload, { jti: queued.task_id!, iat: Date.parse('2026-01-01T00:00:10Z') / 1000, exp: Date.parse('2026-01-01T01:00:10Z') / 1000, attempt: 2 });
  const exp = payload.exp * 1000;
  t.false(attemptExpired(queued, 3600, new Date(exp + TASK_EXPIRY_GRACE_SECONDS * 1000)));
  t.true(attemptExpired(queued, 3600, new Date(exp + TASK_EXPIRY_GRACE_SECONDS * 1000 + 1000)));
  t.throws(() => taskPayloadFor({ ...queued, status: 'APPROVED' }, 3600), { instanceOf: TypeError });
});
