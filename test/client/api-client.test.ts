import test from 'ava';
import { CleanroomError, type ErrorCode } from '../../protocol/errors.ts';
import { CleanroomApi } from '../../client/sdk/api-client.ts';
import { requestDevToken } from '../../client/sdk/dev-idp.ts';
import { TransportError } from '../../client/sdk/errors.ts';
import type { FetchLike } from '../../client/sdk/transport.ts';
import { deadUrl, fakeServer, localStack } from './local-stack.ts';

let stack: Awaited<ReturnType<typeof localStack>>;
test.before(async () => {
  stack = await localStack();
});
test.after.always(async () => {
  await stack?.stop();
});

/** An SDK client acting as `email`, with a fresh dev token per request. */
function as(email: string, extra: { fetch?: FetchLike } = {}) {
  return new CleanroomApi({
    baseUrl: `${stack.apiUrl}/`,
    token: async () => (await stack.devIdp.issue(email)).token,
    ...extra,
  });
}

/** A fetch that counts its calls and passes them on. */
function countingFetch(): FetchLike & { calls: number } {
  const f = Object.assign(
    (input: string, init: RequestInit) => {
      f.calls++;
      return fetch(input, init);
    },
    { calls: 0 },
  );
  return f;
}

/** A fetch that answers every request with one canned response. */
function cannedFetch(status: number, body: string, headers: Record<string, string> = {}): FetchLike {
  return async () => new Response(body, { status, headers });
}

test('sdk: create, get and close a session round-trip as SessionView', async (t) => {
  const api = as('rt@example.com');
  const created = await api.createSession({ name: 'rt', participant_emails: ['bob@example.com'], approval_policy: 'none' });
  t.is(created.status, 'ACTIVE');
  t.deepEqual(
    created.participants.map((p) => p.role),
    ['owner', 'participant'],
  );
  t.deepEqual(await api.getSession(created.id), created);
  const closed = await api.closeSession(created.id);
  t.is(closed.status, 'CLOSED');
  t.is((await api.getSession(created.id)).status, 'CLOSED');
});

test('sdk: listSessions returns one page with a cursor; iterateSessions walks every page newest first', async (t) => {
  const api = as('pages@example.com');
  const ids: string[] = [];
  for (let i = 0; i < 5; i++) ids.push((await api.createSession({ name: `p${i}` })).id);
  const first = await api.listSessions({ limit: 2 });
  t.is(first.sessions.length, 2);
  t.truthy(first.next_cursor);
  const second = await api.listSessions({ limit: 2, cursor: first.next_cursor! });
  t.notDeepEqual(
    second.sessions.map((s) => s.id),
    first.sessions.map((s) => s.id),
  );

  const fetchSpy = countingFetch();
  const walked: string[] = [];
  for await (const s of as('pages@example.com', { fetch: fetchSpy }).iterateSessions({ limit: 2 })) walked.push(s.id);
  t.deepEqual(walked, [...ids].reverse());
  t.is(fetchSpy.calls, 3);
});

test('sdk: iterateSessions filters by status', async (t) => {
  const api = as('status@example.com');
  const a = await api.createSession({ name: 'a' });
  const b = await api.createSession({ name: 'b' });
  await api.closeSession(a.id);
  const active: string[] = [];
  for await (const s of api.iterateSessions({ status: 'ACTIVE', limit: 1 })) active.push(s.id);
  t.deepEqual(active, [b.id]);
  const closed: string[] = [];
  for await (const s of api.iterateSessions({ status: 'CLOSED' })) closed.push(s.id);
  t.deepEqual(closed, [a.id]);
});

test('sdk: the token function is asked before every request', async (t) => {
  let asked = 0;
  const api = new CleanroomApi({
    baseUrl: stack.apiUrl,
    token: async () => {
      asked++;
      return (await stack.devIdp.issue('asked@example.com')).token;
    },
  });
  await api.listSessions();
  await api.listSessions();
  t.is(asked, 2);
});

const apiErrors: Array<[string, (api: CleanroomApi, other: string) => Promise<unknown>, ErrorCode, number]> = [
  ['a session of others', (api, other) => api.getSession(other), 'SESSION_NOT_FOUND', 404],
  ['closing a session of others', (api, other) => api.closeSession(other), 'SESSION_NOT_FOUND', 404],
  ['a missing session', (api) => api.getSession('does-not-exist'), 'SESSION_NOT_FOUND', 404],
  ['an invalid participant email', (api) => api.createSession({ name: 'x', participant_emails: ['nope'] }), 'VALIDATION_FAILED', 400],
  ['an empty name', (api) => api.createSession({ name: ' ' }), 'VALIDATION_FAILED', 400],
  ['a forged cursor', (api) => api.listSessions({ cursor: 'bm9wZQ' }), 'INVALID_CURSOR', 400],
  ['a page size over the maximum', (api) => api.listSessions({ limit: 1000 }), 'VALIDATION_FAILED', 400],
];
for (const [name, call, code, status] of apiErrors) {
  test(`sdk: ${name} throws CleanroomError ${code}`, async (t) => {
    const other = (await as('other-owner@example.com').createSession({ name: 'theirs' })).id;
    const error = await t.throwsAsync(call(as('caller@example.com'), other), { instanceOf: CleanroomError });
    t.is(error?.code, code);
    t.is(error?.status, status);
  });
}

