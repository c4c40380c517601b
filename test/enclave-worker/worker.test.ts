import test from 'ava';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { verifyAttestation } from '../../protocol/attestation.ts';
import { objectKeys } from '../../protocol/dataset.ts';
import { verifySessionKeyBundle } from '../../protocol/session-key.ts';
import { TASK_AUDIENCE, TASK_ISSUER, signSessionKeyRequest } from '../../protocol/task.ts';
import { DEV_AUDIENCE, DevIdentityProvider } from '../../functions/adapters/identity/dev-idp.ts';
import { loadWorkerConfig } from '../../enclave-worker/config.ts';
import { startWorker, type RunningWorker } from '../../enclave-worker/worker.ts';
import { testTaskKey } from '../helpers/task.ts';

/** The worker's HTTP surface, started in-process from its own config (insecure-dev attester). */
const DIGEST = `sha256:${'ab'.repeat(32)}`;
const CONTROL_PLANE = 'control-plane@cleanroom.local';
// Awaited before any test is declared (ava closes declarations once the module yields after one).
const dir = mkdtempSync(join(tmpdir(), 'worker-'));
const devIdp = await DevIdentityProvider.load(join(dir, 'control-plane'));
const taskKey = await testTaskKey();
let worker: RunningWorker;
let jwksServer: Server;

test.before(async () => {
  // What the control plane publishes locally: its identity provider's JWKS and its task key.
  jwksServer = createServer((_, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(devIdp.jwks())));
  await new Promise<void>((resolve) => jwksServer.listen(0, '127.0.0.1', resolve));
  writeFileSync(join(dir, 'task-signing-public.json'), JSON.stringify({ keys: [taskKey.publicJwk] }));
  const config = loadWorkerConfig({
    CLEANROOM_DATA_DIR: dir,
    WORKER_PORT: '0',
    WORKER_IMAGE_DIGEST: DIGEST,
    TEE_INSTANCE_ID: 'w-test',
    TASK_CALLER_VERIFIER: `http://127.0.0.1:${(jwksServer.address() as AddressInfo).port}/jwks.json`,
    TASK_CALLER_AUDIENCE: DEV_AUDIENCE,
  });
  worker = await startWorker(config);
});
test.after.always(async () => {
  await worker?.close();
  jwksServer?.closeAllConnections();
  jwksServer?.close();
  rmSync(dir, { recursive: true, force: true });
});

const nonce = () => Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString('base64url');

test('worker: /health reports status, instance id, uptime and image digest', async (t) => {
  const res = await fetch(`${worker.url}/health`);
  t.is(res.status, 200);
  const body = (await res.json()) as any;
  t.is(body.status, 'ok');
  t.is(body.instance_id, 'w-test');
  t.is(body.image_digest, DIGEST);
  t.is(typeof body.uptime_s, 'number');
});

test('worker: /attestation binds the caller nonce and the identity key; verifies only with the dev opt-in', async (t) => {
  const n = nonce();
  const body = (await (await fetch(`${worker.url}/attestation?nonce=${n}`)).json()) as any;
  t.is(body.kind, 'insecure-dev');
  const policy = { audience: 'cleanroom-clients', allowedImageDigests: [DIGEST], devIssuer: `${worker.url}/dev-attestation` };
  const verified = await verifyAttestation(body.token, { nonce: n, identityJwk: body.identity_jwk, policy: { ...policy, allowInsecureDev: true } });
  t.true(verified.insecureDev);
  const refused = await t.throwsAsync(verifyAttestation(body.token, { nonce: n, identityJwk: body.identity_jwk, policy }));
  t.is((refused as any).code, 'ATTESTATION_INSECURE_DEV');
  const replayed = await t.throwsAsync(verifyAttestation(body.token, { nonce: nonce(), identityJwk: body.identity_jwk, policy: { ...policy, allowInsecureDev: true } }));
  t.is((replayed as any).code, 'ATTESTATION_NONCE');
});

