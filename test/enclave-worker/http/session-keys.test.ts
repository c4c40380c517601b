import test from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLocalJWKSet } from 'jose';
import { createSessionKeyEndpoint, type SessionKeyEndpointDeps } from '../../../enclave-worker/http/session-keys.ts';
import { jwksCallerVerifier } from '../../../enclave-worker/intake/caller.ts';
import { LocalKeyRing } from '../../../enclave-worker/keys/local-key-ring.ts';
import { SessionKeyManager } from '../../../enclave-worker/keys/session-keys.ts';
import { DEV_AUDIENCE, DevIdentityProvider } from '../../../functions/adapters/identity/dev-idp.ts';
import { CleanroomError, ERROR_STATUS, type ErrorCode } from '../../../protocol/errors.ts';
import { verifySessionKeyBundle } from '../../../protocol/session-key.ts';
import { TASK_AUDIENCE, TASK_ISSUER, signSessionKeyRequest, type SessionKeyRequestPayload } from '../../../protocol/task.ts';
import { LocalObjectStore } from '../../../runtime/object-store/local.ts';
import { signedTask, taskPayload, testTaskKey, TASK_TYP } from '../../helpers/task.ts';
import { devTrust, freshNonce } from '../dev-trust.ts';

const CONTROL_PLANE = 'control-plane@cleanroom.local';
// Awaited before any test is declared (ava closes declarations once the module yields after one).
const dir = mkdtempSync(join(tmpdir(), 'session-key-endpoint-'));
const devIdp = await DevIdentityProvider.load(dir);
const key = await testTaskKey();
const forger = await testTaskKey();
const trust = await devTrust();
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

const verifyCaller = jwksCallerVerifier({ audience: DEV_AUDIENCE, keys: createLocalJWKSet(devIdp.jwks() as Parameters<typeof createLocalJWKSet>[0]) });
const bearer = async (email = CONTROL_PLANE) => `Bearer ${(await devIdp.issue(email)).token}`;

function request(overrides: Partial<SessionKeyRequestPayload> = {}, now = Math.floor(Date.now() / 1000)): SessionKeyRequestPayload {
  return {
    v: 1,
    kind: 'session_key',
    iss: TASK_ISSUER,
    aud: TASK_AUDIENCE,
    jti: crypto.randomUUID(),
    iat: now,
    exp: now + 300,
    session_id: crypto.randomUUID(),
    nonce: freshNonce(),
    ...overrides,
  };
}

function endpoint(overrides: Partial<SessionKeyEndpointDeps> = {}) {
  const sessionKeys = new SessionKeyManager({
    objects: new LocalObjectStore(mkdtempSync(join(dir, 'objects-'))),
    keys: LocalKeyRing.open(join(mkdtempSync(join(dir, 'ring-')), 'key-ring.json')),
    identity: trust.identity,
  });
  return createSessionKeyEndpoint({
    verifyCaller,
    expectedCallerEmail: CONTROL_PLANE,
    taskKeys: [key.publicJwk],
    sessionKeys,
    attest: trust.attest,
    clock: { now: () => new Date() },
    ...overrides,
  });
}

async function post(handle: (r: Request) => Promise<Response>, body: string, authorization: string | null | undefined = undefined) {
  const headers: Record<string, string> = { 'content-type': 'application/jose' };
  const auth = authorization === undefined ? await bearer() : authorization;
  if (auth !== null) headers.authorization = auth;
  const response = await handle(new Request('http://worker.local/session-keys', { method: 'POST', headers, body }));
  return { status: response.status, body: (await response.json()) as any, headers: response.headers };
}

function expectCode(t: import('ava').ExecutionContext, result: { status: number; body: any }, code: ErrorCode, label?: string) {
  t.is(result.body?.error?.code, code, label);
  t.is(result.status, ERROR_STATUS[code], label);
}

test('session-keys endpoint: a signed request from the control plane gets a bundle the client verifies', async (t) => {
  const handle = endpoint();
  const payload = request();
  const result = await post(handle, await signSessionKeyRequest(payload, key.signer));
  t.is(result.status, 200);
  const verified = await verifySessionKeyBundle(result.body, { sessionId: payload.session_id, nonce: payload.nonce, policy: trust.policy, devKeys: trust.devKeys });
  t.is(verified.thumbprint, result.body.thumbprint);
  t.is(result.body.session_id, payload.session_id);
  t.false(JSON.stringify(result.body).includes('wrapped_private'));
  t.false('d' in result.body.public_jwk);
  // Another request for the session (another participant, another nonce) gets the same key.
  const again = await post(handle, await signSessionKeyRequest(request({ session_id: payload.session_id }), key.signer));
  t.is(again.body.thumbprint, result.body.thumbprint);
});

