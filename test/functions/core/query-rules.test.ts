import test from 'ava';
import { CleanroomError } from '../../../protocol/errors.ts';
import { QUERY_STATUSES, type QueryStatus } from '../../../protocol/query.ts';
import { TaskPayloadSchema } from '../../../protocol/task.ts';
import { exportJWK, generateKeyPair } from 'jose';
import * as v from 'valibot';
import { TRANSITIONS, applyWorkerEvent, assertTransition, coarseStats, fixedCode, proposeQuery, requiredApprovers } from '../../../functions/core/query-rules.ts';
import { TASK_EXPIRY_GRACE_SECONDS, attemptExpired, taskPayloadFor } from '../../../functions/core/query-task.ts';
import { selectInputs } from '../../../functions/core/query-inputs.ts';
import { QueryRecordSchema, type DatasetRecord, type ParticipantRecord, type QueryRecord, type SessionRecord } from '../../../functions/core/records.ts';

const NOW = '2026-01-01T00:00:00.000Z';
const EMAILS = ['a@example.com', 'b@example.com', 'c@example.com'];

/** Registered keys of each participant, generated at test time (public halves only). */
const KEYS = new Map<string, NonNullable<ParticipantRecord['keys']>>();
test.before(async () => {
  const pub = async (alg: 'ES256' | 'ECDH-ES') => {
    const { publicKey } = await generateKeyPair(alg, { crv: 'P-256', extractable: true });
    const { x, y } = await exportJWK(publicKey);
    return { kty: 'EC' as const, crv: 'P-256' as const, x: x!, y: y! };
  };
  for (const email of EMAILS) {
    const signing_jwk = { ...(await pub('ES256')), alg: 'ES256' as const, use: 'sig' as const };
    const encryption_jwk = { ...(await pub('ECDH-ES')), alg: 'ECDH-ES+A256KW' as const, use: 'enc' as const };
    KEYS.set(email, { signing_jwk, encryption_jwk, signing_kid: 's', encryption_kid: 'e', binding_token: 't', sub: 'x', registered_at: NOW });
  }
});

function session(policy: SessionRecord['config']['approval_policy'], status: SessionRecord['status'] = 'ACTIVE', withKeys: readonly string[] = EMAILS): SessionRecord {
  const emails = EMAILS;
  return {
    id: 's1',
    name: 's',
    owner_email: emails[0]!,
    participant_emails: emails,
    participants: emails.map((email, i) => ({
      email,
      role: i === 0 ? 'owner' : 'participant',
      added_at: NOW,
      keys: withKeys.includes(email) ? KEYS.get(email)! : null,
    })),
    config: { allow_cross_party_joins: false, approval_policy: policy },
    status,
    created_at: NOW,
    updated_at: NOW,
    closed_at: null,
    version: 1,
    audit_head: { seq: 1, hash: '0'.repeat(64) },
  };
}

/** A dataset record of session s1 named `table`. */
function dataset(table: string, overrides: Partial<DatasetRecord> = {}): DatasetRecord {
  const id = overrides.id ?? crypto.randomUUID();
  return {
    id,
    session_id: 's1',
    owner_email: 'a@example.com',
    table,
    format: 'csv',
    schema: [{ name: 'email', type: 'VARCHAR' }],
    row_count: 3,
    ciphertext_bytes: 100,
    ciphertext_sha256: 'a'.repeat(64),
    wrapped_key: 'h.k.i.c.t',
    session_key_thumbprint: 'T'.repeat(43),
    object_key: `datasets/s1/${id}.crds`,
    created_at: NOW,
    ...overrides,
  };
}

async function query(policy: SessionRecord['config']['approval_policy'] = 'none', proposer = 'b@example.com', sql = 'SELECT 1', datasets: DatasetRecord[] = []): Promise<QueryRecord> {
  const { next } = await proposeQuery(session(policy), proposer, { sql }, crypto.randomUUID(), NOW, datasets);
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
  t.deepEqual(
    QUERY_STATUSES.filter((s: QueryStatus) => TRANSITIONS[s].includes('RUNNING')),
    ['QUEUED'],
  );
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
  const error = await t.throwsAsync(proposeQuery(session('none', 'CLOSED'), 'a@example.com', { sql: 'x' }, crypto.randomUUID(), NOW, []));
  t.is((error as CleanroomError).code, 'SESSION_CLOSED');
});

test('propose: every recipient needs registered keys (RECIPIENT_KEY_MISSING); their encryption keys are fixed in the record', async (t) => {
  const onlyA = session('none', 'ACTIVE', ['a@example.com']);
  const missing = await t.throwsAsync(proposeQuery(onlyA, 'a@example.com', { sql: 'x', recipients: ['a@example.com', 'c@example.com'] }, crypto.randomUUID(), NOW, []));
  t.is((missing as CleanroomError).code, 'RECIPIENT_KEY_MISSING');
  // The proposer is the default recipient; a proposer without keys cannot receive the result either.
  const proposer = await t.throwsAsync(proposeQuery(onlyA, 'b@example.com', { sql: 'x' }, crypto.randomUUID(), NOW, []));
  t.is((proposer as CleanroomError).code, 'RECIPIENT_KEY_MISSING');
  // Someone without keys who is not a recipient does not matter.
  const { next } = await proposeQuery(onlyA, 'b@example.com', { sql: 'x', recipients: ['a@example.com'] }, crypto.randomUUID(), NOW, []);
  t.deepEqual(next.recipient_keys, [{ email: 'a@example.com', encryption_jwk: KEYS.get('a@example.com')!.encryption_jwk }]);
  // NOT_A_RECIPIENT is checked first: an outsider has no keys either.
  const outsider = await t.throwsAsync(proposeQuery(onlyA, 'a@example.com', { sql: 'x', recipients: ['z@example.com'] }, crypto.randomUUID(), NOW, []));
  t.is((outsider as CleanroomError).code, 'NOT_A_RECIPIENT');
});

