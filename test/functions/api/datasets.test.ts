import test from 'ava';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { exportJWK } from 'jose';
import * as v from 'valibot';
import { compactVerify } from 'jose';
import { verifyAuditChain } from '../../../protocol/audit.ts';
import { objectKeys } from '../../../protocol/dataset.ts';
import { CleanroomError } from '../../../protocol/errors.ts';
import { TaskPayloadSchema } from '../../../protocol/task.ts';
import { verifySessionKeyRequestJws } from '../../../protocol/task-verify.ts';
import document from '../../../docs/openapi.json' with { type: 'json' };
import { TEST_WORKER_EMAIL, testApi, type TestApi } from '../../helpers/api.ts';

const OWNER = 'owner@example.com';
const BOB = 'bob@example.com';
const CAROL = 'carol@example.com';
const EVE = 'eve@example.com';
/** The test API's dataset cap: above the JSON API's 64 KiB body limit, which uploads must not meet. */
const CAP = 200_000;

let api: TestApi;
test.before(async () => {
  api = await testApi({ maxDatasetBytes: CAP });
});
test.after.always(() => api.close());

/** A session of OWNER with `others`; `keys` (default everyone) register their keys. */
async function session(t: TestApi = api, others: string[] = [BOB, CAROL], keys: string[] = [OWNER, ...others], policy = 'none') {
  const res = await t.call('POST', '/api/tee/sessions', { as: OWNER, body: { name: 'data', participant_emails: others, approval_policy: policy } });
  if (res.status !== 201) throw new Error(`session: ${JSON.stringify(res.body)}`);
  for (const email of keys) await t.registerKeys(res.body.id, email);
  return res.body.id as string;
}

function randomBytes(size: number): Uint8Array {
  const bytes = new Uint8Array(size);
  for (let i = 0; i < size; i += 65536) crypto.getRandomValues(bytes.subarray(i, Math.min(size, i + 65536)));
  return bytes;
}

async function sha256Hex(bytes: Uint8Array): Promise<string> {
  return Buffer.from(await crypto.subtle.digest('SHA-256', bytes as Uint8Array<ArrayBuffer>)).toString('hex');
}

const ticket = (t: TestApi, sid: string, body: unknown, as = OWNER) => t.call('POST', `/api/tee/sessions/${sid}/datasets/uploads`, { as, body });

/** PUTs `bytes` to a signed URL the API handed out, as a client would. */
async function put(t: TestApi, url: string, bytes: Uint8Array, headers: Record<string, string> = {}) {
  const res = await t.request(url, { method: 'PUT', body: bytes as Uint8Array<ArrayBuffer>, headers });
  return { status: res.status, body: (await res.json()) as any };
}

/** A registration body for `ciphertext` (whatever bytes: the control plane never looks inside). */
async function registration(datasetId: string, ciphertext: Uint8Array, overrides: Record<string, unknown> = {}) {
  return {
    dataset_id: datasetId,
    table: 'sales',
    format: 'csv',
    schema: [
      { name: 'email', type: 'VARCHAR' },
      { name: 'amount', type: 'DOUBLE' },
    ],
    row_count: 3,
    ciphertext_bytes: ciphertext.byteLength,
    ciphertext_sha256: await sha256Hex(ciphertext),
    wrapped_key: 'eyJhbGciOiJFQ0RILUVTK0EyNTZLVyJ9.ZW5jcnlwdGVkLWtleQ.aXY.Y2lwaGVydGV4dA.dGFn',
    session_key_thumbprint: 'S'.repeat(43),
    ...overrides,
  };
}

const register = (t: TestApi, sid: string, body: unknown, as = OWNER) => t.call('POST', `/api/tee/sessions/${sid}/datasets`, { as, body });

/** Ticket, upload and registration of a fresh dataset named `table`; returns its view and bytes. */
async function registered(t: TestApi, sid: string, table = 'sales', as = OWNER, size = 1000) {
  const ciphertext = randomBytes(size);
  const datasetId = crypto.randomUUID();
  const tk = await ticket(t, sid, { dataset_id: datasetId, ciphertext_bytes: size }, as);
  if (tk.status !== 201) throw new Error(`ticket: ${JSON.stringify(tk.body)}`);
  const up = await put(t, tk.body.url, ciphertext, tk.body.headers);
  if (up.status !== 201) throw new Error(`upload: ${JSON.stringify(up.body)}`);
  const res = await register(t, sid, await registration(datasetId, ciphertext, { table }), as);
  if (res.status !== 201) throw new Error(`register: ${JSON.stringify(res.body)}`);
  return { view: res.body, ciphertext };
}

async function auditActions(t: TestApi, sid: string): Promise<string[]> {
  const res = await t.call('GET', `/api/tee/sessions/${sid}/audit?limit=200`, { as: OWNER });
  return res.body.entries.map((e: any) => e.action).filter((a: string) => a !== 'participant.keys_registered');
}

// --- Upload and registration

