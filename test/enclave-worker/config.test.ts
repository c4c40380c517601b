import test from 'ava';
import { resolve } from 'node:path';
import { loadWorkerConfig } from '../../enclave-worker/config.ts';

const BUCKET = 'cleanroom-ciphertext';
const KMS = 'projects/p/locations/europe-west4/keyRings/cleanroom/cryptoKeys/session-keys';
const CS = { ATTESTATION_MODE: 'confidential-space', OBJECT_STORE_BUCKET: BUCKET, KMS_KEY_NAME: KMS, TASK_CALLER_VERIFIER: 'google' };

test('config: the embedded stack shares the control plane objects directory and keeps a key ring in the worker dir', (t) => {
  const config = loadWorkerConfig({ CLEANROOM_DATA_DIR: '/data' });
  t.deepEqual(config.objectStore, { kind: 'local', dir: resolve('/data/objects') });
  t.deepEqual(config.keyService, { kind: 'local-key-ring', file: resolve('/data/worker/key-ring.json') });
  t.deepEqual(loadWorkerConfig({ CLEANROOM_DATA_DIR: '/data', WORKER_DATA_DIR: '/w' }).keyService, { kind: 'local-key-ring', file: resolve('/w/key-ring.json') });
  const explicit = loadWorkerConfig({ CLEANROOM_OBJECTS_DIR: 'objs', KEY_RING_FILE: 'ring.json' });
  t.deepEqual(explicit.objectStore, { kind: 'local', dir: resolve('objs') });
  t.deepEqual(explicit.keyService, { kind: 'local-key-ring', file: resolve('ring.json') });
});

test('config: a bucket and a KMS key select the GCP adapters', (t) => {
  const config = loadWorkerConfig(CS);
  t.deepEqual(config.objectStore, { kind: 'gcs', bucket: BUCKET });
  t.deepEqual(config.keyService, { kind: 'cloud-kms', keyName: KMS });
  t.deepEqual(loadWorkerConfig({ OBJECT_STORE_BUCKET: BUCKET }).objectStore, { kind: 'gcs', bucket: BUCKET }, 'insecure-dev may use a bucket');
});

const refused: Array<[string, Record<string, string>, RegExp]> = [
  ['confidential-space without a bucket', { ...CS, OBJECT_STORE_BUCKET: '' }, /OBJECT_STORE_BUCKET is required/],
  ['confidential-space without a KMS key', { ATTESTATION_MODE: 'confidential-space', OBJECT_STORE_BUCKET: BUCKET }, /KMS_KEY_NAME is required/],
  ['confidential-space with a local objects directory', { ...CS, CLEANROOM_OBJECTS_DIR: '/tmp/objects' }, /CLEANROOM_OBJECTS_DIR/],
  ['confidential-space with a key ring file', { ...CS, KEY_RING_FILE: '/tmp/ring.json' }, /KEY_RING_FILE/],
  ['confidential-space with TEST-ONLY plaintext fixtures', { ...CS, WORKER_PLAINTEXT_FIXTURES_DIR: '/tmp/fixtures' }, /WORKER_PLAINTEXT_FIXTURES_DIR/],
  ['a bucket and a local directory', { OBJECT_STORE_BUCKET: BUCKET, CLEANROOM_OBJECTS_DIR: '/tmp/objects' }, /not both/],
  ['a KMS key and a key ring file', { KMS_KEY_NAME: KMS, KEY_RING_FILE: '/tmp/ring.json' }, /not both/],
  ['a malformed KMS key name', { KMS_KEY_NAME: 'projects/p/keyRings/r' }, /KMS_KEY_NAME/],
  ['a malformed bucket name', { OBJECT_STORE_BUCKET: 'gs://bucket' }, /OBJECT_STORE_BUCKET/],
];
for (const [name, env, names] of refused) {
  test(`config: ${name} fails fast, naming the variable`, (t) => {
    const set = Object.fromEntries(Object.entries(env).filter(([, value]) => value !== ''));
    const error = t.throws(() => loadWorkerConfig(set));
    t.regex(error.message, /^invalid worker configuration: /);
    t.regex(error.message, names);
  });
}

test('config: TEST-ONLY plaintext fixtures stay available to the local worker', (t) => {
  t.is(loadWorkerConfig({ WORKER_PLAINTEXT_FIXTURES_DIR: 'fx' }).plaintextFixturesDir, resolve('fx'));
  t.is(loadWorkerConfig({}).plaintextFixturesDir, undefined);
  t.is(loadWorkerConfig({}).objectStore.kind, 'local');
});

test('worker config: session keys rotate every 24 hours by default; 0 disables; past a week is refused', (t) => {
  t.is(loadWorkerConfig({}).sessionKeyRotationMs, 24 * 3600 * 1000);
  t.is(loadWorkerConfig({ SESSION_KEY_ROTATION_HOURS: '6' }).sessionKeyRotationMs, 6 * 3600 * 1000);
  t.is(loadWorkerConfig({ SESSION_KEY_ROTATION_HOURS: '0' }).sessionKeyRotationMs, 0);
  for (const bad of ['169', '-1', '1.5', 'daily']) {
    t.throws(() => loadWorkerConfig({ SESSION_KEY_ROTATION_HOURS: bad }), { message: /SESSION_KEY_ROTATION_HOURS/ }, bad);
  }
});
