import test from 'ava';
import { compactVerify } from 'jose';
import * as v from 'valibot';
import { verifyAuditChain } from '../../../protocol/audit.ts';
import { TASK_TYP, TaskPayloadSchema, taskName } from '../../../protocol/task.ts';
import document from '../../../docs/openapi.json' with { type: 'json' };
import { TEST_WORKER_EMAIL, testApi, type TestApi } from '../../helpers/api.ts';

const OWNER = 'owner@example.com';
const BOB = 'bob@example.com';
const CAROL = 'carol@example.com';
const EVE = 'eve@example.com';
const WORKER = TEST_WORKER_EMAIL;
const SQL = "SELECT COUNT(*) FROM ads a JOIN sales s ON a.email = s.email WHERE s.note = 'literal-7741'";

let api: TestApi;
test.before(async () => {
  api = await testApi();
});
test.after.always(() => api.close());

type Policy = 'none' | 'all_participants' | 'dataset_owners';

/** A session of OWNER and `others`, every one of whom has registered keys (recipients must). */
async function session(t: TestApi, policy: Policy = 'all_participants', others: string[] = [BOB, CAROL]): Promise<string> {
  const res = await t.call('POST', '/api/tee/sessions', { as: OWNER, body: { name: 'q', participant_emails: others, approval_policy: policy } });
  if (res.status !== 201) throw new Error(`session: ${JSON.stringify(res.body)}`);
  for (const email of [OWNER, ...others]) await t.registerKeys(res.body.id, email);
  return res.body.id;
}

async function propose(t: TestApi, sid: string, body: unknown = { sql: SQL }, as = OWNER) {
  return t.call('POST', `/api/tee/sessions/${sid}/queries`, { as, body });
}

async function proposed(t: TestApi, sid: string, body: unknown = { sql: SQL }, as = OWNER): Promise<any> {
  const res = await propose(t, sid, body, as);
  if (res.status !== 201) throw new Error(`propose: ${JSON.stringify(res.body)}`);
  return res.body;
}

const act = (t: TestApi, sid: string, qid: string, op: 'approve' | 'reject' | 'cancel', as: string) => t.call('POST', `/api/tee/sessions/${sid}/queries/${qid}/${op}`, { as });

/**
 * A QUEUED query and its current task id (read from the store, as the worker gets it from its
 * task). In a session of policy none it is queued on proposal; otherwise BOB's approval is the
 * last one needed (sessions of OWNER and BOB).
 */
async function queuedQuery(t: TestApi, sid?: string): Promise<{ sid: string; qid: string; taskId: string }> {
  const id = sid ?? (await session(t, 'none'));
  const q = await proposed(t, id);
  if (q.status !== 'QUEUED') await act(t, id, q.id, 'approve', BOB);
  const stored = await t.store.getQuery(id, q.id);
  if (stored?.status !== 'QUEUED') throw new Error(`not queued: ${stored?.status}`);
  return { sid: id, qid: q.id, taskId: stored.task_id! };
}

function event(sid: string, qid: string, taskId: string, kind: 'RUNNING' | 'SUCCEEDED' | 'FAILED', extra: Record<string, unknown> = {}) {
  return { session_id: sid, query_id: qid, task_id: taskId, event: kind, at: new Date().toISOString(), ...extra };
}

/** A worker event report; `as: null` sends no token. */
const report = (t: TestApi, qid: string, body: unknown, as: string | null = WORKER) => t.call('POST', `/internal/v1/queries/${qid}/events`, { ...(as ? { as } : {}), body });

/** The session's audit actions after its creation and the key registrations of `session()`. */
async function auditActions(t: TestApi, sid: string): Promise<string[]> {
  const res = await t.call('GET', `/api/tee/sessions/${sid}/audit?limit=200`, { as: OWNER });
  return res.body.entries.map((e: any) => e.action).filter((a: string) => a !== 'participant.keys_registered');
}

/** Task payloads the queue received for `qid`, verified against the signer's public key. */
async function tasksOf(t: TestApi, qid: string) {
  const out = [];
  for (const task of t.queue.enqueued) {
    const { payload, protectedHeader } = await compactVerify(task.body, t.signer.publicKey, { algorithms: ['ES256'] });
    const parsed = v.parse(TaskPayloadSchema, JSON.parse(new TextDecoder().decode(payload)));
    if (parsed.query_id !== qid) continue;
    out.push({ name: task.name, header: protectedHeader, payload: parsed });
  }
  return out;
}

// --- Proposing

test("propose (all_participants): 201 PENDING_APPROVAL, approvers fixed, the proposal is the proposer's approval, nothing queued", async (t) => {
  const sid = await session(api);
  const res = await propose(api, sid);
  t.is(res.status, 201);
  t.is(res.headers.get('location'), `/api/tee/sessions/${sid}/queries/${res.body.id}`);
  t.like(res.body, { session_id: sid, sql: SQL, proposer: OWNER, recipients: [OWNER], status: 'PENDING_APPROVAL', attempt: 0 });
  t.deepEqual(res.body.required_approvers, [OWNER, BOB, CAROL]);
  t.deepEqual(
    res.body.decisions.map((d: any) => [d.email, d.decision]),
    [[OWNER, 'approve']],
  );
  for (const field of ['approved_at', 'queued_at', 'started_at', 'finished_at', 'error_code', 'stats', 'result_ref']) t.is(res.body[field], null, field);
  for (const hidden of ['task_id', 'version', 'status_since']) t.false(Object.hasOwn(res.body, hidden), hidden);
  t.is((await tasksOf(api, res.body.id)).length, 0);
});