test('inputs: the datasets whose table the SQL names as a whole word, in any case; no substrings, no other session', (t) => {
  const sales = dataset('sales');
  const ads = dataset('ads');
  const sales2024 = dataset('sales_2024');
  const foreign = dataset('crm', { session_id: 's2' });
  const all = [sales, ads, sales2024, foreign];
  const pick = (sql: string) =>
    selectInputs(
      sql,
      all.filter((d) => d.session_id === 's1'),
    ).map((i) => i.table);
  t.deepEqual(pick('SELECT COUNT(*) FROM Sales s JOIN "ADS" a ON a.email = s.email'), ['sales', 'ads']);
  t.deepEqual(pick('SELECT * FROM sales_2024'), ['sales_2024']);
  t.deepEqual(pick('SELECT * FROM salesforce, my_ads, adsx'), []);
  t.deepEqual(pick('SELECT sales.email FROM sales\nWHERE 1'), ['sales']);
  t.deepEqual(selectInputs('SELECT 1', []), []);
  t.deepEqual(selectInputs('SELECT * FROM sales', [sales]), [{ dataset_id: sales.id, table: 'sales' }]);
});

test("propose: inputs are the session's datasets the SQL names, fixed in the record and its audit entry", async (t) => {
  const sales = dataset('sales');
  const ads = dataset('ads');
  const other = dataset('sales', { session_id: 'elsewhere' });
  const { next, audit } = await proposeQuery(session('none'), 'a@example.com', { sql: 'SELECT COUNT(*) FROM sales' }, crypto.randomUUID(), NOW, [sales, ads, other]);
  t.deepEqual(next.inputs, [{ dataset_id: sales.id, table: 'sales' }]);
  t.is(audit.details.inputs, sales.id);
  t.true(v.is(QueryRecordSchema, { ...next, version: 1 }));
});

test('worker events: only our closed set of codes survives; stats carry no row count and are rounded up to seconds', (t) => {
  t.is(fixedCode('QUERY_TIMEOUT'), 'QUERY_TIMEOUT');
  for (const other of [undefined, '', 'VALUE_ALICE', 'toString', '__proto__', 'constructor']) t.is(fixedCode(other), 'QUERY_FAILED', String(other));
  t.deepEqual(coarseStats({ bytes: 7, elapsed_ms: 0 }), { rows: null, bytes: 7, elapsed_ms: 0 });
  t.deepEqual(coarseStats({ bytes: 7, elapsed_ms: 1000 }), { rows: null, bytes: 7, elapsed_ms: 1000 });
  t.deepEqual(coarseStats({ bytes: 7, elapsed_ms: 1000.5 }), { rows: null, bytes: 7, elapsed_ms: 2000 });
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
  const payload = taskPayloadFor(queued, 3600, []);
  t.true(v.is(TaskPayloadSchema, payload));
  t.deepEqual(payload, taskPayloadFor(structuredClone(queued), 3600, []));
  t.like(payload, { jti: queued.task_id!, iat: Date.parse('2026-01-01T00:00:10Z') / 1000, exp: Date.parse('2026-01-01T01:00:10Z') / 1000, attempt: 2 });
  const exp = payload.exp * 1000;
  t.false(attemptExpired(queued, 3600, new Date(exp + TASK_EXPIRY_GRACE_SECONDS * 1000)));
  t.true(attemptExpired(queued, 3600, new Date(exp + TASK_EXPIRY_GRACE_SECONDS * 1000 + 1000)));
  t.throws(() => taskPayloadFor({ ...queued, status: 'APPROVED' }, 3600, []), { instanceOf: TypeError });
});

test("task payload: carries the inputs resolved from the dataset records and the recipients' keys fixed at proposal", async (t) => {
  const sales = dataset('sales');
  const ads = dataset('ads', { format: 'parquet', row_count: 0 });
  const proposed = await query('none', 'a@example.com', 'SELECT * FROM ads JOIN sales USING (email)', [sales, ads]);
  const queued: QueryRecord = { ...proposed, recipients: ['a@example.com'], status: 'QUEUED', attempt: 1, task_id: crypto.randomUUID(), queued_at: NOW };
  // Other datasets of the session may be passed along; only the query's inputs are used.
  const payload = taskPayloadFor(queued, 3600, [dataset('unused'), ads, sales]);
  t.true(v.is(TaskPayloadSchema, payload));
  t.deepEqual(
    payload.inputs?.map((i) => i.dataset_id),
    [sales.id, ads.id],
  );
  const { id: _id, session_id: _sid, created_at: _at, ...adsInput } = ads;
  t.deepEqual(payload.inputs?.[1], { dataset_id: ads.id, ...adsInput });
  t.deepEqual(payload.recipient_keys, [{ email: 'a@example.com', encryption_jwk: KEYS.get('a@example.com')!.encryption_jwk }]);
  t.deepEqual(payload, taskPayloadFor(structuredClone(queued), 3600, [sales, ads]));
  // A record the query reads that the store no longer has: never a task without it.
  t.is((t.throws(() => taskPayloadFor(queued, 3600, [sales])) as CleanroomError).code, 'INTERNAL');
  // A query from before datasets keeps its old task shape.
  const { inputs: _i, recipient_keys: _k, ...legacy } = queued;
  const old = taskPayloadFor(legacy, 3600, []);
  t.false('inputs' in old);
  t.false('recipient_keys' in old);
});
