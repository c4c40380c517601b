import test from 'ava';
import { loadConfig } from '../../functions/config.ts';

test('config: local defaults', (t) => {
  const c = loadConfig({});
  t.is(c.mode, 'local');
  if (c.mode !== 'local') return;
  t.is(c.apiPort, 3000);
  t.is(c.apiHost, '127.0.0.1');
  t.true(c.dataDir.endsWith('.cleanroom-data'));
});

test('config: gcp mode needs audiences and never enables the dev identity provider', (t) => {
  t.throws(() => loadConfig({ CLEANROOM_MODE: 'gcp' }), { message: /ID_TOKEN_AUDIENCES/ });
  const c = loadConfig({ CLEANROOM_MODE: 'gcp', ID_TOKEN_AUDIENCES: 'a, b ,' });
  t.deepEqual(c.mode === 'gcp' && c.audiences, ['a', 'b']);
});

test('config: bad values fail fast with the variable named', (t) => {
  t.throws(() => loadConfig({ CLEANROOM_MODE: 'prod' }), { message: /CLEANROOM_MODE/ });
  t.throws(() => loadConfig({ CLEANROOM_API_PORT: 'http' }), { message: /CLEANROOM_API_PORT/ });
  t.throws(() => loadConfig({ CLEANROOM_API_PORT: '70000' }), { message: /CLEANROOM_API_PORT/ });
  t.throws(() => loadConfig({ TEE_SERVICE_ENDPOINT: 'not a url' }), { message: /TEE_SERVICE_ENDPOINT/ });
});
