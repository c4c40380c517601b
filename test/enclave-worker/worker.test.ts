import test from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { verifyAttestation } from '../../protocol/attestation.ts';
import { loadWorkerConfig } from '../../enclave-worker/config.ts';
import { startWorker, type RunningWorker } from '../../enclave-worker/worker.ts';

/** The worker's HTTP surface, started in-process from its own config (insecure-dev attester). */
const DIGEST = `sha256:${'ab'.repeat(32)}`;
let worker: RunningWorker;
let dir: string;

test.before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'worker-'));
  const config = loadWorkerConfig({ CLEANROOM_DATA_DIR: dir, WORKER_PORT: '0', WORKER_IMAGE_DIGEST: DIGEST, TEE_INSTANCE_ID: 'w-test' });
  worker = await startWorker(config);
});
test.after.always(async () => {
  await worker?.close();
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
  const replayed = await t.throwsAsync(
    verifyAttestation(body.token, { nonce: nonce(), identityJwk: body.identity_jwk, policy: { ...policy, allowInsecureDev: true } }),
  );
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