test('upload: ticket, PUT to the signed URL, register, list: the object holds the bytes, the record what the request had', async (t) => {
  const sid = await session();
  const ciphertext = randomBytes(5000);
  const datasetId = crypto.randomUUID();
  const tk = await ticket(api, sid, { dataset_id: datasetId, ciphertext_bytes: ciphertext.byteLength }, BOB);
  t.is(tk.status, 201);
  t.like(tk.body, { dataset_id: datasetId, object_key: objectKeys.dataset(sid, datasetId), method: 'PUT', max_bytes: 5000 });
  t.true(tk.body.url.startsWith(`http://localhost/objects/datasets/${sid}/${datasetId}.crds?`));
  const ttl = Date.parse(tk.body.expires_at) - Date.now();
  t.true(ttl > 3590_000 && ttl <= 3600_000, String(ttl));
  t.deepEqual(Object.keys(tk.body).sort(), Object.keys((document as any).components.schemas.UploadTicket.properties).sort());

  const up = await put(api, tk.body.url, ciphertext, tk.body.headers);
  t.is(up.status, 201);
  t.is(up.body.size, 5000);
  t.deepEqual(new Uint8Array(readFileSync(join(api.objectsDir, objectKeys.dataset(sid, datasetId)))), ciphertext);

  const body = await registration(datasetId, ciphertext, { csv: SEMICOLON });
  const res = await register(api, sid, body, BOB);
  t.is(res.status, 201);
  t.like(res.body, { id: datasetId, session_id: sid, owner_email: BOB, table: 'sales', format: 'csv', csv: SEMICOLON, row_count: 3, ciphertext_bytes: 5000 });
  t.is(res.body.ciphertext_sha256, body.ciphertext_sha256);
  const viewSchema = (document as any).components.schemas.DatasetView;
  t.deepEqual(Object.keys(res.body).sort(), Object.keys(viewSchema.properties).sort());
  t.false(JSON.stringify(res.body).includes(body.wrapped_key), 'the view carries no wrapped key');

  for (const as of [OWNER, BOB, CAROL]) {
    const list = await api.call('GET', `/api/tee/sessions/${sid}/datasets`, { as });
    t.is(list.status, 200);
    t.deepEqual(list.body, { datasets: [res.body] });
  }
  const stored = await api.store.getDataset(sid, datasetId);
  t.like(stored, { wrapped_key: body.wrapped_key, object_key: objectKeys.dataset(sid, datasetId), session_key_thumbprint: body.session_key_thumbprint });
  t.deepEqual(await auditActions(api, sid), ['session.created', 'dataset.registered']);
  const audit = await api.call('GET', `/api/tee/sessions/${sid}/audit?limit=200`, { as: CAROL });
  const entry = audit.body.entries.at(-1);
  t.like(entry, { actor: BOB, details: { dataset_id: datasetId, table: 'sales', ciphertext_sha256: body.ciphertext_sha256 } });
  t.deepEqual(await verifyAuditChain(audit.body.entries), { ok: true, head: audit.body.head });
});

const SEMICOLON = { delimiter: ';', quote: '"', escape: '"', header: true };

const badRegistrations: Array<[string, Record<string, unknown>]> = [
  ['a dialect on a Parquet dataset', { format: 'parquet', csv: SEMICOLON }],
  ['a delimiter outside the set', { csv: { ...SEMICOLON, delimiter: ':' } }],
  ['a delimiter equal to the escape', { csv: { ...SEMICOLON, delimiter: ',', quote: "'", escape: ',' } }],
  ['a dialect with an extra member', { csv: { ...SEMICOLON, comment: '#' } }],
  ['a dialect missing its header flag', { csv: { delimiter: ';', quote: '"', escape: '"' } }],
  ['a DECIMAL past 38 digits', { schema: [{ name: 'price', type: 'DECIMAL(39,2)' }] }],
  ['a DECIMAL whose scale exceeds its precision', { schema: [{ name: 'price', type: 'DECIMAL(2,3)' }] }],
  ['a DECIMAL spelled with a space', { schema: [{ name: 'price', type: 'DECIMAL(10, 2)' }] }],
];
for (const [name, overrides] of badRegistrations) {
  test(`register: ${name} is 400 VALIDATION_FAILED and nothing is registered`, async (t) => {
    const sid = await session();
    const ciphertext = randomBytes(100);
    const datasetId = crypto.randomUUID();
    const tk = await ticket(api, sid, { dataset_id: datasetId, ciphertext_bytes: 100 });
    await put(api, tk.body.url, ciphertext, tk.body.headers);
    const res = await register(api, sid, await registration(datasetId, ciphertext, overrides));
    t.is(res.status, 400);
    t.is(res.body.error.code, 'VALIDATION_FAILED');
    t.deepEqual((await api.call('GET', `/api/tee/sessions/${sid}/datasets`, { as: OWNER })).body.datasets, []);
  });
}