test('worker: /attestation refuses bad nonces and rate-limits', async (t) => {
  for (const bad of ['', 'short', 'has spaces in it!!!!', 'x'.repeat(200)]) {
    const res = await fetch(`${worker.url}/attestation?nonce=${encodeURIComponent(bad)}`);
    t.is(res.status, 400, bad);
    t.is(((await res.json()) as any).error.code, 'VALIDATION_FAILED');
  }
  const statuses: number[] = [];
  for (let i = 0; i < 15; i++) statuses.push((await fetch(`${worker.url}/attestation?nonce=${nonce()}`, { headers: { 'x-forwarded-for': '203.0.113.9' } })).status);
  t.true(statuses.includes(429), statuses.join(','));
  const health = await fetch(`${worker.url}/health`);
  t.is(health.status, 200, 'the worker keeps serving');
});

test('worker: /status shows the pool, sandbox, attestation and resources; unknown routes are 404', async (t) => {
  const body = (await (await fetch(`${worker.url}/status`)).json()) as any;
  t.deepEqual(Object.keys(body.executor.pool.slots).sort(), ['max', 'queued', 'running']);
  t.is(typeof body.memory.rss, 'number');
  t.is(body.attestation.kind, 'insecure-dev');
  t.is(typeof body.tasks_in_flight, 'number');
  t.deepEqual(body.key_service, { kind: 'local-key-ring' });
  t.deepEqual(body.object_store, { kind: 'local' });
  t.false(JSON.stringify(body).includes(dir), 'no paths');
  const missing = await fetch(`${worker.url}/nope`);
  t.is(missing.status, 404);
  const wrongMethod = await fetch(`${worker.url}/tasks`);
  t.is(wrongMethod.status, 405);
});

test('worker: a task without the control plane identity is refused and the worker keeps serving', async (t) => {
  const res = await fetch(`${worker.url}/tasks`, { method: 'POST', body: 'eyJhbGciOiJub25lIn0.e30.' });
  t.is(res.status, 401);
  t.is(((await res.json()) as any).error.code, 'TASK_UNAUTHENTICATED');
  t.is((await fetch(`${worker.url}/health`)).status, 200);
});

const nonce32 = () => Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString('base64url');

async function sessionKeyRequest(sessionId: string, nonce: string, as = CONTROL_PLANE) {
  const iat = Math.floor(Date.now() / 1000);
  const jws = await signSessionKeyRequest(
    { v: 1, kind: 'session_key', iss: TASK_ISSUER, aud: TASK_AUDIENCE, jti: crypto.randomUUID(), iat, exp: iat + 60, session_id: sessionId, nonce },
    taskKey.signer,
  );
  return fetch(`${worker.url}/session-keys`, {
    method: 'POST',
    headers: { authorization: `Bearer ${(await devIdp.issue(as)).token}`, 'content-type': 'application/jose' },
    body: jws,
  });
}

test('worker: POST /session-keys creates the session key in the shared object store and answers a verifiable bundle', async (t) => {
  const session = crypto.randomUUID();
  const nonce = nonce32();
  const res = await sessionKeyRequest(session, nonce);
  t.is(res.status, 200);
  const bundle = (await res.json()) as any;
  const policy = { audience: 'cleanroom-clients', allowedImageDigests: [DIGEST], devIssuer: `${worker.url}/dev-attestation`, allowInsecureDev: true };
  const verified = await verifySessionKeyBundle(bundle, { sessionId: session, nonce, policy });
  t.is(verified.thumbprint, bundle.thumbprint);
  // The control plane's local stack reads and shreds the same directory.
  const stored = join(dir, 'objects', objectKeys.sessionKey(session, 1));
  t.true(existsSync(stored));
  t.is(JSON.parse(readFileSync(stored, 'utf8')).thumbprint, bundle.thumbprint);
  t.true(existsSync(join(dir, 'worker', 'key-ring.json')));
});

test('worker: POST /session-keys refuses a caller other than the control plane; GET is 405', async (t) => {
  const refused = await sessionKeyRequest(crypto.randomUUID(), nonce32(), 'mallory@example.com');
  t.is(refused.status, 401);
  t.is(((await refused.json()) as any).error.code, 'TASK_UNAUTHENTICATED');
  t.is((await fetch(`${worker.url}/session-keys`)).status, 405);
});