test('sdk: a non-owner participant closing gets NOT_SESSION_OWNER', async (t) => {
  const { id } = await as('own@example.com').createSession({ name: 'x', participant_emails: ['part@example.com'] });
  const error = await t.throwsAsync(as('part@example.com').closeSession(id), { instanceOf: CleanroomError });
  t.is(error?.code, 'NOT_SESSION_OWNER');
});

test('sdk: a refused token throws UNAUTHENTICATED', async (t) => {
  const api = new CleanroomApi({ baseUrl: stack.apiUrl, token: async () => 'not.a.token' });
  const error = await t.throwsAsync(api.listSessions(), { instanceOf: CleanroomError });
  t.is(error?.code, 'UNAUTHENTICATED');
});

test('sdk: an id that would walk the URL is refused before any request', async (t) => {
  const fetchSpy = countingFetch();
  const api = as('walker@example.com', { fetch: fetchSpy });
  for (const id of ['..', '../sessions', 'a/b', '', 'x'.repeat(129)]) {
    const error = await t.throwsAsync(api.getSession(id), { instanceOf: CleanroomError });
    t.is(error?.code, 'VALIDATION_FAILED');
  }
  t.is(fetchSpy.calls, 0);
});

test('sdk: nothing listening throws TransportError API_UNREACHABLE naming the URL', async (t) => {
  const url = await deadUrl();
  const api = new CleanroomApi({ baseUrl: url, token: async () => 't' });
  const error = await t.throwsAsync(api.listSessions(), { instanceOf: TransportError });
  t.is(error?.code, 'API_UNREACHABLE');
  t.true(error?.message.startsWith(`cannot reach the API at ${url}`));
});

test('sdk: an API that does not answer in time throws API_TIMEOUT', async (t) => {
  const server = await fakeServer(() => {});
  t.teardown(() => server.close());
  const api = new CleanroomApi({ baseUrl: server.url, token: async () => 't', timeoutMs: 100 });
  const error = await t.throwsAsync(api.listSessions(), { instanceOf: TransportError });
  t.is(error?.code, 'API_TIMEOUT');
});

const oddAnswers: Array<[string, number, string]> = [
  ['an HTML error page', 502, '<html>Bad gateway</html>'],
  ['an error code this client does not know', 418, '{"error":{"code":"TEAPOT","message":"short and stout"}}'],
  ['a success body of another shape', 200, '{"items":[]}'],
  ['a redirect', 302, ''],
];
for (const [name, status, body] of oddAnswers) {
  test(`sdk: ${name} throws UNEXPECTED_RESPONSE`, async (t) => {
    const api = new CleanroomApi({ baseUrl: 'http://api.test', token: async () => 't', fetch: cannedFetch(status, body) });
    const error = await t.throwsAsync(api.listSessions(), { instanceOf: TransportError });
    t.is(error?.code, 'UNEXPECTED_RESPONSE');
    t.is(error?.status, status);
  });
}

test('sdk: Retry-After of a 429 is kept on the CleanroomError', async (t) => {
  const body = '{"error":{"code":"RATE_LIMITED","message":"slow down"}}';
  const api = new CleanroomApi({ baseUrl: 'http://api.test', token: async () => 't', fetch: cannedFetch(429, body, { 'retry-after': '7' }) });
  const error = await t.throwsAsync(api.listSessions(), { instanceOf: CleanroomError });
  t.is(error?.code, 'RATE_LIMITED');
  t.is(error?.retryAfter, 7);
});

test('sdk: a page cursor that does not advance stops the iterator with UNEXPECTED_RESPONSE', async (t) => {
  const session = await as('loop@example.com').createSession({ name: 'loop' });
  const page = JSON.stringify({ sessions: [session], next_cursor: 'same' });
  const api = new CleanroomApi({ baseUrl: 'http://api.test', token: async () => 't', fetch: cannedFetch(200, page) });
  const seen: string[] = [];
  const error = await t.throwsAsync(
    async () => {
      for await (const s of api.iterateSessions()) seen.push(s.id);
    },
    { instanceOf: TransportError },
  );
  t.is(error?.code, 'UNEXPECTED_RESPONSE');
  t.is(seen.length, 2);
});

test('sdk: requests carry the bearer token and JSON content type', async (t) => {
  const seen: Array<{ url: string; init: RequestInit }> = [];
  const page = JSON.stringify({ sessions: [], next_cursor: null });
  const api = new CleanroomApi({
    baseUrl: 'http://api.test/',
    token: async () => 'tok',
    fetch: async (url, init) => {
      seen.push({ url, init });
      return new Response(page);
    },
  });
  await api.listSessions({ status: 'ACTIVE', limit: 5 });
  t.is(seen[0]?.url, 'http://api.test/api/tee/sessions?status=ACTIVE&limit=5');
  t.like(seen[0]?.init.headers, { authorization: 'Bearer tok' });
});

test('sdk: requestDevToken gets a token from the local stack and null where the route is missing', async (t) => {
  const issued = await requestDevToken({ baseUrl: stack.apiUrl, email: 'Dev@Example.com' });
  t.truthy(issued?.id_token);
  t.true(Date.parse(issued!.expires_at) > Date.now());

  const html = await fakeServer((_req, res) => res.writeHead(404, { 'content-type': 'text/html' }).end('<h1>Not Found</h1>'));
  t.teardown(() => html.close());
  t.is(await requestDevToken({ baseUrl: html.url, email: 'dev@example.com' }), null);

  const error = await t.throwsAsync(requestDevToken({ baseUrl: stack.apiUrl, email: 'not-an-email' }), { instanceOf: CleanroomError });
  t.is(error?.code, 'VALIDATION_FAILED');
});