test('register: a DECIMAL column and a CSV dialect are kept, shown, and carried to the worker in the task', async (t) => {
  const sid = await session(api, [BOB]);
  const ciphertext = randomBytes(100);
  const datasetId = crypto.randomUUID();
  const tk = await ticket(api, sid, { dataset_id: datasetId, ciphertext_bytes: 100 });
  await put(api, tk.body.url, ciphertext, tk.body.headers);
  const schema = [
    { name: 'email', type: 'VARCHAR' },
    { name: 'amount', type: 'DECIMAL(12,2)' },
  ];
  const res = await register(api, sid, await registration(datasetId, ciphertext, { schema, csv: { ...SEMICOLON, delimiter: '\t' } }));
  t.is(res.status, 201, JSON.stringify(res.body));
  t.deepEqual(res.body.schema, schema);
  t.deepEqual(res.body.csv, { ...SEMICOLON, delimiter: '\t' });
  const proposed = await api.call('POST', `/api/tee/sessions/${sid}/queries`, { as: OWNER, body: { sql: 'SELECT sum(amount) FROM sales' } });
  t.is(proposed.status, 201);
  const task = api.queue.enqueued.find((candidate) => JSON.parse(Buffer.from(candidate.body.split('.')[1]!, 'base64url').toString()).query_id === proposed.body.id)!;
  const { payload } = await compactVerify(task.body, api.signer.publicKey, { algorithms: ['ES256'] });
  const parsed = v.parse(TaskPayloadSchema, JSON.parse(new TextDecoder().decode(payload)));
  t.like(parsed.inputs?.[0], { table: 'sales', csv: { ...SEMICOLON, delimiter: '\t' }, schema });
});

test('ticket: over the cap is 413 DATASET_TOO_LARGE naming the cap; without keys FORBIDDEN; outsiders 404; closed 409', async (t) => {
  const sid = await session(api, [BOB, CAROL], [OWNER, BOB]);
  const big = await ticket(api, sid, { dataset_id: crypto.randomUUID(), ciphertext_bytes: CAP + 1 });
  t.is(big.status, 413);
  t.is(big.body.error.code, 'DATASET_TOO_LARGE');
  t.true(big.body.error.message.includes(String(CAP)), big.body.error.message);
  t.is((await ticket(api, sid, { dataset_id: crypto.randomUUID(), ciphertext_bytes: CAP })).status, 201);
  const noKeys = await ticket(api, sid, { dataset_id: crypto.randomUUID(), ciphertext_bytes: 10 }, CAROL);
  t.is(noKeys.status, 403);
  t.is(noKeys.body.error.code, 'FORBIDDEN');
  const outsider = await ticket(api, sid, { dataset_id: crypto.randomUUID(), ciphertext_bytes: 10 }, EVE);
  t.is(outsider.status, 404);
  t.is(outsider.body.error.code, 'SESSION_NOT_FOUND');
  const { view } = await registered(api, sid);
  const again = await ticket(api, sid, { dataset_id: view.id, ciphertext_bytes: 10 });
  t.is(again.status, 409);
  t.is(again.body.error.code, 'DATASET_EXISTS');
  await api.call('DELETE', `/api/tee/sessions/${sid}`, { as: OWNER });
  const closed = await ticket(api, sid, { dataset_id: crypto.randomUUID(), ciphertext_bytes: 10 });
  t.is(closed.status, 409);
  t.is(closed.body.error.code, 'SESSION_CLOSED');
});

const invalidTickets: Array<[string, unknown]> = [
  ['no body fields', {}],
  ['id not a uuid', { dataset_id: '../../etc/passwd', ciphertext_bytes: 10 }],
  ['zero bytes', { dataset_id: crypto.randomUUID(), ciphertext_bytes: 0 }],
  ['fractional bytes', { dataset_id: crypto.randomUUID(), ciphertext_bytes: 1.5 }],
  ['bytes as a string', { dataset_id: crypto.randomUUID(), ciphertext_bytes: '10' }],
  ['unknown field', { dataset_id: crypto.randomUUID(), ciphertext_bytes: 10, object_key: 'session-keys/x/epoch-1.json' }],
];
for (const [label, body] of invalidTickets) {
  test(`ticket: ${label} → 400 VALIDATION_FAILED`, async (t) => {
    const sid = await session(api, []);
    const res = await ticket(api, sid, body);
    t.is(res.status, 400);
    t.is(res.body.error.code, 'VALIDATION_FAILED');
  });
}

test('PUT: more bytes than the URL allows is 413 while streaming (declared or not), and nothing is stored', async (t) => {
  const sid = await session(api, []);
  const datasetId = crypto.randomUUID();
  const tk = await ticket(api, sid, { dataset_id: datasetId, ciphertext_bytes: 1000 });
  // No Content-Length: the local route counts while it streams.
  const streamed = await put(api, tk.body.url, randomBytes(1001));
  t.is(streamed.status, 413);
  t.is(streamed.body.error.code, 'DATASET_TOO_LARGE');
  const declared = await put(api, tk.body.url, randomBytes(4_000), { 'content-length': '4000' });
  t.is(declared.status, 413);
  t.false(existsSync(join(api.objectsDir, objectKeys.dataset(sid, datasetId))));
  // Past the API's 64 KiB JSON body limit is fine for uploads, within the URL's own cap.
  const bigId = crypto.randomUUID();
  const big = await ticket(api, sid, { dataset_id: bigId, ciphertext_bytes: CAP });
  t.is((await put(api, big.body.url, randomBytes(CAP))).status, 201);
});

