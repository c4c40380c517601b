import test from 'ava';
import { verifyAuditChain } from '../../../protocol/audit.ts';
import { testApi, type TestApi } from '../../helpers/api.ts';

const OWNER = 'owner@example.com';
const BOB = 'bob@example.com';
const EVE = 'eve@example.com';

let api: TestApi;
test.before(async () => {
  api = await testApi();
});
test.after.always(() => api.close());

async function create(body: unknown = { name: 'overlap', participant_emails: [BOB] }, as = OWNER) {
  const res = await api.call('POST', '/api/tee/sessions', { as, body });
  if (res.status !== 201) throw new Error(`create failed: ${JSON.stringify(res.body)}`);
  return res.body;
}

test('create: 201, instant ACTIVE session with the creator as owner and participant', async (t) => {
  const res = await api.call('POST', '/api/tee/sessions', {
    as: 'Owner@Example.com',
    body: { name: '  ad overlap ', participant_emails: ['BOB@example.com', 'owner@example.com'], approval_policy: 'none', allow_cross_party_joins: true },
  });
  t.is(res.status, 201);
  t.is(res.body.status, 'ACTIVE');
  t.is(res.body.name, 'ad overlap');
  t.is(res.body.owner_email, OWNER);
  t.deepEqual(
    res.body.participants.map((p: any) => [p.email, p.role, p.keys]),
    [
      [OWNER, 'owner', null],
      [BOB, 'participant', null],
    ],
  );
  t.deepEqual(res.body.config, { allow_cross_party_joins: true, approval_policy: 'none' });
  t.regex(res.body.id, /^[0-9a-f-]{36}$/);
  t.is(res.headers.get('location'), `/api/tee/sessions/${res.body.id}`);
  t.truthy(Date.parse(res.body.created_at));
  t.is(res.body.closed_at, null);
});

test('create: {name} alone gets the strict defaults', async (t) => {
  const body = await create({ name: 'seed client' });
  t.deepEqual(body.config, { allow_cross_party_joins: false, approval_policy: 'all_participants' });
  t.deepEqual(
    body.participants.map((p: any) => p.email),
    [OWNER],
  );
});

const invalidCreates: Array<[string, unknown, string]> = [
  ['missing name', { participant_emails: [] }, 'VALIDATION_FAILED'],
  ['empty name', { name: '   ' }, 'VALIDATION_FAILED'],
  ['long name', { name: 'x'.repeat(129) }, 'VALIDATION_FAILED'],
  ['control characters in name', { name: 'a\u0000b' }, 'VALIDATION_FAILED'],
  ['name not a string', { name: 42 }, 'VALIDATION_FAILED'],
  ['bad email', { name: 'n', participant_emails: ['not-an-email'] }, 'VALIDATION_FAILED'],
  ['email not a string', { name: 'n', participant_emails: [{}] }, 'VALIDATION_FAILED'],
  ['participants not an array', { name: 'n', participant_emails: 'a@b.co' }, 'VALIDATION_FAILED'],
  ['too many participants', { name: 'n', participant_emails: Array.from({ length: 50 }, (_, i) => `p${i}@example.com`) }, 'VALIDATION_FAILED'],
  ['unknown field', { name: 'n', status: 'CLOSED' }, 'VALIDATION_FAILED'],
  ['bad policy', { name: 'n', approval_policy: 'anyone' }, 'VALIDATION_FAILED'],
  ['cross-party flag not boolean', { name: 'n', allow_cross_party_joins: 'yes' }, 'VALIDATION_FAILED'],
  ['body is an array', [], 'VALIDATION_FAILED'],
  ['body is null', null, 'VALIDATION_FAILED'],
  ['prototype pollution attempt', JSON.parse('{"name":"n","__proto__":{"admin":true}}'), 'VALIDATION_FAILED'],
];
for (const [label, body, code] of invalidCreates) {
  test(`create: ${label} → 400 ${code}`, async (t) => {
    const res = await api.call('POST', '/api/tee/sessions', { as: OWNER, body });
    t.is(res.status, 400);
    t.is(res.body.error.code, code);
    t.is(typeof res.body.error.message, 'string');
  });
}

test('create: malformed JSON → 400 MALFORMED_JSON; wrong content type → 415; oversized body → 413', async (t) => {
  const bad = await api.call('POST', '/api/tee/sessions', { as: OWNER, raw: '{"name":', headers: { 'content-type': 'application/json' } });
  t.is(bad.status, 400);
  t.is(bad.body.error.code, 'MALFORMED_JSON');
  const text = await api.call('POST', '/api/tee/sessions', { as: OWNER, raw: 'name=x', headers: { 'content-type': 'text/plain' } });
  t.is(text.status, 415);
  t.is(text.body.error.code, 'UNSUPPORTED_MEDIA_TYPE');
  const big = await api.call('POST', '/api/tee/sessions', { as: OWNER, body: { name: 'n', pad: 'x'.repeat(70_000) } });
  t.is(big.status, 413);
  t.is(big.body.error.code, 'PAYLOAD_TOO_LARGE');
  const invalidUtf8 = await api.call('POST', '/api/tee/sessions', { as: OWNER, raw: '{"name":"\udc00"}', headers: { 'content-type': 'application/json' } });
  t.true(invalidUtf8.status < 500);
});

