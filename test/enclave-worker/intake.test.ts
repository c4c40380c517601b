import test from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateKeyPairSync } from 'node:crypto';
import { OAuth2Client } from 'google-auth-library';
import { SignJWT, createLocalJWKSet, generateKeyPair, importPKCS8 } from 'jose';
import { googleCallerVerifier, jwksCallerVerifier } from '../../enclave-worker/intake/caller.ts';
import { createTaskIntake, type TaskIntakeDeps } from '../../enclave-worker/intake/handler.ts';
import { SqliteLeaseStore } from '../../enclave-worker/intake/lease-store.ts';
import { DEV_AUDIENCE, DEV_ISSUER, DevIdentityProvider } from '../../functions/adapters/identity/dev-idp.ts';
import { CleanroomError, ERROR_STATUS, type ErrorCode } from '../../protocol/errors.ts';
import { TASK_AUDIENCE, TASK_ISSUER, signSessionKeyRequest, type TaskPayload } from '../../protocol/task.ts';
import { TASK_TYP, signedTask, taskPayload, testTaskKey } from '../helpers/task.ts';

const dir = mkdtempSync(join(tmpdir(), 'intake-'));
const CONTROL_PLANE = 'control-plane@cleanroom.local';
// Awaited before any test is declared (ava closes declarations once the module yields after one).
const devIdp = await DevIdentityProvider.load(dir);
const otherIdp = await DevIdentityProvider.load(join(dir, 'other'));
const key = await testTaskKey();
const forger = await testTaskKey();
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

const verifyCaller = jwksCallerVerifier({
  audience: DEV_AUDIENCE,
  keys: createLocalJWKSet(devIdp.jwks() as Parameters<typeof createLocalJWKSet>[0]),
});
const bearer = async (email = CONTROL_PLANE, idp = devIdp, nonce?: string) => `Bearer ${(await idp.issue(email, nonce === undefined ? {} : { nonce })).token}`;

/** An intake over an in-memory lease store whose `execute` records calls; overridable. */
function intake(overrides: Partial<TaskIntakeDeps> = {}) {
  const executed: TaskPayload[] = [];
  const deps: TaskIntakeDeps = {
    verifyCaller,
    expectedCallerEmail: CONTROL_PLANE,
    taskKeys: [key.publicJwk],
    leases: SqliteLeaseStore.open(':memory:'),
    execute: async (payload) => {
      executed.push(payload);
      return { status: 'SUCCEEDED' };
    },
    clock: { now: () => new Date() },
    bootId: 'boot-1',
    maxBodyBytes: 64 * 1024,
    ...overrides,
  };
  return { handle: createTaskIntake(deps), executed, deps };
}

async function post(handle: (r: Request) => Promise<Response>, body: BodyInit, init: { authorization?: string | null; headers?: Record<string, string>; signal?: AbortSignal } = {}) {
  const headers: Record<string, string> = { 'content-type': 'application/jose', ...init.headers };
  const authorization = init.authorization === undefined ? await bearer() : init.authorization;
  if (authorization !== null) headers.authorization = authorization;
  const requestInit: RequestInit & { duplex?: 'half' } = { method: 'POST', headers, body, duplex: 'half' };
  if (init.signal) requestInit.signal = init.signal;
  const response = await handle(new Request('http://worker.local/tasks', requestInit));
  return { status: response.status, body: await response.json(), headers: response.headers };
}

function expectCode(t: import('ava').ExecutionContext, result: { status: number; body: any }, code: ErrorCode) {
  t.is(result.body?.error?.code, code);
  t.is(result.status, ERROR_STATUS[code]);
  t.is(typeof result.body.error.message, 'string');
}

test('intake: a valid task runs once and answers 200 with its outcome', async (t) => {
  const { handle, executed } = intake();
  const payload = taskPayload();
  const result = await post(handle, await signedTask(key, payload));
  t.is(result.status, 200);
  t.deepEqual(result.body, { status: 'SUCCEEDED' });
  t.deepEqual(executed, [payload]);
});

test('intake: a replay of a completed task (same jti) is refused and not run', async (t) => {
  const { handle, executed } = intake();
  const jws = await signedTask(key);
  t.is((await post(handle, jws)).status, 200);
  expectCode(t, await post(handle, jws), 'TASK_REPLAYED');
  t.is(executed.length, 1);
});