test('propose: the view has exactly the fields docs/openapi.json describes', async (t) => {
  const q = await proposed(api, await session(api));
  const schema = (document as any).components.schemas.QueryView;
  t.deepEqual(Object.keys(q).sort(), Object.keys(schema.properties).sort());
  t.deepEqual([...schema.required].sort(), Object.keys(schema.properties).sort());
});

test('propose (none): QUEUED at once with one signed task named taskName(query, 1) whose jti is the current task id', async (t) => {
  const sid = await session(api, 'none');
  const res = await propose(api, sid, { sql: SQL, recipients: [BOB, OWNER] });
  t.is(res.status, 201);
  t.like(res.body, { status: 'QUEUED', attempt: 1, required_approvers: [OWNER] });
  t.truthy(res.body.approved_at);
  t.truthy(res.body.queued_at);
  const tasks = await tasksOf(api, res.body.id);
  t.is(tasks.length, 1);
  const [task] = tasks;
  t.is(task!.name, await taskName(res.body.id, 1));
  t.deepEqual(task!.header, { alg: 'ES256', kid: api.signer.kid, typ: TASK_TYP });
  const stored = await api.store.getQuery(sid, res.body.id);
  t.like(task!.payload, { jti: stored!.task_id!, session_id: sid, query_id: res.body.id, attempt: 1, sql: SQL, recipients: [BOB, OWNER] });
  // The task outlives the queue's retry window: 24 h by default.
  t.is(task!.payload.exp - task!.payload.iat, 24 * 3600);
  t.deepEqual(await auditActions(api, sid), ['session.created', 'query.proposed', 'query.queued']);
});

test('propose (dataset_owners): until datasets exist, every participant must approve', async (t) => {
  const sid = await session(api, 'dataset_owners');
  const q = await proposed(api, sid);
  t.is(q.status, 'PENDING_APPROVAL');
  t.deepEqual(q.required_approvers, [OWNER, BOB, CAROL]);
});

test('propose: a sole participant under all_participants is its own approver: QUEUED', async (t) => {
  const sid = await session(api, 'all_participants', []);
  t.is((await proposed(api, sid)).status, 'QUEUED');
});

test('propose: recipients must take part (NOT_A_RECIPIENT), outsiders see no session, closed sessions take none', async (t) => {
  const sid = await session(api);
  const bad = await propose(api, sid, { sql: SQL, recipients: [BOB, EVE] });
  t.is(bad.status, 400);
  t.is(bad.body.error.code, 'NOT_A_RECIPIENT');
  const mixed = await proposed(api, sid, { sql: SQL, recipients: ['Bob@Example.com', BOB] });
  t.deepEqual(mixed.recipients, [BOB]);
  const outsider = await propose(api, sid, { sql: SQL }, EVE);
  t.is(outsider.status, 404);
  t.is(outsider.body.error.code, 'SESSION_NOT_FOUND');
  const missing = await propose(api, crypto.randomUUID());
  t.is(missing.body.error.code, 'SESSION_NOT_FOUND');
  await api.call('DELETE', `/api/tee/sessions/${sid}`, { as: OWNER });
  const closed = await propose(api, sid);
  t.is(closed.status, 409);
  t.is(closed.body.error.code, 'SESSION_CLOSED');
});

test('propose: every recipient must have registered keys, or 409 RECIPIENT_KEY_MISSING and nothing is stored', async (t) => {
  const res = await api.call('POST', '/api/tee/sessions', { as: OWNER, body: { name: 'q', participant_emails: [BOB, CAROL], approval_policy: 'none' } });
  const sid = res.body.id as string;
  await api.registerKeys(sid, OWNER);
  await api.registerKeys(sid, BOB);
  const withCarol = await propose(api, sid, { sql: SQL, recipients: [OWNER, CAROL] });
  t.is(withCarol.status, 409);
  t.is(withCarol.body.error.code, 'RECIPIENT_KEY_MISSING');
  // CAROL proposing for herself is the same: she is the default recipient.
  t.is((await propose(api, sid, { sql: SQL }, CAROL)).body.error.code, 'RECIPIENT_KEY_MISSING');
  t.deepEqual((await api.call('GET', `/api/tee/sessions/${sid}/queries`, { as: OWNER })).body.queries, []);
  // Only recipients need keys: CAROL may propose a query for others who have them.
  t.is((await propose(api, sid, { sql: SQL, recipients: [OWNER, BOB] }, CAROL)).status, 201);
  // Once she has registered keys, she can be a recipient.
  await api.registerKeys(sid, CAROL);
  t.is((await propose(api, sid, { sql: SQL, recipients: [OWNER, CAROL] })).status, 201);
});

const invalidProposals: Array<[string, unknown]> = [
  ['no sql', {}],
  ['empty sql', { sql: '' }],
  ['sql not a string', { sql: 42 }],
  ['sql too long', { sql: 'x'.repeat(100_001) }],
  ['recipients empty', { sql: SQL, recipients: [] }],
  ['recipient not an email', { sql: SQL, recipients: ['nope'] }],
  ['recipients not an array', { sql: SQL, recipients: BOB }],
  ['unknown field', { sql: SQL, status: 'APPROVED' }],
  ['approvals smuggled in', { sql: SQL, decisions: [{ email: BOB, decision: 'approve' }] }],
  ['body is an array', [SQL]],
  ['body is null', null],
];
for (const [label, body] of invalidProposals) {
  test(`propose: ${label} → 4xx, never 5xx`, async (t) => {
    const sid = await session(api);
    const res = await propose(api, sid, body);
    t.true(res.status >= 400 && res.status < 500, `${res.status}`);
    t.true(['VALIDATION_FAILED', 'PAYLOAD_TOO_LARGE'].includes(res.body.error.code), res.body.error.code);
  });
}

// --- Approving, rejecting, cancelling