test('auth: missing, malformed, forged, expired and wrong-audience tokens → 401 UNAUTHENTICATED with no detail', async (t) => {
  const good = await api.token(OWNER);
  const [h, p] = good.split('.');
  const forgedPayload = Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(p!, 'base64url').toString()), email: EVE })).toString('base64url');
  const { SignJWT, generateKeyPair } = await import('jose');
  const { privateKey } = await generateKeyPair('ES256');
  const selfSigned = await new SignJWT({ email: OWNER, email_verified: true })
    .setProtectedHeader({ alg: 'ES256', kid: JSON.parse(Buffer.from(h!, 'base64url').toString()).kid })
    .setIssuer('urn:cleanroom:dev-idp')
    .setAudience('cleanroom-local')
    .setSubject('x')
    .setIssuedAt()
    .setExpirationTime('1h')
    .sign(privateKey);
  const noneAlg = `${Buffer.from('{"alg":"none"}').toString('base64url')}.${p}.`;
  const expired = await api.devIdp.issue(OWNER, { ttlSeconds: -60 });
  const cases: Array<[string, Record<string, string>]> = [
    ['no header', {}],
    ['not bearer', { authorization: `Basic ${good}` }],
    ['garbage', { authorization: 'Bearer not.a.jwt' }],
    ['payload swapped', { authorization: `Bearer ${h}.${forgedPayload}.${good.split('.')[2]}` }],
    ['signed by another key', { authorization: `Bearer ${selfSigned}` }],
    ['alg none', { authorization: `Bearer ${noneAlg}` }],
    ['expired', { authorization: `Bearer ${expired.token}` }],
    ['huge', { authorization: `Bearer ${'a'.repeat(9000)}` }],
  ];
  for (const [label, headers] of cases) {
    const res = await api.call('GET', '/api/tee/sessions', { headers });
    t.is(res.status, 401, label);
    t.is(res.body.error.code, 'UNAUTHENTICATED', label);
    t.is(res.headers.get('www-authenticate'), 'Bearer', label);
  }
  // The log says why, but never holds the token.
  const logged = JSON.stringify(api.log.lines);
  t.false(logged.includes(good.split('.')[2]!));
  t.false(logged.includes(selfSigned));
});

test('get: participants see the session; others get 404 exactly as for a missing id', async (t) => {
  const s = await create();
  const asBob = await api.call('GET', `/api/tee/sessions/${s.id}`, { as: BOB });
  t.is(asBob.status, 200);
  t.is(asBob.body.id, s.id);
  const asEve = await api.call('GET', `/api/tee/sessions/${s.id}`, { as: EVE });
  const missing = await api.call('GET', `/api/tee/sessions/${crypto.randomUUID()}`, { as: EVE });
  const malformed = await api.call('GET', '/api/tee/sessions/..%2F..%2Fetc', { as: EVE });
  t.is(asEve.status, 404);
  t.deepEqual(asEve.body, missing.body);
  t.is(malformed.status, 404);
  t.is(asEve.body.error.code, 'SESSION_NOT_FOUND');
});

test("list: only the caller's sessions, newest first, status filter, cursor pagination without gaps", async (t) => {
  const user = `lister-${crypto.randomUUID()}@example.com`;
  const ids: string[] = [];
  for (let i = 0; i < 7; i++) ids.push((await create({ name: `s${i}` }, user)).id);
  await create({ name: 'someone else' }, `other-${crypto.randomUUID()}@example.com`);
  await api.call('DELETE', `/api/tee/sessions/${ids[0]}`, { as: user });
  const seen: string[] = [];
  let cursor: string | null = null;
  let pages = 0;
  do {
    const q: string = cursor ? `&cursor=${encodeURIComponent(cursor)}` : '';
    const res = await api.call('GET', `/api/tee/sessions?limit=3${q}`, { as: user });
    t.is(res.status, 200);
    seen.push(...res.body.sessions.map((s: any) => s.id));
    cursor = res.body.next_cursor;
    pages++;
  } while (cursor && pages < 10);
  t.deepEqual(seen, [...ids].reverse());
  t.is(pages, 3);
  const active = await api.call('GET', '/api/tee/sessions?status=ACTIVE', { as: user });
  t.deepEqual(
    active.body.sessions.map((s: any) => s.id),
    ids.slice(1).reverse(),
  );
  const closed = await api.call('GET', '/api/tee/sessions?status=CLOSED', { as: user });
  t.deepEqual(
    closed.body.sessions.map((s: any) => s.id),
    [ids[0]],
  );
});

