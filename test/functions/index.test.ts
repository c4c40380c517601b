import test from 'ava';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { startFirestoreEmulator, type RunningEmulator } from '../helpers/firestore-emulator.ts';

/**
 * The deployable `api` target, exactly as Cloud Run functions runs it: registered with the
 * Functions Framework, served by its Express server (which pre-reads bodies into `rawBody`),
 * in gcp mode over Firestore (the emulator) and Google ID-token verification.
 */
let emulator: RunningEmulator;
let server: Server;
let base: string;

test.before(async () => {
  emulator = await startFirestoreEmulator();
  process.env.FIRESTORE_EMULATOR_HOST = emulator.host;
  process.env.GOOGLE_CLOUD_PROJECT = `test-${crypto.randomUUID().slice(0, 8)}`;
  process.env.CLEANROOM_MODE = 'gcp';
  process.env.NODE_ENV = 'production';
  process.env.ID_TOKEN_AUDIENCES = 'console.apps.googleusercontent.com';
  // No KMS or Cloud Tasks here: their clients only fail when a query is dispatched, which these
  // tests never do (the signer loads lazily, see functions/index.ts).
  process.env.WORKER_SERVICE_ACCOUNT = 'worker@test.iam.gserviceaccount.com';
  process.env.TASK_SIGNING_KEY_VERSION = 'projects/p/locations/global/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1';
  process.env.TASK_QUEUE = 'projects/p/locations/europe-west1/queues/q';
  process.env.TASK_SERVICE_ACCOUNT = 'control-plane@test.iam.gserviceaccount.com';
  // Cloud Storage is only called by the data routes, which these tests do not reach.
  process.env.OBJECT_STORE_BUCKET = 'cleanroom-test-objects';
  process.env.METADATA_SERVER_DETECTION = 'none';
  await import('../../functions/index.ts');
  const { getTestServer } = await import('@google-cloud/functions-framework/testing');
  server = getTestServer('api');
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

test.after.always(async () => {
  server?.close();
  await emulator?.stop();
});

test('api target: public routes answer through the Functions Framework', async (t) => {
  const health = await fetch(`${base}/api/tee/health`);
  t.is(health.status, 200);
  t.deepEqual(await health.json(), { status: 'ok' });
  const moved = await fetch(`${base}/api/tee/environments`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"name":"x"}' });
  t.is(moved.status, 410);
  t.is(((await moved.json()) as any).error.code, 'ENDPOINT_MOVED');
});

test('api target: no dev identity provider in gcp mode, and unsigned callers are refused', async (t) => {
  const devIdp = await fetch(`${base}/dev-idp/token`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"email":"a@example.com"}' });
  t.is(devIdp.status, 404);
  const anonymous = await fetch(`${base}/api/tee/sessions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"name":"x"}' });
  t.is(anonymous.status, 401);
  t.is(((await anonymous.json()) as any).error.code, 'UNAUTHENTICATED');
  const forged = await fetch(`${base}/api/tee/sessions`, { headers: { authorization: 'Bearer eyJhbGciOiJub25lIn0.eyJlbWFpbCI6ImFAYi5jbyJ9.' } });
  t.is(forged.status, 401);
});

test('internal target: mounts only worker routes, and refuses callers that are not the worker', async (t) => {
  const { getTestServer } = await import('@google-cloud/functions-framework/testing');
  const internal = getTestServer('internal');
  await new Promise<void>((r) => internal.listen(0, '127.0.0.1', r));
  t.teardown(() => internal.close());
  const url = `http://127.0.0.1:${(internal.address() as AddressInfo).port}`;
  const sessions = await fetch(`${url}/api/tee/sessions`);
  t.is(sessions.status, 404);
  const events = await fetch(`${url}/internal/v1/reconcile`, { method: 'POST' });
  t.is(events.status, 401);
  const onApi = await fetch(`${base}/internal/v1/reconcile`, { method: 'POST' });
  t.is(onApi.status, 404, 'worker routes are not on the public api target');
});

test('api target: malformed JSON is refused with a 400 and no stack trace', async (t) => {
  // The Functions Framework parses JSON bodies itself before our handler runs, so a malformed
  // body gets Express's own 400 page, not our envelope (a known limit, noted in README). With
  // NODE_ENV=production, as Cloud Run functions sets it, that page carries no stack trace.
  const res = await fetch(`${base}/api/tee/sessions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"name":' });
  t.is(res.status, 400);
  const text = await res.text();
  t.false(/\bat .*\.js:\d+/.test(text), text);
  t.false(text.includes('node_modules'), text);
});