test('approve: each required approver in turn; the last one queues the query and one task is enqueued; the chain verifies', async (t) => {
  const sid = await session(api);
  const q = await proposed(api, sid);
  const first = await act(api, sid, q.id, 'approve', BOB);
  t.is(first.status, 200);
  t.is(first.body.status, 'PENDING_APPROVAL');
  t.deepEqual(
    first.body.decisions.map((d: any) => d.email),
    [OWNER, BOB],
  );
  t.is((await tasksOf(api, q.id)).length, 0);
  const last = await act(api, sid, q.id, 'approve', CAROL);
  t.is(last.status, 200);
  t.like(last.body, { status: 'QUEUED', attempt: 1 });
  t.truthy(last.body.approved_at);
  t.is((await tasksOf(api, q.id)).length, 1);
  t.deepEqual(await auditActions(api, sid), ['session.created', 'query.proposed', 'query.approved', 'query.approved', 'query.queued']);
  const audit = await api.call('GET', `/api/tee/sessions/${sid}/audit`, { as: BOB });
  t.deepEqual(await verifyAuditChain(audit.body.entries), { ok: true, head: audit.body.head });
});

test('approve: deciding twice is ALREADY_DECIDED (the proposer has decided by proposing); after the outcome, ILLEGAL_TRANSITION', async (t) => {
  const sid = await session(api);
  const q = await proposed(api, sid);
  const own = await act(api, sid, q.id, 'approve', OWNER);
  t.is(own.status, 409);
  t.is(own.body.error.code, 'ALREADY_DECIDED');
  t.is((await act(api, sid, q.id, 'approve', BOB)).status, 200);
  t.is((await act(api, sid, q.id, 'approve', BOB)).body.error.code, 'ALREADY_DECIDED');
  t.is((await act(api, sid, q.id, 'reject', BOB)).body.error.code, 'ALREADY_DECIDED');
  t.is((await act(api, sid, q.id, 'approve', CAROL)).body.status, 'QUEUED');
  const late = await proposed(api, sid);
  await act(api, sid, late.id, 'reject', BOB);
  const afterReject = await act(api, sid, late.id, 'approve', CAROL);
  t.is(afterReject.status, 409);
  t.is(afterReject.body.error.code, 'ILLEGAL_TRANSITION');
});

test('reject: one required approver ends it: REJECTED, finished, never queued', async (t) => {
  const sid = await session(api);
  const q = await proposed(api, sid);
  const res = await act(api, sid, q.id, 'reject', CAROL);
  t.is(res.status, 200);
  t.is(res.body.status, 'REJECTED');
  t.truthy(res.body.finished_at);
  t.deepEqual(
    res.body.decisions.map((d: any) => [d.email, d.decision]),
    [
      [OWNER, 'approve'],
      [CAROL, 'reject'],
    ],
  );
  t.is((await tasksOf(api, q.id)).length, 0);
  t.is((await act(api, sid, q.id, 'cancel', OWNER)).body.error.code, 'ILLEGAL_TRANSITION');
});

test('approve/reject: a participant added after the proposal is not an approver (FORBIDDEN); outsiders and unknown queries are 404', async (t) => {
  const sid = await session(api);
  const q = await proposed(api, sid);
  await api.call('POST', `/api/tee/sessions/${sid}/participants`, { as: OWNER, body: { email: EVE } });
  for (const op of ['approve', 'reject'] as const) {
    const late = await act(api, sid, q.id, op, EVE);
    t.is(late.status, 403);
    t.is(late.body.error.code, 'FORBIDDEN');
  }
  const other = await session(api);
  const cases: Array<[string, string, string, string]> = [
    ['outsider', sid, q.id, 'stranger@example.com'],
    ['unknown query', sid, crypto.randomUUID(), BOB],
    ['malformed query id', sid, 'not-a-uuid', BOB],
    ['query of another session', other, q.id, BOB],
    ['unknown session', crypto.randomUUID(), q.id, BOB],
  ];
  for (const [label, s, qid, as] of cases) {
    for (const op of ['approve', 'reject', 'cancel'] as const) {
      const res = await act(api, s, qid, op, as);
      t.is(res.status, 404, `${label} ${op}`);
      t.is(res.body.error.code, label === 'outsider' || label === 'unknown session' ? 'SESSION_NOT_FOUND' : 'QUERY_NOT_FOUND', `${label} ${op}`);
    }
    const get = await api.call('GET', `/api/tee/sessions/${s}/queries/${qid}`, { as });
    t.is(get.status, 404, `${label} get`);
  }
});

test('cancel: by the proposer or the session owner while not started; anyone else FORBIDDEN; twice ILLEGAL_TRANSITION', async (t) => {
  const sid = await session(api);
  const byBob = await proposed(api, sid, { sql: SQL }, BOB);
  const other = await act(api, sid, byBob.id, 'cancel', CAROL);
  t.is(other.status, 403);
  t.is(other.body.error.code, 'FORBIDDEN');
  const owner = await act(api, sid, byBob.id, 'cancel', OWNER);
  t.is(owner.status, 200);
  t.is(owner.body.status, 'CANCELLED');
  t.truthy(owner.body.finished_at);
  const again = await act(api, sid, byBob.id, 'cancel', BOB);
  t.is(again.status, 409);
  t.is(again.body.error.code, 'ILLEGAL_TRANSITION');
  const mine = await proposed(api, sid, { sql: SQL }, BOB);
  t.is((await act(api, sid, mine.id, 'cancel', BOB)).body.status, 'CANCELLED');
});