test('PUT: a tampered or expired URL is 403 UPLOAD_URL_INVALID; a second PUT is 412 OBJECT_EXISTS and the first stays', async (t) => {
  const sid = await session(api, []);
  const datasetId = crypto.randomUUID();
  const tk = await ticket(api, sid, { dataset_id: datasetId, ciphertext_bytes: 100 });
  const url = new URL(tk.body.url);
  const variants: Array<[string, (u: URL) => void]> = [
    ['bigger cap', (u) => u.searchParams.set('max', '100000')],
    ['later expiry', (u) => u.searchParams.set('expires', String(Number(u.searchParams.get('expires')) + 3600))],
    ['other signature', (u) => u.searchParams.set('sig', 'A'.repeat(43))],
    ['no signature', (u) => u.searchParams.delete('sig')],
    ['other object', (u) => (u.pathname = `/objects/${objectKeys.dataset(sid, crypto.randomUUID())}`)],
    ['a session key path', (u) => (u.pathname = `/objects/${objectKeys.sessionKey(sid, 1)}`)],
  ];
  for (const [label, change] of variants) {
    const forged = new URL(url);
    change(forged);
    const res = await put(api, forged.href, randomBytes(10));
    t.is(res.status, 403, label);
    t.is(res.body.error.code, 'UPLOAD_URL_INVALID', label);
  }
  const first = randomBytes(100);
  t.is((await put(api, tk.body.url, first)).status, 201);
  const second = await put(api, tk.body.url, randomBytes(100));
  t.is(second.status, 412);
  t.is(second.body.error.code, 'OBJECT_EXISTS');
  t.deepEqual(new Uint8Array(readFileSync(join(api.objectsDir, objectKeys.dataset(sid, datasetId)))), first);

  const local = await testApi();
  try {
    const lsid = await session(local, []);
    const late = await ticket(local, lsid, { dataset_id: crypto.randomUUID(), ciphertext_bytes: 10 });
    local.clock.advance(3601_000);
    const expired = await put(local, late.body.url, randomBytes(10));
    t.is(expired.status, 403);
    t.is(expired.body.error.code, 'UPLOAD_URL_INVALID');
  } finally {
    local.close();
  }
});

test('register: without an upload, or with another size, UPLOAD_MISSING; table and id unique; keys and participation required', async (t) => {
  const sid = await session(api, [BOB, CAROL], [OWNER, BOB]);
  const ciphertext = randomBytes(300);
  const missing = await register(api, sid, await registration(crypto.randomUUID(), ciphertext));
  t.is(missing.status, 409);
  t.is(missing.body.error.code, 'UPLOAD_MISSING');

  const shortId = crypto.randomUUID();
  const tk = await ticket(api, sid, { dataset_id: shortId, ciphertext_bytes: 300 });
  t.is((await put(api, tk.body.url, ciphertext.subarray(0, 299))).status, 201);
  const short = await register(api, sid, await registration(shortId, ciphertext));
  t.is(short.status, 409);
  t.is(short.body.error.code, 'UPLOAD_MISSING');

  const { view } = await registered(api, sid, 'sales');
  const sameTable = await registered(api, sid, 'ads').catch((e: Error) => e);
  t.false(sameTable instanceof Error);
  const dupTableId = crypto.randomUUID();
  const dupTicket = await ticket(api, sid, { dataset_id: dupTableId, ciphertext_bytes: 300 });
  await put(api, dupTicket.body.url, ciphertext);
  const taken = await register(api, sid, await registration(dupTableId, ciphertext, { table: 'sales' }), BOB);
  t.is(taken.status, 409);
  t.is(taken.body.error.code, 'TABLE_NAME_TAKEN');
  const sameId = await register(api, sid, await registration(view.id, ciphertext, { table: 'other' }));
  t.is(sameId.status, 409);
  t.is(sameId.body.error.code, 'DATASET_EXISTS');
  const noKeys = await register(api, sid, await registration(dupTableId, ciphertext, { table: 'carols' }), CAROL);
  t.is(noKeys.status, 403);
  t.is(noKeys.body.error.code, 'FORBIDDEN');
  const outsider = await register(api, sid, await registration(dupTableId, ciphertext, { table: 'eves' }), EVE);
  t.is(outsider.status, 404);
  t.is(outsider.body.error.code, 'SESSION_NOT_FOUND');
  t.is((await api.call('GET', `/api/tee/sessions/${sid}/datasets`, { as: EVE })).status, 404);
  const tables = (await api.call('GET', `/api/tee/sessions/${sid}/datasets`, { as: OWNER })).body.datasets.map((d: any) => d.table);
  t.deepEqual(tables, ['sales', 'ads']);
});