test('session-keys endpoint: concurrent first requests for a session get one key', async (t) => {
  const handle = endpoint();
  const session = crypto.randomUUID();
  const results = await Promise.all(Array.from({ length: 5 }, async () => post(handle, await signSessionKeyRequest(request({ session_id: session }), key.signer))));
  t.deepEqual(
    results.map((r) => r.status),
    [200, 200, 200, 200, 200],
  );
  t.is(new Set(results.map((r) => r.body.thumbprint)).size, 1);
});

const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
const refusals: Array<[string, () => Promise<{ body: string; authorization?: string | null }>, ErrorCode]> = [
  ['no caller token', async () => ({ body: await signSessionKeyRequest(request(), key.signer), authorization: null }), 'TASK_UNAUTHENTICATED'],
  ['a caller other than the control plane', async () => ({ body: await signSessionKeyRequest(request(), key.signer), authorization: await bearer('mallory@example.com') }), 'TASK_UNAUTHENTICATED'],
  ['a request signed by another key (forged)', async () => ({ body: await signSessionKeyRequest(request(), forger.signer) }), 'TASK_SIGNATURE'],
  ['a forged request under our kid', async () => ({ body: await forger.signRaw({ alg: 'ES256', typ: TASK_TYP, kid: key.publicJwk.kid }, request()) }), 'TASK_SIGNATURE'],
  [
    'an edited request (other session)',
    async () => {
      const [h, , s] = (await signSessionKeyRequest(request(), key.signer)).split('.');
      return { body: `${h}.${b64(request())}.${s}` };
    },
    'TASK_SIGNATURE',
  ],
  ['a query task (kind execute_query)', async () => ({ body: await signedTask(key, taskPayload()) }), 'TASK_MALFORMED'],
  [
    'an expired request',
    async () => {
      const now = Math.floor(Date.now() / 1000);
      return { body: await signSessionKeyRequest(request({ iat: now - 7200, exp: now - 3600 }), key.signer) };
    },
    'TASK_EXPIRED',
  ],
  ['a garbage body', async () => ({ body: 'not a jws' }), 'TASK_MALFORMED'],
  ['an oversized body', async () => ({ body: 'a'.repeat(17 * 1024) }), 'PAYLOAD_TOO_LARGE'],
];

test('session-keys endpoint: every refusal has its code and creates no key', async (t) => {
  let bundles = 0;
  const handle = endpoint({
    sessionKeys: {
      bundle: async () => {
        bundles++;
        throw new Error('must not be reached');
      },
    },
  });
  for (const [label, make, code] of refusals) {
    const { body, authorization } = await make();
    expectCode(t, await post(handle, body, authorization), code, label);
  }
  t.is(bundles, 0);
});

test('session-keys endpoint: only POST', async (t) => {
  const response = await endpoint()(new Request('http://worker.local/session-keys'));
  t.is(response.status, 405);
});

test('session-keys endpoint: rate-limited per session, other sessions unaffected', async (t) => {
  let now = 0;
  const handle = endpoint({ monotonicNow: () => now });
  const session = crypto.randomUUID();
  const statuses: number[] = [];
  for (let i = 0; i < 12; i++) statuses.push((await post(handle, await signSessionKeyRequest(request({ session_id: session }), key.signer))).status);
  t.deepEqual(statuses.slice(0, 10), Array(10).fill(200));
  const limited = await post(handle, await signSessionKeyRequest(request({ session_id: session }), key.signer));
  expectCode(t, limited, 'RATE_LIMITED');
  t.is(limited.headers.get('retry-after'), '1');
  t.is((await post(handle, await signSessionKeyRequest(request(), key.signer))).status, 200, 'another session');
  now += 1000;
  t.is((await post(handle, await signSessionKeyRequest(request({ session_id: session }), key.signer))).status, 200, 'refilled');
});

for (const code of ['KEY_SERVICE_UNAVAILABLE', 'OBJECT_STORE_UNAVAILABLE'] as const) {
  test(`session-keys endpoint: ${code} is a 503 with Retry-After`, async (t) => {
    const handle = endpoint({
      sessionKeys: {
        bundle: async () => {
          throw new CleanroomError(code, 'down');
        },
      },
    });
    const result = await post(handle, await signSessionKeyRequest(request(), key.signer));
    expectCode(t, result, code);
    t.regex(result.headers.get('retry-after') ?? '', /^\d+$/);
  });
}

test('session-keys endpoint: an unexpected failure is a bare 500 INTERNAL', async (t) => {
  const handle = endpoint({ sessionKeys: { bundle: async () => Promise.reject(new Error('key material: secret')) } });
  const result = await post(handle, await signSessionKeyRequest(request(), key.signer));
  expectCode(t, result, 'INTERNAL');
  t.notRegex(JSON.stringify(result.body), /secret/);
});
