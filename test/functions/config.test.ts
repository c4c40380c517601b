import test from 'ava';
import { loadConfig } from '../../functions/config.ts';

test('config: local defaults', (t) => {
  const c = loadConfig({});
  t.is(c.mode, 'local');
  if (c.mode !== 'local') return;
  t.is(c.apiPort, 3000);
  t.is(c.apiHost, '127.0.0.1');
  t.true(c.dataDir.endsWith('.cleanroom-data'));
  t.is(c.maxDatasetBytes, 8 * 1024 * 1024 * 1024);
});

test('config: CLEANROOM_MAX_DATASET_BYTES sets the dataset cap; anything but a positive whole number fails fast', (t) => {
  const c = loadConfig({ CLEANROOM_MAX_DATASET_BYTES: '1048576' });
  t.is(c.maxDatasetBytes, 1048576);
  for (const bad of ['0', '-1', '1.5', '1e9', 'lots', '99999999999999999']) {
    t.throws(() => loadConfig({ CLEANROOM_MAX_DATASET_BYTES: bad }), { message: /CLEANROOM_MAX_DATASET_BYTES/ }, bad);
  }
});

test('config: gcp mode needs audiences and never enables the dev identity provider', (t) => {
  t.throws(() => loadConfig({ CLEANROOM_MODE: 'gcp' }), { message: /ID_TOKEN_AUDIENCES/ });
  const gcp = {
    CLEANROOM_MODE: 'gcp',
    WORKER_SERVICE_ACCOUNT: 'w@p.iam.gserviceaccount.com',
    TASK_SIGNING_KEY_VERSION: 'projects/p/locations/l/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1',
    TASK_QUEUE: 'projects/p/locations/l/queues/q',
    TASK_SERVICE_ACCOUNT: 'cp@p.iam.gserviceaccount.com',
    OBJECT_STORE_BUCKET: 'cleanroom-objects',
  };
  t.throws(() => loadConfig({ ...gcp, ID_TOKEN_AUDIENCES: 'a', TASK_QUEUE: '' }), { message: /TASK_QUEUE/ });
  t.throws(() => loadConfig({ ...gcp, ID_TOKEN_AUDIENCES: 'a', OBJECT_STORE_BUCKET: '' }), { message: /OBJECT_STORE_BUCKET/ });
  const c = loadConfig({ ...gcp, ID_TOKEN_AUDIENCES: 'a, b ,' });
  t.deepEqual(c.mode === 'gcp' && c.audiences, ['a', 'b']);
  t.is(c.mode === 'gcp' && c.objectStoreBucket, 'cleanroom-objects');
});

test('config: bad values fail fast with the variable named', (t) => {
  t.throws(() => loadConfig({ CLEANROOM_MODE: 'prod' }), { message: /CLEANROOM_MODE/ });
  t.throws(() => loadConfig({ CLEANROOM_API_PORT: 'http' }), { message: /CLEANROOM_API_PORT/ });
  t.throws(() => loadConfig({ CLEANROOM_API_PORT: '70000' }), { message: /CLEANROOM_API_PORT/ });
  t.throws(() => loadConfig({ TEE_SERVICE_ENDPOINT: 'not a url' }), { message: /TEE_SERVICE_ENDPOINT/ });
});