test('register: racing registrations of one table name: exactly one wins, the other is TABLE_NAME_TAKEN (5 rounds)', async (t) => {
  for (let round = 0; round < 5; round++) {
    const sid = await session(api, [BOB], [OWNER, BOB]);
    const bodies = [];
    for (const as of [OWNER, BOB]) {
      const ciphertext = randomBytes(50);
      const id = crypto.randomUUID();
      const tk = await ticket(api, sid, { dataset_id: id, ciphertext_bytes: 50 }, as);
      await put(api, tk.body.url, ciphertext);
      bodies.push({ as, body: await registration(id, ciphertext, { table: 'shared' }) });
    }
    const results = await Promise.all(bodies.map(({ as, body }) => register(api, sid, body, as)));
    t.deepEqual(results.map((r) => r.status).sort(), [201, 409], `round ${round}`);
    t.is(results.find((r) => r.status === 409)!.body.error.code, 'TABLE_NAME_TAKEN');
    t.is((await api.call('GET', `/api/tee/sessions/${sid}/datasets`, { as: OWNER })).body.datasets.length, 1);
  }
});

test('register: a session holds at most 64 datasets (VALIDATION_FAILED at the ticket and at registration)', async (t) => {
  const local = await testApi();
  try {
    const sid = await session(local, []);
    for (let i = 0; i < 64; i++) await registered(local, sid, `t${i}`, OWNER, 10);
    const full = await ticket(local, sid, { dataset_id: crypto.randomUUID(), ciphertext_bytes: 10 });
    t.is(full.status, 400);
    t.is(full.body.error.code, 'VALIDATION_FAILED');
    // An object put there by other means (or a ticket from before the 64th) is refused too.
    const extraId = crypto.randomUUID();
    const bytes = randomBytes(10);
    await local.objects.createOnly(objectKeys.dataset(sid, extraId), bytes);
    const extra = await register(local, sid, await registration(extraId, bytes, { table: 'one_too_many' }));
    t.is(extra.status, 400);
    t.is(extra.body.error.code, 'VALIDATION_FAILED');
    const list = await local.call('GET', `/api/tee/sessions/${sid}/datasets`, { as: OWNER });
    t.is(list.body.datasets.length, 64);
  } finally {
    local.close();
  }
});

// --- Queries read the session's datasets

test("propose: the task carries the datasets the SQL names as inputs and the recipients' registered keys", async (t) => {
  const sid = await session(api, [BOB]);
  const sales = await registered(api, sid, 'sales');
  const ads = await registered(api, sid, 'ads', BOB);
  await registered(api, sid, 'unused');
  const res = await api.call('POST', `/api/tee/sessions/${sid}/queries`, {
    as: OWNER,
    body: { sql: 'SELECT COUNT(*) FROM Sales s JOIN ads a ON a.email = s.email', recipients: [OWNER, BOB] },
  });
  t.is(res.status, 201);
  t.is(res.body.status, 'QUEUED');
  t.deepEqual(res.body.inputs, [
    { dataset_id: sales.view.id, table: 'sales' },
    { dataset_id: ads.view.id, table: 'ads' },
  ]);
  const task = api.queue.enqueued.find((candidate) => JSON.parse(Buffer.from(candidate.body.split('.')[1]!, 'base64url').toString()).query_id === res.body.id)!;
  const { payload } = await compactVerify(task.body, api.signer.publicKey, { algorithms: ['ES256'] });
  const parsed = v.parse(TaskPayloadSchema, JSON.parse(new TextDecoder().decode(payload)));
  t.deepEqual(
    parsed.inputs?.map((i) => [i.table, i.dataset_id, i.owner_email, i.object_key]),
    [
      ['sales', sales.view.id, OWNER, objectKeys.dataset(sid, sales.view.id)],
      ['ads', ads.view.id, BOB, objectKeys.dataset(sid, ads.view.id)],
    ],
  );
  const stored = await api.store.getDataset(sid, ads.view.id);
  t.like(parsed.inputs?.[1], { wrapped_key: stored!.wrapped_key, ciphertext_sha256: stored!.ciphertext_sha256, ciphertext_bytes: 1000 });
  const owner = await api.registerKeys(sid, OWNER);
  const bob = await api.registerKeys(sid, BOB);
  t.deepEqual(parsed.recipient_keys, [
    { email: OWNER, encryption_jwk: owner.encryptionJwk },
    { email: BOB, encryption_jwk: bob.encryptionJwk },
  ]);
  // The view lists the inputs; a dataset registered after the proposal is not added to it.
  await registered(api, sid, 'later');
  const view = await api.call('GET', `/api/tee/sessions/${sid}/queries/${res.body.id}`, { as: BOB });
  t.deepEqual(view.body.inputs, res.body.inputs);
});

// --- Sealed results