test("cancel while QUEUED: CANCELLED, and the worker's RUNNING report for it is refused so it never runs", async (t) => {
  const { sid, qid, taskId } = await queuedQuery(api);
  const res = await act(api, sid, qid, 'cancel', OWNER);
  t.is(res.body.status, 'CANCELLED');
  const running = await report(api, qid, event(sid, qid, taskId, 'RUNNING'));
  t.is(running.status, 409);
  t.is(running.body.error.code, 'ILLEGAL_TRANSITION');
  t.is((await api.call('GET', `/api/tee/sessions/${sid}/queries/${qid}`, { as: OWNER })).body.status, 'CANCELLED');
});

test('cancel after the query started is ILLEGAL_TRANSITION', async (t) => {
  const { sid, qid, taskId } = await queuedQuery(api);
  t.is((await report(api, qid, event(sid, qid, taskId, 'RUNNING'))).status, 200);
  const res = await act(api, sid, qid, 'cancel', OWNER);
  t.is(res.status, 409);
  t.is(res.body.error.code, 'ILLEGAL_TRANSITION');
});

// --- Worker events

test('events: RUNNING then SUCCEEDED; GET shows timings, coarse stats without the row count, and the result reference', async (t) => {
  const { sid, qid, taskId } = await queuedQuery(api);
  const running = await report(api, qid, event(sid, qid, taskId, 'RUNNING'));
  t.deepEqual(running.body, { query_id: qid, status: 'RUNNING', applied: true });
  // A row count has no place in an event: the control plane must not learn it (docs/architecture.md §2).
  const counted = await report(api, qid, event(sid, qid, taskId, 'SUCCEEDED', { stats: { rows: 4242, bytes: 1024, elapsed_ms: 1234.5 }, result_ref: 'results/abc' }));
  t.is(counted.status, 400);
  const done = await report(api, qid, event(sid, qid, taskId, 'SUCCEEDED', { stats: { bytes: 1024, elapsed_ms: 1234.5 }, result_ref: 'results/abc' }));
  t.deepEqual(done.body, { query_id: qid, status: 'SUCCEEDED', applied: true });
  const view = (await api.call('GET', `/api/tee/sessions/${sid}/queries/${qid}`, { as: BOB })).body;
  t.like(view, { status: 'SUCCEEDED', error_code: null, result_ref: 'results/abc' });
  t.deepEqual(view.stats, { rows: null, bytes: 1024, elapsed_ms: 2000 });
  for (const field of ['created_at', 'approved_at', 'queued_at', 'started_at', 'finished_at']) t.truthy(Date.parse(view[field]), field);
  t.true(view.started_at <= view.finished_at);
  t.deepEqual((await auditActions(api, sid)).slice(-2), ['query.running', 'query.succeeded']);
});

test('events: repeats are 200 with applied false; a transition the table forbids is ILLEGAL_TRANSITION', async (t) => {
  const { sid, qid, taskId } = await queuedQuery(api);
  const early = await report(api, qid, event(sid, qid, taskId, 'SUCCEEDED'));
  t.is(early.status, 409);
  t.is(early.body.error.code, 'ILLEGAL_TRANSITION');
  await report(api, qid, event(sid, qid, taskId, 'RUNNING'));
  t.deepEqual((await report(api, qid, event(sid, qid, taskId, 'RUNNING'))).body, { query_id: qid, status: 'RUNNING', applied: false });
  await report(api, qid, event(sid, qid, taskId, 'SUCCEEDED'));
  t.deepEqual((await report(api, qid, event(sid, qid, taskId, 'SUCCEEDED'))).body, { query_id: qid, status: 'SUCCEEDED', applied: false });
  const flip = await report(api, qid, event(sid, qid, taskId, 'FAILED', { error_code: 'QUERY_FAILED' }));
  t.is(flip.status, 409);
  t.is(flip.body.error.code, 'ILLEGAL_TRANSITION');
  const back = await report(api, qid, event(sid, qid, taskId, 'RUNNING'));
  t.is(back.body.error.code, 'ILLEGAL_TRANSITION');
});

test('events: FAILED from QUEUED (refused before start) and from RUNNING keep fixed codes only', async (t) => {
  const a = await queuedQuery(api);
  const refused = await report(api, a.qid, event(a.sid, a.qid, a.taskId, 'FAILED', { error_code: 'POLICY_VIOLATION' }));
  t.deepEqual(refused.body, { query_id: a.qid, status: 'FAILED', applied: true });
  t.is((await api.call('GET', `/api/tee/sessions/${a.sid}/queries/${a.qid}`, { as: OWNER })).body.error_code, 'POLICY_VIOLATION');

  // An uppercase word of the worker's choosing could carry a value: only our codes are kept.
  const b = await queuedQuery(api);
  await report(api, b.qid, event(b.sid, b.qid, b.taskId, 'RUNNING'));
  await report(api, b.qid, event(b.sid, b.qid, b.taskId, 'FAILED', { error_code: 'SECRET_VALUE_ALICE' }));
  const view = (await api.call('GET', `/api/tee/sessions/${b.sid}/queries/${b.qid}`, { as: OWNER })).body;
  t.is(view.error_code, 'QUERY_FAILED');
  t.false(JSON.stringify(await api.call('GET', `/api/tee/sessions/${b.sid}/audit`, { as: OWNER })).includes('ALICE'));

  const c = await queuedQuery(api);
  await report(api, c.qid, event(c.sid, c.qid, c.taskId, 'FAILED'));
  t.is((await api.call('GET', `/api/tee/sessions/${c.sid}/queries/${c.qid}`, { as: OWNER })).body.error_code, 'QUERY_FAILED');
});

