import test from 'ava';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalKeyRing } from '../../../enclave-worker/keys/local-key-ring.ts';
import { sessionKeyAad } from '../../../enclave-worker/keys/port.ts';
import { keyServiceContract, rejectsWithCode } from './key-service.contract.ts';

const root = mkdtempSync(join(tmpdir(), 'key-ring-'));
test.after.always(() => rmSync(root, { recursive: true, force: true }));

const freshPath = () => join(root, crypto.randomUUID(), 'keys', 'ring.json');

keyServiceContract('local key ring', async () => ({ service: LocalKeyRing.open(freshPath()), teardown: async () => {} }));

// A ring after rotations: the contract holds for wraps under the newest version.
keyServiceContract('local key ring, rotated twice', async () => {
  const ring = LocalKeyRing.open(freshPath());
  ring.rotate();
  ring.rotate();
  return { service: ring, teardown: async () => {} };
});

const AAD = sessionKeyAad('3f1c0c8e-0000-4000-8000-000000000001', 1);

test('local key ring: created on first open as a 0600 file in a 0700 directory, holding version 1', (t) => {
  const path = freshPath();
  const ring = LocalKeyRing.open(path);
  t.is(statSync(path).mode & 0o777, 0o600);
  t.is(statSync(join(path, '..')).mode & 0o777, 0o700);
  t.is(ring.currentVersion, 1);
  t.deepEqual(ring.versions, [1]);
  const stored = JSON.parse(readFileSync(path, 'utf8'));
  t.is(stored.versions[0].key.length, 43); // 32 bytes, base64url
});

test('local key ring: reopening the file unwraps what was wrapped before', async (t) => {
  const path = freshPath();
  const plaintext = randomBytes(64);
  const wrapped = await LocalKeyRing.open(path).wrap(plaintext, AAD);
  t.deepEqual(await LocalKeyRing.open(path).unwrap(wrapped, AAD), new Uint8Array(plaintext));
});

test('local key ring: two rings opened on one path share its keys', async (t) => {
  const path = freshPath();
  const [a, b] = [LocalKeyRing.open(path), LocalKeyRing.open(path)];
  const plaintext = randomBytes(8);
  t.deepEqual(await b.unwrap(await a.wrap(plaintext, AAD), AAD), new Uint8Array(plaintext));
});

test('local key ring: the output is format byte, version, 12-byte IV, ciphertext, 16-byte tag', async (t) => {
  const ring = LocalKeyRing.open(freshPath());
  const wrapped = await ring.wrap(randomBytes(32), AAD);
  t.is(wrapped.byteLength, 1 + 4 + 12 + 32 + 16);
  t.is(wrapped[0], 1);
  t.is(Buffer.from(wrapped).readUInt32BE(1), 1);
  ring.rotate();
  t.is(Buffer.from(await ring.wrap(randomBytes(32), AAD)).readUInt32BE(1), 2);
});

test('local key ring: after rotate, new wraps use the new version and old wraps still unwrap', async (t) => {
  const path = freshPath();
  const ring = LocalKeyRing.open(path);
  const old = randomBytes(32);
  const oldWrap = await ring.wrap(old, AAD);
  t.is(ring.rotate(), 2);
  t.is(ring.currentVersion, 2);
  t.deepEqual(ring.versions, [1, 2]);
  const fresh = randomBytes(32);
  const freshWrap = await ring.wrap(fresh, AAD);
  t.deepEqual(await ring.unwrap(oldWrap, AAD), new Uint8Array(old));
  t.deepEqual(await ring.unwrap(freshWrap, AAD), new Uint8Array(fresh));
  // The rotation is in the file.
  t.is(LocalKeyRing.open(path).currentVersion, 2);
});

test('local key ring: destroyVersion makes its wraps fail for good, also after reopening', async (t) => {
  const path = freshPath();
  const ring = LocalKeyRing.open(path);
  const oldWrap = await ring.wrap(randomBytes(32), AAD);
  ring.rotate();
  const freshPlain = randomBytes(32);
  const freshWrap = await ring.wrap(freshPlain, AAD);
  ring.destroyVersion(1);
  t.deepEqual(ring.versions, [2]);
  await rejectsWithCode(t, ring.unwrap(oldWrap, AAD), 'DATASET_KEY_UNWRAP');
  await rejectsWithCode(t, LocalKeyRing.open(path).unwrap(oldWrap, AAD), 'DATASET_KEY_UNWRAP');
  t.deepEqual(await ring.unwrap(freshWrap, AAD), new Uint8Array(freshPlain));
  t.false(readFileSync(path, 'utf8').includes('"version": 1,'));
});

test('local key ring: a wrap relabelled with another version does not unwrap', async (t) => {
  const ring = LocalKeyRing.open(freshPath());
  const wrapped = await ring.wrap(randomBytes(32), AAD);
  ring.rotate();
  const relabelled = new Uint8Array(wrapped);
  Buffer.from(relabelled.buffer).writeUInt32BE(2, 1);
  await rejectsWithCode(t, ring.unwrap(relabelled, AAD), 'DATASET_KEY_UNWRAP');
  const unknown = new Uint8Array(wrapped);
  Buffer.from(unknown.buffer).writeUInt32BE(99, 1);
  await rejectsWithCode(t, ring.unwrap(unknown, AAD), 'DATASET_KEY_UNWRAP');
});

test('local key ring: a rotation by another process is picked up when its wraps arrive', async (t) => {
  const path = freshPath();
  const worker = LocalKeyRing.open(path);
  const operator = LocalKeyRing.open(path);
  operator.rotate();
  const plaintext = randomBytes(32);
  const wrapped = await operator.wrap(plaintext, AAD);
  t.deepEqual(await worker.unwrap(wrapped, AAD), new Uint8Array(plaintext));
  t.is(worker.currentVersion, 2);
});

test('local key ring: the current version cannot be destroyed, nor an unknown one', (t) => {
  const ring = LocalKeyRing.open(freshPath());
  t.throws(() => ring.destroyVersion(1), { instanceOf: TypeError });
  ring.rotate();
  t.throws(() => ring.destroyVersion(7), { instanceOf: TypeError });
  ring.destroyVersion(1);
  t.throws(() => ring.destroyVersion(1), { instanceOf: TypeError });
});

test('local key ring: a ring file others can read, or that is not a ring, is refused', (t) => {
  const path = freshPath();
  LocalKeyRing.open(path);
  chmodSync(path, 0o644);
  t.throws(() => LocalKeyRing.open(path), { message: /chmod 600/ });
  for (const content of ['not json', '{}', JSON.stringify({ v: 1, current: 2, versions: [{ version: 1, key: 'A'.repeat(43), created_at: 'x' }] })]) {
    writeFileSync(path, content, { mode: 0o600 });
    chmodSync(path, 0o600);
    t.throws(() => LocalKeyRing.open(path), { message: /is not a key ring/ });
  }
});

test('local key ring: inputs over 64 KiB or not bytes are TypeErrors (the limit Cloud KMS has)', async (t) => {
  const ring = LocalKeyRing.open(freshPath());
  await t.throwsAsync(ring.wrap(new Uint8Array(65537), AAD), { instanceOf: TypeError });
  await t.throwsAsync(ring.wrap(new Uint8Array(1), new Uint8Array(65537)), { instanceOf: TypeError });
  await t.throwsAsync(ring.wrap('text' as unknown as Uint8Array, AAD), { instanceOf: TypeError });
});