test('result: recipients get the stored bytes exactly once SUCCEEDED; others FORBIDDEN; before that RESULT_NOT_READY', async (t) => {
  const sid = await session(api, [BOB, CAROL]);
  const q = await api.call('POST', `/api/tee/sessions/${sid}/queries`, { as: OWNER, body: { sql: 'SELECT 1', recipients: [OWNER, BOB] } });
  t.is(q.body.status, 'QUEUED');
  const path = `/api/tee/sessions/${sid}/queries/${q.body.id}/result`;
  const early = await api.call('GET', path, { as: BOB });
  t.is(early.status, 409);
  t.is(early.body.error.code, 'RESULT_NOT_READY');
  const stored = (await api.store.getQuery(sid, q.body.id))!;
  const event = (kind: string) => ({ session_id: sid, query_id: q.body.id, task_id: stored.task_id, event: kind, at: new Date().toISOString() });
  await api.call('POST', `/internal/v1/queries/${q.body.id}/events`, { as: TEST_WORKER_EMAIL, body: event('RUNNING') });
  t.is((await api.call('GET', path, { as: OWNER })).body.error.code, 'RESULT_NOT_READY');
  await api.call('POST', `/internal/v1/queries/${q.body.id}/events`, { as: TEST_WORKER_EMAIL, body: event('SUCCEEDED') });
  // Succeeded, but the object is not there (yet, or lost).
  const gone = await api.call('GET', path, { as: OWNER });
  t.is(gone.status, 404);
  t.is(gone.body.error.code, 'RESULT_NOT_FOUND');
  // Whatever the worker stored, byte for byte (odd spacing and key order included).
  const sealed = new TextEncoder().encode(`{"v":1,  "session_id":"${sid}","query_id":"${q.body.id}","jwe":{"ciphertext":"x"}}\n`);
  await api.objects.createOnly(objectKeys.result(sid, q.body.id), sealed);
  for (const as of [OWNER, BOB]) {
    const res = await api.request(`http://localhost${path}`, { headers: { authorization: `Bearer ${await api.token(as)}` } });
    t.is(res.status, 200);
    t.regex(res.headers.get('content-type') ?? '', /^application\/json/);
    t.is(res.headers.get('cache-control'), 'no-store');
    t.deepEqual(new Uint8Array(await res.arrayBuffer()), sealed);
  }
  const carol = await api.call('GET', path, { as: CAROL });
  t.is(carol.status, 403);
  t.is(carol.body.error.code, 'FORBIDDEN');
  const eve = await api.call('GET', path, { as: EVE });
  t.is(eve.status, 404);
  t.is(eve.body.error.code, 'SESSION_NOT_FOUND');
  t.is((await api.call('GET', `/api/tee/sessions/${sid}/queries/${crypto.randomUUID()}/result`, { as: OWNER })).body.error.code, 'QUERY_NOT_FOUND');
  // Results outlive the session: they are sealed to their recipients.
  await api.call('DELETE', `/api/tee/sessions/${sid}`, { as: OWNER });
  t.is((await api.call('GET', path, { as: BOB })).status, 200);
});

// --- Session key relay (serial: they share the fake worker of `api`)

/** A bundle as the worker would send it for `sid` (shape only: the relay does not verify it). */
async function bundleFor(sid: string): Promise<Record<string, unknown>> {
  const keys = await api.registerKeys(sid, OWNER);
  return {
    session_id: sid,
    epoch: 1,
    public_jwk: keys.encryptionJwk,
    thumbprint: 'T'.repeat(43),
    certificate: 'eyJ.cert.sig',
    identity_jwk: keys.signingJwk,
    attestation: 'eyJ.att.sig',
    attestation_kind: 'dev',
  };
}

test.serial("session key: a signed request with the caller's nonce goes to the worker; its bundle comes back verbatim", async (t) => {
  const sid = await session(api, [BOB]);
  const bundle = await bundleFor(sid);
  const text = ` ${JSON.stringify(bundle)}\n`;
  api.worker.answer = async () => text;
  const before = api.worker.requests.length;
  const nonce = 'n0nce-of-the-participant_123';
  const res = await api.request(`http://localhost/api/tee/sessions/${sid}/session-key`, {
    method: 'POST',
    headers: { authorization: `Bearer ${await api.token(BOB)}`, 'content-type': 'application/json' },
    body: JSON.stringify({ nonce }),
  });
  t.is(res.status, 200);
  t.is(await res.text(), text);
  t.is(api.worker.requests.length, before + 1);
  const jws = api.worker.requests.at(-1)!;
  const publicJwk = { ...(await exportJWK(api.signer.publicKey)), kid: api.signer.kid, alg: 'ES256' };
  const payload = await verifySessionKeyRequestJws(jws, { keys: [publicJwk] });
  t.like(payload, { kind: 'session_key', session_id: sid, nonce });
  t.is(payload.exp - payload.iat, 60);
  // Each request is a new one (jti), never a replay of the last.
  await api.call('POST', `/api/tee/sessions/${sid}/session-key`, { as: OWNER, body: { nonce } });
  const second = await verifySessionKeyRequestJws(api.worker.requests.at(-1)!, { keys: [publicJwk] });
  t.not(second.jti, payload.jti);
});