test('intake: another jti for a query attempt that completed is a replay too', async (t) => {
  const { handle, executed } = intake();
  const first = taskPayload();
  await post(handle, await signedTask(key, first));
  expectCode(t, await post(handle, await signedTask(key, { ...first, jti: crypto.randomUUID() })), 'TASK_REPLAYED');
  t.is(executed.length, 1);
  t.is((await post(handle, await signedTask(key, { ...first, jti: crypto.randomUUID(), attempt: 2 }))).status, 200, 'the next attempt runs');
});

test('intake: a failed query is a finished task: 200 with its fixed code, and not run again', async (t) => {
  const { handle, executed } = intake({ execute: async (p) => (executed.push(p), { status: 'FAILED', code: 'QUERY_TIMEOUT' }) });
  const jws = await signedTask(key);
  const result = await post(handle, jws);
  t.deepEqual([result.status, result.body], [200, { status: 'FAILED', code: 'QUERY_TIMEOUT' }]);
  expectCode(t, await post(handle, jws), 'TASK_REPLAYED');
  t.is(executed.length, 1);
});

test('intake: a duplicate arriving while the task runs gets 503 TASK_IN_PROGRESS with Retry-After', async (t) => {
  let finish!: () => void;
  const running = new Promise<void>((resolve) => (finish = resolve));
  let calls = 0;
  const { handle } = intake({ execute: async () => (calls++, await running, { status: 'SUCCEEDED' }), inProgressRetryAfterSeconds: 7 });
  const jws = await signedTask(key);
  const first = post(handle, jws);
  await new Promise((resolve) => setTimeout(resolve, 20));
  const duplicate = await post(handle, jws);
  expectCode(t, duplicate, 'TASK_IN_PROGRESS');
  t.is(duplicate.headers.get('retry-after'), '7');
  finish();
  t.is((await first).status, 200);
  t.is(calls, 1);
  expectCode(t, await post(handle, jws), 'TASK_REPLAYED');
});

test('intake: a lease held by a previous boot (worker killed) is taken over and the task runs again', async (t) => {
  const path = join(dir, `${crypto.randomUUID()}.sqlite`);
  const oldLeases = SqliteLeaseStore.open(path);
  const stuck = intake({ leases: oldLeases, bootId: 'boot-1', execute: () => new Promise(() => {}) });
  const jws = await signedTask(key);
  void post(stuck.handle, jws); // runs forever: the process "dies" below with the lease held
  await new Promise((resolve) => setTimeout(resolve, 20));
  oldLeases.close();
  const fresh = intake({ leases: SqliteLeaseStore.open(path), bootId: 'boot-2' });
  t.is((await post(fresh.handle, jws)).status, 200);
  t.is(fresh.executed.length, 1);
  expectCode(t, await post(fresh.handle, jws), 'TASK_REPLAYED');
});

test('intake: a task request that closes aborts the query and frees the lease for the redelivery', async (t) => {
  let seen: AbortSignal | undefined;
  let calls = 0;
  let started!: () => void;
  const running = new Promise<void>((resolve) => (started = resolve));
  const { handle } = intake({
    execute: (_, signal) => {
      calls++;
      seen = signal;
      if (calls > 1) return Promise.resolve({ status: 'SUCCEEDED' as const });
      started();
      return new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason)));
    },
  });
  const jws = await signedTask(key);
  const controller = new AbortController();
  const first = post(handle, jws, { signal: controller.signal }).catch(() => null);
  await running;
  controller.abort();
  await first;
  t.true(seen?.aborted);
  t.is((await post(handle, jws)).status, 200, 'the redelivery runs');
  t.is(calls, 2);
});

test('intake: a request already closed when its lease is granted does not start the query', async (t) => {
  const { handle, executed } = intake();
  const controller = new AbortController();
  controller.abort();
  const jws = await signedTask(key);
  await post(handle, jws, { signal: controller.signal }).catch(() => null);
  t.is(executed.length, 0);
  t.is((await post(handle, jws)).status, 200, 'the lease was given back');
});

test('intake: an execution that throws answers 500 INTERNAL and the retry runs it', async (t) => {
  let calls = 0;
  const { handle } = intake({ execute: async () => (++calls === 1 ? Promise.reject(new Error('engine crashed: row 42 = secret')) : { status: 'SUCCEEDED' }) });
  const jws = await signedTask(key);
  const failed = await post(handle, jws);
  expectCode(t, failed, 'INTERNAL');
  t.notRegex(JSON.stringify(failed.body), /secret|row 42/);
  t.is((await post(handle, jws)).status, 200);
});

