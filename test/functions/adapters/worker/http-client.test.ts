import test from 'ava';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { CleanroomError, type ErrorCode } from '../../../../protocol/errors.ts';
import { HttpWorkerClient } from '../../../../functions/adapters/worker/http-client.ts';
import { googleIdTokenSource } from '../../../../functions/adapters/worker/google-token.ts';

interface Seen {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: string;
}

/** A tiny worker stand-in: records each request and answers with `reply`. */
async function tinyServer(reply: (seen: Seen, res: ServerResponse) => void): Promise<{ url: string; seen: Seen[]; server: Server }> {
  const seen: Seen[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (chunk) => (body += String(chunk)));
    req.on('end', () => {
      const entry = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body };
      seen.push(entry);
      reply(entry, res);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen, server };
}

function send(res: ServerResponse, status: number, body: string | Buffer, headers: Record<string, string> = {}) {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(body);
}

async function refusedWith(t: import('ava').ExecutionContext, promise: Promise<unknown>, code: ErrorCode): Promise<CleanroomError> {
  const error = await t.throwsAsync(promise);
  t.true(error instanceof CleanroomError, String(error));
  t.is((error as CleanroomError).code, code);
  return error as CleanroomError;
}

test('worker client: POSTs the JWS as application/jose to /session-keys with a bearer token for that URL; answers the body', async (t) => {
  const { url, seen, server } = await tinyServer((_, res) => send(res, 200, '{"session_id":"s"}'));
  t.teardown(() => (server.close(), server.closeAllConnections()));
  const audiences: string[] = [];
  const client = new HttpWorkerClient({
    url: `${url}/`,
    tokenSource: async (audience) => {
      audiences.push(audience);
      return 'token-123';
    },
  });
  t.is(await client.sessionKey('a.b.c'), '{"session_id":"s"}');
  t.like(seen[0], { method: 'POST', url: '/session-keys', body: 'a.b.c' });
  t.is(seen[0]!.headers.authorization, 'Bearer token-123');
  t.is(seen[0]!.headers['content-type'], 'application/jose');
  t.deepEqual(audiences, [`${url}/session-keys`]);
});

test("worker client: 5xx and anything unreadable is WORKER_UNAVAILABLE with Retry-After (the worker's when it sent one)", async (t) => {
  const replies: Array<[string, (res: ServerResponse) => void, number]> = [
    ['503 with Retry-After', (res) => send(res, 503, '{"error":{"code":"SESSION_KEY_UNAVAILABLE","message":"kms"}}', { 'retry-after': '9' }), 9],
    ['500', (res) => send(res, 500, 'boom'), 5],
    ['200, not UTF-8', (res) => send(res, 200, Buffer.from([0x7b, 0xff, 0xfe, 0x7d])), 5],
    ['200, too large', (res) => send(res, 200, 'x'.repeat(200 * 1024)), 5],
    ['a redirect', (res) => send(res, 302, '', { location: 'http://169.254.169.254/' }), 5],
  ];
  for (const [label, reply, after] of replies) {
    const { url, server } = await tinyServer((_, res) => reply(res));
    t.teardown(() => (server.close(), server.closeAllConnections()));
    const client = new HttpWorkerClient({ url, tokenSource: async () => 't' });
    const error = await refusedWith(t, client.sessionKey('a.b.c'), 'WORKER_UNAVAILABLE');
    t.is(error.retryAfter, after, label);
  }
});

test("worker client: a 4xx keeps the worker's code when it is ours; a refusal of our credentials or an unknown code is WORKER_UNAVAILABLE", async (t) => {
  const cases: Array<[number, string, ErrorCode]> = [
    [409, '{"error":{"code":"SESSION_CLOSED","message":"x"}}', 'SESSION_CLOSED'],
    [400, '{"error":{"code":"TASK_MALFORMED","message":"x"}}', 'TASK_MALFORMED'],
    [429, '{"error":{"code":"RATE_LIMITED","message":"x"}}', 'RATE_LIMITED'],
    [401, '{"error":{"code":"TASK_UNAUTHENTICATED","message":"x"}}', 'WORKER_UNAVAILABLE'],
    [403, '{"error":{"code":"FORBIDDEN","message":"x"}}', 'WORKER_UNAVAILABLE'],
    [400, '{"error":{"code":"SOMETHING_NEW","message":"x"}}', 'WORKER_UNAVAILABLE'],
    [404, '<html>not found</html>', 'WORKER_UNAVAILABLE'],
    // A 4xx status with a 5xx code of ours is not a refusal we can pass on.
    [400, '{"error":{"code":"INTERNAL","message":"x"}}', 'WORKER_UNAVAILABLE'],
  ];
  for (const [status, body, code] of cases) {
    const { url, server } = await tinyServer((_, res) => send(res, status, body, { 'retry-after': '3' }));
    t.teardown(() => (server.close(), server.closeAllConnections()));
    const client = new HttpWorkerClient({ url, tokenSource: async () => 't' });
    const error = await refusedWith(t, client.sessionKey('a.b.c'), code);
    // The worker's message is not relayed.
    t.false(error.message.includes('"x"'));
    if (code === 'RATE_LIMITED') t.is(error.retryAfter, 3);
  }
});

test('worker client: unreachable, a token failure and a worker that never answers are WORKER_UNAVAILABLE, the last at the deadline', async (t) => {
  const closed = await tinyServer(() => {});
  closed.server.close();
  await refusedWith(t, new HttpWorkerClient({ url: closed.url, tokenSource: async () => 't' }).sessionKey('a.b.c'), 'WORKER_UNAVAILABLE');
  const { url, server } = await tinyServer(() => {});
  t.teardown(() => (server.close(), server.closeAllConnections()));
  const noToken = new HttpWorkerClient({ url, tokenSource: async () => Promise.reject(new Error('metadata server down')) });
  await refusedWith(t, noToken.sessionKey('a.b.c'), 'WORKER_UNAVAILABLE');
  const started = Date.now();
  await refusedWith(t, new HttpWorkerClient({ url, tokenSource: async () => 't', timeoutMs: 200 }).sessionKey('a.b.c'), 'WORKER_UNAVAILABLE');
  t.true(Date.now() - started < 3000);
});

test('google token source: one ID token client per audience, the bearer token of its headers; a failed client is made again', async (t) => {
  const made: string[] = [];
  let failNext = true;
  const auth = {
    async getIdTokenClient(audience: string) {
      made.push(audience);
      if (failNext) {
        failNext = false;
        throw new Error('no credentials yet');
      }
      return { getRequestHeaders: async () => new Headers({ authorization: `Bearer id-token-for-${audience.length}` }) };
    },
  };
  const source = googleIdTokenSource(auth as never);
  await t.throwsAsync(source('https://worker/session-keys'));
  t.is(await source('https://worker/session-keys'), 'id-token-for-27');
  t.is(await source('https://worker/session-keys'), 'id-token-for-27');
  t.deepEqual(made, ['https://worker/session-keys', 'https://worker/session-keys']);
  const empty = googleIdTokenSource({ getIdTokenClient: async () => ({ getRequestHeaders: async () => new Headers() }) } as never);
  await t.throwsAsync(empty('https://worker/x'));
});