test.serial("session key: a worker answer that is not this session's bundle, or no answer, is 503 WORKER_UNAVAILABLE; refusals keep their code", async (t) => {
  const sid = await session(api, []);
  const other = await session(api, []);
  const answers: Array<[string, () => Promise<string>, number, string]> = [
    ["another session's bundle", async () => JSON.stringify(await bundleFor(other)), 503, 'WORKER_UNAVAILABLE'],
    ['not JSON', async () => '<html>gateway</html>', 503, 'WORKER_UNAVAILABLE'],
    ['an extra field', async () => JSON.stringify({ ...(await bundleFor(sid)), private_key: 'x' }), 503, 'WORKER_UNAVAILABLE'],
    [
      'unreachable',
      async () => {
        throw new CleanroomError('WORKER_UNAVAILABLE', 'down', { retryAfter: 7 });
      },
      503,
      'WORKER_UNAVAILABLE',
    ],
    [
      'rate limited',
      async () => {
        throw new CleanroomError('RATE_LIMITED', 'slow down', { retryAfter: 5 });
      },
      429,
      'RATE_LIMITED',
    ],
  ];
  for (const [label, answer, status, code] of answers) {
    api.worker.answer = answer;
    const res = await api.call('POST', `/api/tee/sessions/${sid}/session-key`, { as: OWNER, body: { nonce: 'a'.repeat(16) } });
    t.is(res.status, status, label);
    t.is(res.body.error.code, code, label);
    if (status >= 429) t.truthy(res.headers.get('retry-after'), label);
  }
});

test.serial('session key: participants of an ACTIVE session only; a malformed nonce never reaches the worker', async (t) => {
  const sid = await session(api, []);
  api.worker.answer = async () => JSON.stringify(await bundleFor(sid));
  const before = api.worker.requests.length;
  const eve = await api.call('POST', `/api/tee/sessions/${sid}/session-key`, { as: EVE, body: { nonce: 'a'.repeat(16) } });
  t.is(eve.status, 404);
  for (const nonce of ['short', 'x'.repeat(129), 'has spaces in it!!', 42]) {
    const res = await api.call('POST', `/api/tee/sessions/${sid}/session-key`, { as: OWNER, body: { nonce } });
    t.is(res.status, 400, String(nonce));
    t.is(res.body.error.code, 'VALIDATION_FAILED');
  }
  await api.call('DELETE', `/api/tee/sessions/${sid}`, { as: OWNER });
  const closed = await api.call('POST', `/api/tee/sessions/${sid}/session-key`, { as: OWNER, body: { nonce: 'a'.repeat(16) } });
  t.is(closed.status, 409);
  t.is(closed.body.error.code, 'SESSION_CLOSED');
  t.is(api.worker.requests.length, before);
});

// --- Closing shreds

test("close: the session key and dataset objects are deleted; sealed results and other sessions' objects stay", async (t) => {
  const sid = await session(api, [BOB]);
  const other = await session(api, []);
  const { view } = await registered(api, sid, 'sales');
  const keep = await registered(api, other, 'sales');
  await api.objects.createOnly(objectKeys.sessionKey(sid, 1), new TextEncoder().encode('{"wrapped":"key"}'));
  await api.objects.createOnly(objectKeys.result(sid, crypto.randomUUID()), new TextEncoder().encode('{"v":1}'));
  const file = (key: string) => join(api.objectsDir, key);
  t.true(existsSync(file(objectKeys.dataset(sid, view.id))));
  const res = await api.call('DELETE', `/api/tee/sessions/${sid}`, { as: OWNER });
  t.is(res.status, 200);
  t.false(existsSync(file(objectKeys.dataset(sid, view.id))));
  t.false(existsSync(file(objectKeys.sessionKeyPrefix(sid))));
  t.false(existsSync(file(objectKeys.datasetPrefix(sid))));
  t.true(existsSync(file(objectKeys.resultPrefix(sid))));
  t.true(existsSync(file(objectKeys.dataset(other, keep.view.id))));
  // The records stay (metadata), the session awaits its final pass.
  t.is((await api.call('GET', `/api/tee/sessions/${sid}/datasets`, { as: BOB })).body.datasets.length, 1);
  t.is((await api.store.get(sid))!.shredded_at, null);
});

test('close: an object store outage leaves the shredding to the reconciler, whose final pass also removes late uploads', async (t) => {
  const local = await testApi();
  try {
    const sid = await session(local, [BOB]);
    const { view } = await registered(local, sid, 'sales');
    await local.objects.createOnly(objectKeys.sessionKey(sid, 1), new TextEncoder().encode('{"wrapped":"key"}'));
    // A ticket issued before the close, used after it.
    const lateId = crypto.randomUUID();
    const late = await ticket(local, sid, { dataset_id: lateId, ciphertext_bytes: 10 }, BOB);
    local.objects.down = true;
    const res = await local.call('DELETE', `/api/tee/sessions/${sid}`, { as: OWNER });
    t.is(res.status, 200);
    t.is(res.body.status, 'CLOSED');
    t.true(local.log.lines.some((l) => l.session_id === sid && l.code === 'OBJECT_STORE_UNAVAILABLE'));
    const file = (key: string) => join(local.objectsDir, key);
    t.true(existsSync(file(objectKeys.dataset(sid, view.id))));
    t.is((await put(local, late.body.url, randomBytes(10))).status, 201);

    const reconcile = async () => (await local.call('POST', '/internal/v1/reconcile', { as: TEST_WORKER_EMAIL })).body;
    // Not yet due: a URL issued before the close may still be in use.
    t.like(await reconcile(), { shredded: 0, shred_failures: 0 });
    local.clock.advance(2 * 3600 * 1000 + 1000);
    t.like(await reconcile(), { shredded: 0, shred_failures: 1 });
    t.is((await local.store.get(sid))!.shredded_at, null);
    local.objects.down = false;
    t.like(await reconcile(), { shredded: 1, shred_failures: 0 });
    for (const key of [objectKeys.dataset(sid, view.id), objectKeys.dataset(sid, lateId), objectKeys.sessionKey(sid, 1)]) t.false(existsSync(file(key)), key);
    const record = (await local.store.get(sid))!;
    t.truthy(record.shredded_at);
    const audit = await local.call('GET', `/api/tee/sessions/${sid}/audit?limit=200`, { as: BOB });
    const last = audit.body.entries.at(-1);
    t.like(last, { action: 'session.shredded', actor: 'control-plane', details: { deleted_objects: 3 } });
    t.true((await verifyAuditChain(audit.body.entries)).ok);
    // Recorded once: the next runs find nothing to do.
    t.like(await reconcile(), { shredded: 0, shred_failures: 0 });
    t.is((await local.call('GET', `/api/tee/sessions/${sid}/audit?limit=200`, { as: BOB })).body.entries.length, audit.body.entries.length);
  } finally {
    local.close();
  }
});