test('intake: a coded refusal from the executor passes through with its Retry-After', async (t) => {
  const { handle } = intake({ execute: async () => Promise.reject(new CleanroomError('EXECUTOR_BUSY', 'session over its share', { retryAfter: 3 })) });
  const result = await post(handle, await signedTask(key));
  expectCode(t, result, 'EXECUTOR_BUSY');
  t.is(result.headers.get('retry-after'), '3');
});

// The refusal corpus, all against one intake that must keep serving afterwards.
const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
const refusals: Array<[string, () => Promise<{ body: BodyInit; authorization?: string | null; headers?: Record<string, string> }>, ErrorCode]> = [
  ['no caller token', async () => ({ body: await signedTask(key), authorization: null }), 'TASK_UNAUTHENTICATED'],
  ['a caller token that is not a bearer token', async () => ({ body: await signedTask(key), authorization: 'Basic dXNlcjpwYXNz' }), 'TASK_UNAUTHENTICATED'],
  ['a caller token from another issuer key', async () => ({ body: await signedTask(key), authorization: await bearer(CONTROL_PLANE, otherIdp) }), 'TASK_UNAUTHENTICATED'],
  [
    'a caller token with an edited payload',
    async () => {
      const [h, , s] = (await bearer()).slice(7).split('.');
      return {
        body: await signedTask(key),
        authorization: `Bearer ${h}.${b64({ email: CONTROL_PLANE, email_verified: true, iss: DEV_ISSUER, aud: DEV_AUDIENCE, sub: 'x', iat: 1, exp: 9999999999 })}.${s}`,
      };
    },
    'TASK_UNAUTHENTICATED',
  ],
  ['a caller with the wrong email', async () => ({ body: await signedTask(key), authorization: await bearer('mallory@example.com') }), 'TASK_UNAUTHENTICATED'],
  ['a caller token carrying a nonce (a key-binding token)', async () => ({ body: await signedTask(key), authorization: await bearer(CONTROL_PLANE, devIdp, 'n') }), 'TASK_UNAUTHENTICATED'],
  ['a task signed by another key', async () => ({ body: await signedTask(forger) }), 'TASK_SIGNATURE'],
  ['a task signed by another key under our kid', async () => ({ body: await forger.signRaw({ alg: 'ES256', typ: TASK_TYP, kid: key.publicJwk.kid }, taskPayload()) }), 'TASK_SIGNATURE'],
  [
    'a tampered task (payload edited)',
    async () => {
      const [h, , s] = (await signedTask(key)).split('.');
      return { body: `${h}.${b64({ ...taskPayload(), sql: 'SELECT * FROM everything' })}.${s}` };
    },
    'TASK_SIGNATURE',
  ],
  ['a task with the wrong typ', async () => ({ body: await key.signRaw({ alg: 'ES256', typ: 'JWT', kid: key.publicJwk.kid }, taskPayload()) }), 'TASK_SIGNATURE'],
  ['a task with alg none', async () => ({ body: `${b64({ alg: 'none', typ: TASK_TYP, kid: key.publicJwk.kid })}.${b64(taskPayload())}.` }), 'TASK_SIGNATURE'],
  [
    'an expired task',
    async () => {
      const now = Math.floor(Date.now() / 1000);
      return { body: await signedTask(key, taskPayload({ iat: now - 7200, exp: now - 3600 })) };
    },
    'TASK_EXPIRED',
  ],
  [
    'a session key request (kind session_key) posted as a task',
    async () => {
      const now = Math.floor(Date.now() / 1000);
      const request = {
        v: 1,
        kind: 'session_key',
        iss: TASK_ISSUER,
        aud: TASK_AUDIENCE,
        jti: crypto.randomUUID(),
        iat: now,
        exp: now + 60,
        session_id: crypto.randomUUID(),
        nonce: 'n'.repeat(43),
      } as const;
      return { body: await signSessionKeyRequest(request, key.signer) };
    },
    'TASK_MALFORMED',
  ],
  ['a signed task off the schema', async () => ({ body: await key.signRaw({ alg: 'ES256', typ: TASK_TYP, kid: key.publicJwk.kid }, { ...taskPayload(), attempt: 0 }) }), 'TASK_MALFORMED'],
  ['a garbage body', async () => ({ body: 'this is not a task' }), 'TASK_MALFORMED'],
  ['an empty body', async () => ({ body: '' }), 'TASK_MALFORMED'],
  ['a body that is not UTF-8', async () => ({ body: new Uint8Array([0xff, 0xfe, 0xfd]) }), 'TASK_MALFORMED'],
  ['an oversized body (declared)', async () => ({ body: 'a'.repeat(64 * 1024 + 1) }), 'PAYLOAD_TOO_LARGE'],
  [
    'an oversized body (streamed, no length)',
    async () => ({
      body: new ReadableStream({
        start(c) {
          for (let i = 0; i < 20; i++) c.enqueue(new Uint8Array(8192).fill(97));
          c.close();
        },
      }),
    }),
    'PAYLOAD_TOO_LARGE',
  ],
];