test('list: bad query parameters → 400 with stable codes', async (t) => {
  for (const [q, code] of [
    ['status=RUNNING', 'VALIDATION_FAILED'],
    ['limit=0', 'VALIDATION_FAILED'],
    ['limit=1000', 'VALIDATION_FAILED'],
    ['limit=abc', 'VALIDATION_FAILED'],
    ['cursor=garbage', 'INVALID_CURSOR'],
    [`cursor=${Buffer.from('{"c":"x","i":"y"}').toString('base64url')}`, 'INVALID_CURSOR'],
    ['unknown=1', 'VALIDATION_FAILED'],
  ] as const) {
    const res = await api.call('GET', `/api/tee/sessions?${q}`, { as: OWNER });
    t.is(res.status, 400, q);
    t.is(res.body.error.code, code, q);
  }
});

test('close: owner only, idempotent, and a closed session refuses every change with SESSION_CLOSED', async (t) => {
  const s = await create();
  const byBob = await api.call('DELETE', `/api/tee/sessions/${s.id}`, { as: BOB });
  t.is(byBob.status, 403);
  t.is(byBob.body.error.code, 'NOT_SESSION_OWNER');
  const byEve = await api.call('DELETE', `/api/tee/sessions/${s.id}`, { as: EVE });
  t.is(byEve.status, 404);
  const first = await api.call('DELETE', `/api/tee/sessions/${s.id}`, { as: OWNER });
  t.is(first.status, 200);
  t.is(first.body.status, 'CLOSED');
  t.truthy(first.body.closed_at);
  const again = await api.call('DELETE', `/api/tee/sessions/${s.id}`, { as: OWNER });
  t.is(again.status, 200);
  t.is(again.body.closed_at, first.body.closed_at);
  const add = await api.call('POST', `/api/tee/sessions/${s.id}/participants`, { as: OWNER, body: { email: EVE } });
  t.is(add.status, 409);
  t.is(add.body.error.code, 'SESSION_CLOSED');
  const remove = await api.call('DELETE', `/api/tee/sessions/${s.id}/participants/${BOB}`, { as: OWNER });
  t.is(remove.body.error.code, 'SESSION_CLOSED');
  // Idempotent close added one audit entry, not two.
  const audit = await api.call('GET', `/api/tee/sessions/${s.id}/audit`, { as: OWNER });
  t.deepEqual(
    audit.body.entries.map((e: any) => e.action),
    ['session.created', 'session.closed'],
  );
});

test('close: racing closes both answer 200 and leave one audit entry', async (t) => {
  const s = await create();
  const results = await Promise.all([1, 2, 3].map(() => api.call('DELETE', `/api/tee/sessions/${s.id}`, { as: OWNER })));
  t.deepEqual(
    results.map((r) => r.status),
    [200, 200, 200],
  );
  const audit = await api.call('GET', `/api/tee/sessions/${s.id}/audit`, { as: OWNER });
  t.is(audit.body.entries.filter((e: any) => e.action === 'session.closed').length, 1);
});

test('participants: owner adds and removes; non-owners cannot; owner cannot be removed', async (t) => {
  const s = await create();
  const add = await api.call('POST', `/api/tee/sessions/${s.id}/participants`, { as: OWNER, body: { email: 'Carol@Example.com' } });
  t.is(add.status, 201);
  t.true(add.body.participants.some((p: any) => p.email === 'carol@example.com'));
  const dup = await api.call('POST', `/api/tee/sessions/${s.id}/participants`, { as: OWNER, body: { email: 'carol@example.com' } });
  t.is(dup.body.error.code, 'PARTICIPANT_EXISTS');
  const byBob = await api.call('POST', `/api/tee/sessions/${s.id}/participants`, { as: BOB, body: { email: EVE } });
  t.is(byBob.body.error.code, 'NOT_SESSION_OWNER');
  const carolSees = await api.call('GET', `/api/tee/sessions/${s.id}`, { as: 'carol@example.com' });
  t.is(carolSees.status, 200);
  const removeOwner = await api.call('DELETE', `/api/tee/sessions/${s.id}/participants/${OWNER}`, { as: OWNER });
  t.is(removeOwner.body.error.code, 'OWNER_CANNOT_LEAVE');
  const removeGhost = await api.call('DELETE', `/api/tee/sessions/${s.id}/participants/ghost@example.com`, { as: OWNER });
  t.is(removeGhost.body.error.code, 'PARTICIPANT_NOT_FOUND');
  const badEmail = await api.call('DELETE', `/api/tee/sessions/${s.id}/participants/%E0%A4%A`, { as: OWNER });
  t.is(badEmail.status, 400);
  const remove = await api.call('DELETE', `/api/tee/sessions/${s.id}/participants/carol%40example.com`, { as: OWNER });
  t.is(remove.status, 200);
  const carolGone = await api.call('GET', `/api/tee/sessions/${s.id}`, { as: 'carol@example.com' });
  t.is(carolGone.status, 404);
});