test('reconcile: a session closed before shredding existed (no shredded_at) is left alone', async (t) => {
  const local = await testApi();
  try {
    const sid = await session(local, []);
    const current = (await local.store.get(sid))!;
    const { nextAuditEntry } = await import('../../../protocol/audit.ts');
    const entry = await nextAuditEntry(current.audit_head, { session_id: sid, at: new Date().toISOString(), actor: OWNER, action: 'session.closed', details: {} });
    const { shredded_at: _none, ...legacy } = { ...current, status: 'CLOSED' as const, closed_at: entry.at };
    await local.store.update({ ...legacy, version: current.version + 1, audit_head: { seq: entry.seq, hash: entry.hash } }, current.version, entry);
    local.clock.advance(3 * 3600 * 1000);
    t.like((await local.call('POST', '/internal/v1/reconcile', { as: TEST_WORKER_EMAIL })).body, { shredded: 0, shred_failures: 0 });
    t.false('shredded_at' in (await local.store.get(sid))!);
  } finally {
    local.close();
  }
});

// --- Nothing malformed answers 5xx

test.serial('no malformed path, method or body on any data route answers 5xx', async (t) => {
  const sid = await session(api, [BOB]);
  api.worker.answer = async () => JSON.stringify(await bundleFor(sid));
  const q = await api.call('POST', `/api/tee/sessions/${sid}/queries`, { as: OWNER, body: { sql: 'SELECT 1' } });
  const paths = [
    `/api/tee/sessions/${sid}/datasets`,
    `/api/tee/sessions/${sid}/datasets/uploads`,
    `/api/tee/sessions/${sid}/session-key`,
    `/api/tee/sessions/${sid}/queries/${q.body.id}/result`,
    `/api/tee/sessions/${sid}/queries/not-a-uuid/result`,
    `/api/tee/sessions/%E0%A4%A/datasets`,
    `/api/tee/sessions/${'x'.repeat(300)}/datasets/uploads`,
    '/objects/datasets/x/y.crds',
    '/objects/%ZZ',
    '/objects/../../etc/passwd',
    `/objects/${objectKeys.dataset(sid, crypto.randomUUID())}?expires=1&max=1&sig=${'A'.repeat(43)}`,
    `/objects/${objectKeys.dataset(sid, crypto.randomUUID())}?expires=99999999999&max=-1&sig=x&sig=y`,
  ];
  const bodies = [
    undefined,
    '',
    '{',
    '[]',
    'null',
    '{"dataset_id":null}',
    `{"nonce":"${'a'.repeat(70_000)}"}`,
    '{"__proto__":{"x":1}}',
    JSON.stringify({ dataset_id: crypto.randomUUID(), ciphertext_bytes: 1e300 }),
    JSON.stringify({ ...(await registration(crypto.randomUUID(), randomBytes(5))), schema: [] }),
    JSON.stringify({ ...(await registration(crypto.randomUUID(), randomBytes(5))), table: 'duckdb_settings' }),
    JSON.stringify({ ...(await registration(crypto.randomUUID(), randomBytes(5))), wrapped_key: 'x'.repeat(5000) }),
  ];
  for (const path of paths) {
    for (const method of ['GET', 'POST', 'PUT', 'DELETE']) {
      for (const raw of bodies) {
        for (const as of [OWNER, EVE, null]) {
          if (method === 'GET' && raw !== undefined) continue;
          const res = await api.call(method, path, {
            ...(as ? { as } : {}),
            ...(raw === undefined ? {} : { raw, headers: { 'content-type': 'application/json' } }),
          });
          t.true(res.status < 500, `${method} ${path} ${raw?.slice(0, 30)} as ${as}: ${res.status} ${JSON.stringify(res.body)}`);
          t.truthy(res.body?.error?.code ?? res.body?.datasets ?? res.body?.session_id, `${method} ${path}`);
        }
      }
    }
  }
});