test('intake: every refusal has its own code, nothing runs, and the intake keeps serving', async (t) => {
  const { handle, executed } = intake();
  for (const [name, make, code] of refusals) {
    const { body, ...init } = await make();
    const result = await post(handle, body, init);
    t.is(result.body?.error?.code, code, name);
    t.is(result.status, ERROR_STATUS[code], name);
    t.is(executed.length, 0, `${name}: nothing ran`);
  }
  t.is((await post(handle, await signedTask(key))).status, 200, 'still serving');
  t.is(executed.length, 1);
});

test('intake: only POST', async (t) => {
  const { handle } = intake();
  const response = await handle(new Request('http://worker.local/tasks'));
  t.is(response.status, 405);
  t.is((await response.json()).error.code, 'METHOD_NOT_ALLOWED');
});

test('intake: the caller is checked before the body: no token and an oversized body is TASK_UNAUTHENTICATED', async (t) => {
  const { handle } = intake();
  expectCode(t, await post(handle, 'a'.repeat(1024 * 1024), { authorization: null }), 'TASK_UNAUTHENTICATED');
});

// Google's verifier, with the signing certs generated here (as in the control plane's tests).
const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
class TestCertsClient extends OAuth2Client {
  override async getFederatedSignonCertsAsync() {
    return { certs: { 'test-kid': rsa.publicKey.export({ type: 'spki', format: 'pem' }).toString() } } as unknown as Awaited<ReturnType<OAuth2Client['getFederatedSignonCertsAsync']>>;
  }
}
const INTAKE_URL = 'https://worker.example.com/tasks';
async function googleToken(claims: Record<string, unknown>, aud = INTAKE_URL) {
  const signingKey = await importPKCS8(rsa.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), 'RS256');
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ email_verified: true, ...claims })
    .setProtectedHeader({ alg: 'RS256', kid: 'test-kid', typ: 'JWT' })
    .setIssuer('https://accounts.google.com')
    .setAudience(aud)
    .setSubject('1234')
    .setIssuedAt(now)
    .setExpirationTime(now + 600)
    .sign(signingKey);
}

test('google caller: a Cloud Tasks token for the intake URL yields the service account email', async (t) => {
  const verify = googleCallerVerifier({ audience: INTAKE_URL, client: new TestCertsClient() });
  t.deepEqual(await verify(`Bearer ${await googleToken({ email: 'Control-Plane@p.iam.gserviceaccount.com' })}`), { email: 'control-plane@p.iam.gserviceaccount.com' });
});

for (const [name, make] of [
  ['another audience', () => googleToken({ email: 'cp@p.iam.gserviceaccount.com' }, 'https://elsewhere.example.com')],
  ['an unverified email', () => googleToken({ email: 'cp@p.iam.gserviceaccount.com', email_verified: false })],
  ['no email', () => googleToken({})],
  [
    'a token signed by another key',
    async () => {
      const { privateKey } = await generateKeyPair('RS256');
      return new SignJWT({ email: 'cp@p.iam.gserviceaccount.com', email_verified: true })
        .setProtectedHeader({ alg: 'RS256', kid: 'test-kid' })
        .setIssuer('https://accounts.google.com')
        .setAudience(INTAKE_URL)
        .setIssuedAt()
        .setExpirationTime('5m')
        .sign(privateKey);
    },
  ],
] as const) {
  test(`google caller: ${name} is TASK_UNAUTHENTICATED`, async (t) => {
    const verify = googleCallerVerifier({ audience: INTAKE_URL, client: new TestCertsClient() });
    const error = await t.throwsAsync(async () => verify(`Bearer ${await make()}`), { instanceOf: CleanroomError });
    t.is(error?.code, 'TASK_UNAUTHENTICATED');
  });
}

test('google caller: an audience is required', (t) => {
  t.throws(() => googleCallerVerifier({ audience: '' }), { instanceOf: TypeError });
});