test('events: an event of another task (a superseded attempt) is ignored: 200, applied false, nothing changes', async (t) => {
  const { sid, qid } = await queuedQuery(api);
  const before = await api.store.getQuery(sid, qid);
  for (const kind of ['RUNNING', 'SUCCEEDED', 'FAILED'] as const) {
    const res = await report(api, qid, event(sid, qid, crypto.randomUUID(), kind));
    t.is(res.status, 200);
    t.deepEqual(res.body, { query_id: qid, status: 'QUEUED', applied: false });
  }
  t.deepEqual(await api.store.getQuery(sid, qid), before);
});

test("events: only the worker may report: no token 401, a participant's token 403, and nothing changes", async (t) => {
  const { sid, qid, taskId } = await queuedQuery(api);
  const body = event(sid, qid, taskId, 'RUNNING');
  const none = await report(api, qid, body, null);
  t.is(none.status, 401);
  t.is(none.body.error.code, 'UNAUTHENTICATED');
  for (const as of [OWNER, BOB, 'Worker@cleanroom.test.evil.com']) {
    const res = await report(api, qid, body, as);
    t.is(res.status, 403, as);
    t.is(res.body.error.code, 'FORBIDDEN', as);
  }
  const reconcile = await api.call('POST', '/internal/v1/reconcile', { as: OWNER });
  t.is(reconcile.status, 403);
  t.is((await api.call('POST', '/internal/v1/reconcile')).status, 401);
  t.is((await api.store.getQuery(sid, qid))!.status, 'QUEUED');
  // The worker's own identity, whatever the case of its email, is accepted.
  t.is((await report(api, qid, body, WORKER.toUpperCase())).status, 200);
});

test('events: unknown queries are QUERY_NOT_FOUND; malformed events are 400, never 5xx', async (t) => {
  const { sid, qid, taskId } = await queuedQuery(api);
  const unknown = crypto.randomUUID();
  const missing = await report(api, unknown, event(sid, unknown, taskId, 'RUNNING'));
  t.is(missing.status, 404);
  t.is(missing.body.error.code, 'QUERY_NOT_FOUND');
  const wrongSession = await report(api, qid, event(crypto.randomUUID(), qid, taskId, 'RUNNING'));
  t.is(wrongSession.body.error.code, 'QUERY_NOT_FOUND');
  const malformed: unknown[] = [
    { ...event(sid, qid, taskId, 'RUNNING'), query_id: crypto.randomUUID() },
    { ...event(sid, qid, taskId, 'RUNNING'), event: 'CANCELLED' },
    { ...event(sid, qid, taskId, 'FAILED'), error_code: 'duckdb said: value alice@example.com' },
    { ...event(sid, qid, taskId, 'FAILED'), message: 'engine text' },
    { ...event(sid, qid, taskId, 'SUCCEEDED'), stats: { rows: -1, bytes: 0, elapsed_ms: 0 } },
    { ...event(sid, qid, taskId, 'RUNNING'), task_id: 'x' },
    { ...event(sid, qid, taskId, 'RUNNING'), at: 'yesterday' },
    [],
    null,
    'RUNNING',
  ];
  for (const body of malformed) {
    const res = await report(api, qid, body);
    t.is(res.status, 400, JSON.stringify(body));
    t.is(res.body.error.code, 'VALIDATION_FAILED', JSON.stringify(body));
  }
  const badPath = await report(api, 'not-a-uuid', event(sid, qid, taskId, 'RUNNING'));
  t.is(badPath.status, 404);
  const raw = await api.call('POST', `/internal/v1/queries/${qid}/events`, { as: WORKER, raw: '{"event":', headers: { 'content-type': 'application/json' } });
  t.is(raw.body.error.code, 'MALFORMED_JSON');
  t.is((await api.store.getQuery(sid, qid))!.status, 'QUEUED');
});

// --- Races

test('race: the two last approvals at once: both answered, QUEUED, and exactly one task enqueued (5 rounds)', async (t) => {
  for (let round = 0; round < 5; round++) {
    const sid = await session(api);
    const q = await proposed(api, sid);
    const [bob, carol] = await Promise.all([act(api, sid, q.id, 'approve', BOB), act(api, sid, q.id, 'approve', CAROL)]);
    t.deepEqual([bob.status, carol.status], [200, 200], `round ${round}`);
    t.true([bob.body.status, carol.body.status].includes('QUEUED'), `round ${round}`);
    t.is((await api.store.getQuery(sid, q.id))!.status, 'QUEUED');
    const name = await taskName(q.id, 1);
    t.is(api.queue.calls.filter((c) => c.name === name).length, 1, `round ${round}: one enqueue`);
    t.deepEqual(
      (await auditActions(api, sid)).filter((a) => a === 'query.queued'),
      ['query.queued'],
    );
  }
});

test('race: approve against cancel: the query ends CANCELLED either way, at most one task, and it cannot start', async (t) => {
  for (let round = 0; round < 5; round++) {
    const sid = await session(api, 'all_participants', [BOB]);
    const q = await proposed(api, sid);
    const [approve, cancel] = await Promise.all([act(api, sid, q.id, 'approve', BOB), act(api, sid, q.id, 'cancel', OWNER)]);
    t.is(cancel.status, 200, `round ${round}`);
    t.true(approve.status === 200 || approve.body.error?.code === 'ILLEGAL_TRANSITION', `round ${round}: ${JSON.stringify(approve.body)}`);
    const stored = (await api.store.getQuery(sid, q.id))!;
    t.is(stored.status, 'CANCELLED');
    const tasks = await tasksOf(api, q.id);
    t.true(tasks.length <= 1);
    for (const task of tasks) {
      const res = await report(api, q.id, event(sid, q.id, task.payload.jti, 'RUNNING'));
      t.is(res.status, 409);
    }
    const audit = await api.call('GET', `/api/tee/sessions/${sid}/audit`, { as: OWNER });
    t.true((await verifyAuditChain(audit.body.entries)).ok);
  }
});

