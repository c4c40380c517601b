import test from 'ava';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalKeySigner } from '../../../../functions/adapters/signer/local-key.ts';
import { jwkThumbprint } from '../../../../protocol/key-binding.ts';
import { signTask } from '../../../../protocol/task.ts';
import { verifyTaskJws } from '../../../../protocol/task-verify.ts';
import { taskPayload } from '../../../helpers/task.ts';

const dir = mkdtempSync(join(tmpdir(), 'local-signer-'));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

test('local signer: creates the key file with mode 0600 and a thumbprint kid', async (t) => {
  const path = join(dir, 'nested', 'task-key.json');
  const signer = await LocalKeySigner.load(path);
  t.is(statSync(path).mode & 0o777, 0o600);
  const { kty, crv, x, y } = signer.publicJwk();
  t.is(signer.kid, await jwkThumbprint({ kty: kty!, crv: crv!, x: x!, y: y! }));
  t.is(signer.publicJwk().d, undefined);
});

test('local signer: the key survives a reload, so earlier tasks still verify', async (t) => {
  const path = join(dir, 'reload.json');
  const first = await LocalKeySigner.load(path);
  const jws = await signTask(taskPayload(), first);
  const second = await LocalKeySigner.load(path);
  t.is(second.kid, first.kid);
  t.truthy(await verifyTaskJws(jws, { keys: [second.publicJwk()] }));
});

test('local signer: two loads racing on a missing file end with one key', async (t) => {
  const path = join(dir, 'race.json');
  const [a, b] = await Promise.all([LocalKeySigner.load(path), LocalKeySigner.load(path)]);
  t.is(a.kid, b.kid);
  t.is((await LocalKeySigner.load(path)).kid, a.kid);
});

test('local signer: a file that is not a P-256 private key is refused', async (t) => {
  const path = join(dir, 'bad.json');
  writeFileSync(path, JSON.stringify({ kty: 'oct', k: 'AAAA' }));
  await t.throwsAsync(LocalKeySigner.load(path), { instanceOf: TypeError });
  t.is(JSON.parse(readFileSync(path, 'utf8')).kty, 'oct'); // never overwritten
});