test('legacy /api/tee/environments routes answer 410 ENDPOINT_MOVED with Deprecation and Link', async (t) => {
  for (const [method, path, successor] of [
    ['POST', '/api/tee/environments', '/api/tee/sessions'],
    ['GET', '/api/tee/environments', '/api/tee/sessions'],
    ['GET', '/api/tee/environments/abc', '/api/tee/sessions/abc'],
    ['DELETE', '/api/tee/environments/abc', '/api/tee/sessions/abc'],
  ] as const) {
    const res = await api.call(method, path, method === 'POST' ? { as: OWNER, body: { name: 'x' } } : { as: OWNER });
    t.is(res.status, 410, `${method} ${path}`);
    t.is(res.body.error.code, 'ENDPOINT_MOVED');
    t.true(res.body.error.message.includes(successor));
    t.is(res.headers.get('deprecation'), 'true');
    t.is(res.headers.get('link'), `<${successor}>; rel="successor-version"`);
  }
});

test('routing: unknown route → 404 ROUTE_NOT_FOUND; wrong method → 405 with Allow', async (t) => {
  const unknown = await api.call('GET', '/api/tee/nothing', { as: OWNER });
  t.is(unknown.status, 404);
  t.is(unknown.body.error.code, 'ROUTE_NOT_FOUND');
  const wrong = await api.call('PATCH', '/api/tee/sessions', { as: OWNER });
  t.is(wrong.status, 405);
  t.is(wrong.body.error.code, 'METHOD_NOT_ALLOWED');
  t.is(wrong.headers.get('allow'), 'POST, GET');
});

test('audit: every change is chained; participants read it; the chain verifies and its head matches', async (t) => {
  const s = await create();
  await api.call('POST', `/api/tee/sessions/${s.id}/participants`, { as: OWNER, body: { email: 'carol@example.com' } });
  await api.call('DELETE', `/api/tee/sessions/${s.id}/participants/carol@example.com`, { as: OWNER });
  await api.call('DELETE', `/api/tee/sessions/${s.id}`, { as: OWNER });
  const res = await api.call('GET', `/api/tee/sessions/${s.id}/audit`, { as: BOB });
  t.is(res.status, 200);
  t.deepEqual(
    res.body.entries.map((e: any) => [e.seq, e.action, e.actor]),
    [
      [1, 'session.created', OWNER],
      [2, 'participant.added', OWNER],
      [3, 'participant.removed', OWNER],
      [4, 'session.closed', OWNER],
    ],
  );
  const verdict = await verifyAuditChain(res.body.entries);
  t.deepEqual(verdict, { ok: true, head: res.body.head });
  const page = await api.call('GET', `/api/tee/sessions/${s.id}/audit?after_seq=2&limit=1`, { as: OWNER });
  t.deepEqual(
    page.body.entries.map((e: any) => e.seq),
    [3],
  );
  t.is(page.body.next_after_seq, 3);
  const eve = await api.call('GET', `/api/tee/sessions/${s.id}/audit`, { as: EVE });
  t.is(eve.status, 404);
  const tampered = structuredClone(res.body.entries);
  tampered[1].details.email = 'mallory@example.com';
  t.deepEqual(await verifyAuditChain(tampered), { ok: false, seq: 2 });
});

test('no malformed request produces a 5xx', async (t) => {
  const s = await create();
  const paths = ['/api/tee/sessions', `/api/tee/sessions/${s.id}`, `/api/tee/sessions/${s.id}/participants`, `/api/tee/sessions/${s.id}/participants/me/keys`, `/api/tee/sessions/${s.id}/audit`];
  const bodies = ['', 'null', '[]', '"x"', '{', '{"a":1}', '1e999', '{"name":{"$gt":""}}', '\u0000', '{"email":"a@b.co","x":1}', '{"signing_jwk":{}}'];
  for (const path of paths) {
    for (const method of ['GET', 'POST', 'PUT', 'DELETE']) {
      for (const raw of bodies) {
        const res = await api.call(method, path, method === 'GET' ? { as: OWNER } : { as: OWNER, raw, headers: { 'content-type': 'application/json' } });
        t.true(res.status < 500, `${method} ${path} ${raw} → ${res.status}`);
        t.truthy(res.body?.error?.code ?? res.body?.id ?? res.body?.entries ?? res.body?.sessions ?? res.body?.email, `${method} ${path}`);
      }
    }
  }
});