test("race: the worker's RUNNING against a cancel: exactly one of them wins", async (t) => {
  for (let round = 0; round < 5; round++) {
    const { sid, qid, taskId } = await queuedQuery(api);
    const [running, cancel] = await Promise.all([report(api, qid, event(sid, qid, taskId, 'RUNNING')), act(api, sid, qid, 'cancel', OWNER)]);
    const status = (await api.store.getQuery(sid, qid))!.status;
    if (status === 'RUNNING') {
      t.is(running.status, 200);
      t.is(cancel.body.error.code, 'ILLEGAL_TRANSITION');
    } else {
      t.is(status, 'CANCELLED');
      t.is(cancel.status, 200);
      t.is(running.status, 409);
    }
  }
});

// --- Listing

test('list: newest first, paged, filtered by status; participants only; bad parameters are 400', async (t) => {
  const sid = await session(api);
  const ids: string[] = [];
  for (let i = 0; i < 5; i++) ids.push((await proposed(api, sid, { sql: `SELECT ${i}` })).id);
  await act(api, sid, ids[1]!, 'cancel', OWNER);
  const seen: string[] = [];
  let cursor: string | null = null;
  do {
    const res: any = await api.call('GET', `/api/tee/sessions/${sid}/queries?limit=2${cursor ? `&cursor=${cursor}` : ''}`, { as: BOB });
    t.is(res.status, 200);
    t.true(res.body.queries.length <= 2);
    seen.push(...res.body.queries.map((q: any) => q.id));
    cursor = res.body.next_cursor;
  } while (cursor);
  t.deepEqual([...seen].sort(), [...ids].sort());
  t.is(new Set(seen).size, 5);
  const cancelled = await api.call('GET', `/api/tee/sessions/${sid}/queries?status=CANCELLED`, { as: OWNER });
  t.deepEqual(
    cancelled.body.queries.map((q: any) => q.id),
    [ids[1]],
  );
  for (const q of cancelled.body.queries) t.false(Object.hasOwn(q, 'task_id'));
  t.is((await api.call('GET', `/api/tee/sessions/${sid}/queries`, { as: EVE })).body.error.code, 'SESSION_NOT_FOUND');
  for (const qs of ['status=DONE', 'limit=0', 'limit=201', 'limit=abc', 'cursor=%%%', 'cursor=eyJ4IjoxfQ', 'sort=asc']) {
    const res = await api.call('GET', `/api/tee/sessions/${sid}/queries?${qs}`, { as: OWNER });
    t.is(res.status, 400, qs);
    t.true(['VALIDATION_FAILED', 'INVALID_CURSOR'].includes(res.body.error.code), qs);
  }
});

// --- Closing the session

test('close: queries not yet started are cancelled (audited), a running one finishes, and a leftover task cannot start', async (t) => {
  const sid = await session(api, 'all_participants', [BOB]);
  const running = await queuedQuery(api, sid);
  await report(api, running.qid, event(sid, running.qid, running.taskId, 'RUNNING'));
  const queued = await queuedQuery(api, sid);
  const pending = await proposed(api, sid);
  t.is(pending.status, 'PENDING_APPROVAL');
  const done = await queuedQuery(api, sid);
  await report(api, done.qid, event(sid, done.qid, done.taskId, 'FAILED', { error_code: 'QUERY_TIMEOUT' }));
  t.is((await api.call('DELETE', `/api/tee/sessions/${sid}`, { as: OWNER })).status, 200);
  const statuses = Object.fromEntries((await api.call('GET', `/api/tee/sessions/${sid}/queries`, { as: BOB })).body.queries.map((q: any) => [q.id, q.status]));
  t.deepEqual(statuses, { [running.qid]: 'RUNNING', [queued.qid]: 'CANCELLED', [pending.id]: 'CANCELLED', [done.qid]: 'FAILED' });
  const start = await report(api, queued.qid, event(sid, queued.qid, queued.taskId, 'RUNNING'));
  t.is(start.status, 409);
  const finish = await report(api, running.qid, event(sid, running.qid, running.taskId, 'SUCCEEDED'));
  t.deepEqual(finish.body, { query_id: running.qid, status: 'SUCCEEDED', applied: true });
  const audit = await api.call('GET', `/api/tee/sessions/${sid}/audit?limit=200`, { as: OWNER });
  const cancels = audit.body.entries.filter((e: any) => e.action === 'query.cancelled');
  t.is(cancels.length, 2);
  t.true(cancels.every((e: any) => e.details.reason === 'session_closed' && e.actor === OWNER));
  t.true((await verifyAuditChain(audit.body.entries)).ok);
  // Closing again (idempotent) finds nothing left to cancel.
  t.is((await api.call('DELETE', `/api/tee/sessions/${sid}`, { as: OWNER })).status, 200);
  const again = await api.call('GET', `/api/tee/sessions/${sid}/audit?limit=200`, { as: OWNER });
  t.is(again.body.entries.length, audit.body.entries.length);
});

test('close without the follow-up (a crash): RUNNING for a closed session is refused with SESSION_CLOSED and the query cancelled', async (t) => {
  const local = await testApi();
  try {
    const sid = await session(local, 'all_participants', [BOB]);
    const { qid, taskId } = await queuedQuery(local, sid);
    const pending = await proposed(local, sid);
    // The session service alone: the close commits, the cancelling step never runs.
    await local.sessions.close(OWNER, sid);
    const res = await report(local, qid, event(sid, qid, taskId, 'RUNNING'));
    t.is(res.status, 409);
    t.is(res.body.error.code, 'SESSION_CLOSED');
    t.is((await local.store.getQuery(sid, qid))!.status, 'CANCELLED');
    // A pending proposal of a closed session takes no approval, and expires in time.
    t.is((await act(local, sid, pending.id, 'approve', BOB)).body.error.code, 'SESSION_CLOSED');
    local.clock.advance((7 * 24 * 3600 + 1) * 1000);
    const run = await local.call('POST', '/internal/v1/reconcile', { as: WORKER });
    t.is(run.body.expired, 1);
    t.is((await local.store.getQuery(sid, pending.id))!.status, 'EXPIRED');
  } finally {
    local.close();
  }
});

test('reconcile: a QUEUED query of a closed session the close missed is cancelled, not enqueued again', async (t) => {
  const local = await testApi();
  try {
    const { sid, qid } = await queuedQuery(local);
    await local.sessions.close(OWNER, sid);
    local.clock.advance(121_000);
    t.like((await local.call('POST', '/internal/v1/reconcile', { as: WORKER })).body, { cancelled: 1, reenqueued: 0 });
    t.is((await local.store.getQuery(sid, qid))!.status, 'CANCELLED');
    t.is(local.queue.calls.length, 1);
  } finally {
    local.close();
  }
});

// --- Reconciler (each with its own API, since it moves the clock and sweeps every session)

test('reconcile: an enqueue that failed after the commit leaves the query QUEUED (2xx); the reconciler enqueues it later, same name and jti', async (t) => {
  const local = await testApi();
  try {
    const sid = await session(local, 'none');
    local.queue.failNext();
    const res = await propose(local, sid);
    t.is(res.status, 201);
    t.is(res.body.status, 'QUEUED');
    t.is(local.queue.enqueued.length, 0);
    t.true(local.log.lines.some((l) => l.message === 'task dispatch failed' && l.code === 'QUEUE_UNAVAILABLE'));
    // Not stale yet: nothing to do.
    t.like((await local.call('POST', '/internal/v1/reconcile', { as: WORKER })).body, { reenqueued: 0 });
    local.clock.advance(121_000);
    const run = await local.call('POST', '/internal/v1/reconcile', { as: WORKER });
    t.is(run.status, 200);
    t.like(run.body, { reenqueued: 1, retried: 0, failed: 0 });
    const tasks = await tasksOf(local, res.body.id);
    t.is(tasks.length, 1);
    t.is(tasks[0]!.name, await taskName(res.body.id, 1));
    const stored = (await local.store.getQuery(sid, res.body.id))!;
    t.is(tasks[0]!.payload.jti, stored.task_id!);
    t.is(tasks[0]!.payload.iat, Math.floor(Date.parse(stored.queued_at!) / 1000));
    // Again: the same name, so the queue takes it as a duplicate.
    local.clock.advance(121_000);
    await local.call('POST', '/internal/v1/reconcile', { as: WORKER });
    t.is((await tasksOf(local, res.body.id)).length, 1);
    t.is(local.queue.calls.filter((c) => c.name === tasks[0]!.name).length, 3);
  } finally {
    local.close();
  }
});

test("reconcile: a task that expired unrun gets a new attempt (new jti and name; the old one's events are ignored), up to the limit: TASK_EXPIRED", async (t) => {
  const local = await testApi();
  try {
    const { sid, qid, taskId } = await queuedQuery(local);
    const day = (24 * 3600 + 600) * 1000;
    local.clock.advance(day);
    t.like((await local.call('POST', '/internal/v1/reconcile', { as: WORKER })).body, { retried: 1 });
    const second = (await local.store.getQuery(sid, qid))!;
    t.like(second, { status: 'QUEUED', attempt: 2 });
    t.not(second.task_id, taskId);
    const names = (await tasksOf(local, qid)).map((task) => task.name);
    t.deepEqual(names, [await taskName(qid, 1), await taskName(qid, 2)]);
    t.deepEqual((await report(local, qid, event(sid, qid, taskId, 'RUNNING'))).body, { query_id: qid, status: 'QUEUED', applied: false });
    local.clock.advance(day);
    await local.call('POST', '/internal/v1/reconcile', { as: WORKER });
    t.is((await local.store.getQuery(sid, qid))!.attempt, 3);
    local.clock.advance(day);
    t.like((await local.call('POST', '/internal/v1/reconcile', { as: WORKER })).body, { failed: 1 });
    const view = (await local.call('GET', `/api/tee/sessions/${sid}/queries/${qid}`, { as: OWNER })).body;
    t.like(view, { status: 'FAILED', error_code: 'TASK_EXPIRED', attempt: 3 });
  } finally {
    local.close();
  }
});

test('reconcile: proposals past the approval TTL expire; APPROVED left behind is queued; RUNNING past the timeout fails', async (t) => {
  const local = await testApi();
  try {
    const sid = await session(local);
    const q = await proposed(local, sid);
    local.clock.advance(7 * 24 * 3600 * 1000 - 1000);
    t.like((await local.call('POST', '/internal/v1/reconcile', { as: WORKER })).body, { expired: 0 });
    local.clock.advance(2000);
    t.like((await local.call('POST', '/internal/v1/reconcile', { as: WORKER })).body, { expired: 1 });
    const expired = (await local.call('GET', `/api/tee/sessions/${sid}/queries/${q.id}`, { as: BOB })).body;
    t.like(expired, { status: 'EXPIRED' });
    t.truthy(expired.finished_at);
    t.is((await act(local, sid, q.id, 'approve', BOB)).body.error.code, 'ILLEGAL_TRANSITION');

    // A crash between APPROVED and QUEUED, staged straight in the store.
    const approvedSid = await session(local, 'none');
    const staged = await proposed(local, approvedSid);
    const record = (await local.store.getQuery(approvedSid, staged.id))!;
    const head = (await local.store.get(approvedSid))!;
    const { nextAuditEntry } = await import('../../../protocol/audit.ts');
    const entry = await nextAuditEntry(head.audit_head, {
      session_id: approvedSid,
      at: new Date().toISOString(),
      actor: 'test',
      action: 'query.approved',
      details: { query_id: staged.id, status: 'APPROVED' },
    });
    await local.store.commitQuery({
      query: { ...record, status: 'APPROVED', attempt: 0, task_id: null, queued_at: null, version: record.version + 1 },
      expectedQueryVersion: record.version,
      expectedSessionVersion: head.version,
      entry,
    });
    local.clock.advance(121_000);
    t.like((await local.call('POST', '/internal/v1/reconcile', { as: WORKER })).body, { queued: 1 });
    t.like((await local.store.getQuery(approvedSid, staged.id))!, { status: 'QUEUED', attempt: 1 });

    const { sid: rsid, qid, taskId } = await queuedQuery(local);
    await report(local, qid, event(rsid, qid, taskId, 'RUNNING'));
    local.clock.advance(25 * 3600 * 1000 + 1000);
    t.like((await local.call('POST', '/internal/v1/reconcile', { as: WORKER })).body, { failed: 1 });
    t.like((await local.store.getQuery(rsid, qid))!, { status: 'FAILED', error_code: 'QUERY_TIMEOUT' });
    const late = await report(local, qid, event(rsid, qid, taskId, 'SUCCEEDED'));
    t.is(late.body.error.code, 'ILLEGAL_TRANSITION');
  } finally {
    local.close();
  }
});

// --- Nothing leaks

test('no response or audit entry carries a row count, a task, a task id or engine text', async (t) => {
  const local = await testApi();
  try {
    const bodies: unknown[] = [];
    const call = async (...args: Parameters<TestApi['call']>) => {
      const res = await local.call(...args);
      bodies.push(res.body);
      return res;
    };
    const sid = await session(local, 'all_participants', [BOB]);
    const q = (await call('POST', `/api/tee/sessions/${sid}/queries`, { as: OWNER, body: { sql: SQL } })).body;
    await call('POST', `/api/tee/sessions/${sid}/queries/${q.id}/approve`, { as: BOB });
    const stored = (await local.store.getQuery(sid, q.id))!;
    await call('POST', `/internal/v1/queries/${q.id}/events`, { as: WORKER, body: event(sid, q.id, stored.task_id!, 'RUNNING') });
    await call('POST', `/internal/v1/queries/${q.id}/events`, {
      as: WORKER,
      body: event(sid, q.id, stored.task_id!, 'SUCCEEDED', { stats: { rows: 987654, bytes: 10, elapsed_ms: 3 }, result_ref: 'r/1' }),
    });
    // Refused (a row count has no place in an event), and not echoed; the proper event follows.
    await call('POST', `/internal/v1/queries/${q.id}/events`, {
      as: WORKER,
      body: event(sid, q.id, stored.task_id!, 'SUCCEEDED', { stats: { bytes: 10, elapsed_ms: 3 }, result_ref: 'r/1' }),
    });
    await call('GET', `/api/tee/sessions/${sid}/queries/${q.id}`, { as: OWNER });
    await call('GET', `/api/tee/sessions/${sid}/queries`, { as: BOB });
    await call('GET', `/api/tee/sessions/${sid}/audit?limit=200`, { as: BOB });
    const everything = JSON.stringify(bodies) + JSON.stringify(local.log.lines);
    t.false(everything.includes('987654'), 'row count');
    t.false(everything.includes(stored.task_id!), 'task id');
    t.false(everything.includes(local.queue.enqueued[0]!.body.split('.')[2]!), 'task signature');
    t.false(everything.includes('"rows":9'), 'rows');
    // The audit chain binds the SQL by hash, never by text.
    const audit = JSON.stringify(bodies.at(-1));
    t.false(audit.includes('literal-7741'));
    t.true(audit.includes('sql_sha256'));
  } finally {
    local.close();
  }
});

test('no malformed path, method or body on any query route answers 5xx', async (t) => {
  const sid = await session(api);
  const q = await proposed(api, sid);
  const paths = [
    `/api/tee/sessions/${sid}/queries`,
    `/api/tee/sessions/${sid}/queries/${q.id}`,
    `/api/tee/sessions/${sid}/queries/${q.id}/approve`,
    `/api/tee/sessions/${sid}/queries/${q.id}/reject`,
    `/api/tee/sessions/${sid}/queries/${q.id}/cancel`,
    `/api/tee/sessions/${sid}/queries/%E0%A4%A`,
    `/api/tee/sessions/%00/queries/${q.id}`,
    `/api/tee/sessions/${'x'.repeat(300)}/queries`,
    `/api/tee/sessions/${sid}/queries/${q.id.toUpperCase()}/approve`,
    `/internal/v1/queries/${q.id}/events`,
    '/internal/v1/queries/%ZZ/events',
    '/internal/v1/reconcile',
  ];
  const bodies = [undefined, '', '{', '[]', 'null', '{"sql":null}', `{"sql":"${'a'.repeat(70_000)}"}`, '{"__proto__":{"x":1}}'];
  for (const path of paths) {
    for (const method of ['GET', 'POST', 'PUT', 'DELETE']) {
      for (const raw of bodies) {
        for (const as of [OWNER, WORKER, EVE]) {
          if (method === 'GET' && raw !== undefined) continue;
          const res = await api.call(method, path, { as, ...(raw === undefined ? {} : { raw, headers: { 'content-type': 'application/json' } }) });
          t.true(res.status < 500, `${method} ${path} ${raw?.slice(0, 20)} as ${as}: ${res.status} ${JSON.stringify(res.body)}`);
        }
      }
    }
  }
});
