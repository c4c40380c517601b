import test from 'ava';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalKeyRing } from '../../../enclave-worker/keys/local-key-ring.ts';
import { sessionKeyAad, type KeyService } from '../../../enclave-worker/keys/port.ts';
import { rotateSessionKeys, scheduleRotation, type RotationLog } from '../../../enclave-worker/keys/rotation.ts';
import { SessionKeyManager } from '../../../enclave-worker/keys/session-keys.ts';
import { unwrapDataKey, wrapDataKey } from '../../../protocol/data-key.ts';
import { objectKeys } from '../../../protocol/dataset.ts';
import { CleanroomError } from '../../../protocol/errors.ts';
import { verifySessionKeyBundle } from '../../../protocol/session-key.ts';
import { LocalObjectStore } from '../../../runtime/object-store/local.ts';
import type { ObjectStore } from '../../../runtime/object-store/port.ts';
import { devTrust, freshNonce } from '../dev-trust.ts';

// Awaited before any test is declared (ava closes declarations once the module yields after one).
const trust = await devTrust();
const root = mkdtempSync(join(tmpdir(), 'session-key-rotation-'));
test.after.always(() => rmSync(root, { recursive: true, force: true }));

/** A fresh object store and key ring, and managers over them. */
function place() {
  const dir = mkdtempSync(join(root, 'p-'));
  const objects = new LocalObjectStore(join(dir, 'objects'));
  const ringFile = join(dir, 'key-ring.json');
  const ring = LocalKeyRing.open(ringFile);
  const manager = (overrides: { objects?: ObjectStore; keys?: KeyService } = {}) =>
    new SessionKeyManager({ objects: overrides.objects ?? objects, keys: overrides.keys ?? ring, identity: trust.identity });
  return { objects, ring, ringFile, manager };
}

const quiet: RotationLog = { info() {}, warn() {} };

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
    return 'ok';
  } catch (error) {
    if (error instanceof CleanroomError) return error.code;
    throw error;
  }
}

async function keysOf(objects: ObjectStore, sessionId: string): Promise<string[]> {
  return (await objects.list(objectKeys.sessionKeyPrefix(sessionId))).map((info) => info.key);
}

async function bytesOf(objects: ObjectStore, key: string): Promise<Uint8Array> {
  return new Uint8Array(await new Response(await objects.read(key)).arrayBuffer());
}

/** A data key wrapped to the session's public key (as an owner does) unwraps with the worker's private key. */
async function decryptsFor(manager: SessionKeyManager, sessionId: string): Promise<boolean> {
  const { publicJwk, thumbprint } = await manager.getOrCreate(sessionId);
  const key = randomBytes(32);
  const datasetId = crypto.randomUUID();
  const jwe = await wrapDataKey({ key, sessionPublicJwk: publicJwk, sessionId, datasetId });
  const sessionPrivateKey = await manager.privateKey(sessionId, thumbprint);
  return Buffer.from(await unwrapDataKey({ jwe, sessionPrivateKey, sessionId, datasetId, sessionKeyThumbprint: thumbprint })).equals(key);
}

test('rewrap: moves a session from epoch 1 to 2; the key pair is the same and still decrypts; epoch 1 is gone', async (t) => {
  const { objects, manager } = place();
  const keys = manager();
  const session = crypto.randomUUID();
  const before = await keys.getOrCreate(session);
  t.deepEqual(await keys.rewrap(session), { from: 1, to: 2 });
  t.deepEqual(await keysOf(objects, session), [objectKeys.sessionKey(session, 2)]);
  const after = await manager().getOrCreate(session);
  t.deepEqual(after, { ...before, epoch: 2 });
  t.true(await decryptsFor(manager(), session), 'a cold worker reads epoch 2');
  t.true(await decryptsFor(keys, session), 'the warm worker too');
  t.deepEqual(await keys.rewrap(session), { from: 2, to: 3 });
  t.deepEqual(await keysOf(objects, session), [objectKeys.sessionKey(session, 3)]);
  t.is(await keys.rewrap(crypto.randomUUID()), null, 'a session without a key');
});

test('rewrap: a backup of epoch 1 unwraps until the rotation job destroys its key version, then never', async (t) => {
  const { objects, ring, ringFile, manager } = place();
  const keys = manager();
  const session = crypto.randomUUID();
  await keys.getOrCreate(session);
  // What a backup, a snapshot or a soft-deleted copy of the bucket keeps.
  const backup = JSON.parse(Buffer.from(await bytesOf(objects, objectKeys.sessionKey(session, 1))).toString('utf8')) as { wrapped_private: string };
  const unwrapBackup = () => ring.unwrap(Buffer.from(backup.wrapped_private, 'base64url'), sessionKeyAad(session, 1));
  t.is(await codeOf(unwrapBackup()), 'ok');

  // Rewrapped under a new version without destroying: the backup still unwraps.
  ring.rotate();
  await keys.rewrap(session);
  t.is(await codeOf(unwrapBackup()), 'ok');

  const result = await rotateSessionKeys({ manager: keys, ring, log: quiet });
  t.like(result, { rewrapped: 1, failed: 0, unreadable: 0, destroyedVersions: 2 });
  t.deepEqual(ring.versions, [3]);
  t.is(await codeOf(unwrapBackup()), 'DATASET_KEY_UNWRAP');
  const reopened = LocalKeyRing.open(ringFile);
  t.is(await codeOf(reopened.unwrap(Buffer.from(backup.wrapped_private, 'base64url'), sessionKeyAad(session, 1))), 'DATASET_KEY_UNWRAP', 'nor with the ring file reopened');
  // The live session is untouched by the destruction.
  t.deepEqual(await keysOf(objects, session), [objectKeys.sessionKey(session, 3)]);
  t.true(await decryptsFor(manager(), session));
});

test('rewrap: two workers rewrapping one session at once make one epoch 2, and both report the move', async (t) => {
  const { objects, manager } = place();
  const session = crypto.randomUUID();
  await manager().getOrCreate(session);
  const got = await Promise.all(Array.from({ length: 4 }, () => manager().rewrap(session)));
  for (const move of got) t.deepEqual(move, { from: 1, to: 2 });
  t.deepEqual(await keysOf(objects, session), [objectKeys.sessionKey(session, 2)]);
  t.true(await decryptsFor(manager(), session));
});

test('rewrap: the bundle names the current epoch, its certificate certifies that epoch, and it verifies', async (t) => {
  const { manager } = place();
  const keys = manager();
  const session = crypto.randomUUID();
  const first = await keys.bundle(session, freshNonce(), trust.attest);
  t.is(first.epoch, 1);
  await keys.rewrap(session);
  const nonce = freshNonce();
  const bundle = await keys.bundle(session, nonce, trust.attest);
  t.is(bundle.epoch, 2);
  t.is(bundle.thumbprint, first.thumbprint);
  t.deepEqual(bundle.public_jwk, first.public_jwk);
  const verified = await verifySessionKeyBundle(bundle, { sessionId: session, nonce, policy: trust.policy, devKeys: trust.devKeys });
  t.is(verified.thumbprint, first.thumbprint);
  // The epoch-1 certificate does not pass for the epoch-2 bundle.
  const mixed = { ...bundle, certificate: first.certificate };
  t.is(await codeOf(verifySessionKeyBundle(mixed, { sessionId: session, nonce, policy: trust.policy, devKeys: trust.devKeys })), 'SESSION_KEY_INVALID');
});

test('rewrap: a session shredded while it is rewrapped is not brought back', async (t) => {
  const { objects, manager } = place();
  const session = crypto.randomUUID();
  await manager().getOrCreate(session);
  // The control plane closes the session between the worker's read and its write of epoch 2.
  const shredding: ObjectStore = {
    createOnly: async (key, body) => {
      if (key === objectKeys.sessionKey(session, 2)) await objects.deletePrefix(objectKeys.sessionKeyPrefix(session));
      return objects.createOnly(key, body);
    },
    read: (key) => objects.read(key),
    stat: (key) => objects.stat(key),
    deletePrefix: (prefix) => objects.deletePrefix(prefix),
    list: (prefix) => objects.list(prefix),
    delete: (key) => objects.delete(key),
  };
  t.is(await manager({ objects: shredding }).rewrap(session), null);
  t.deepEqual(await keysOf(objects, session), []);
});

test('rewrap: a leftover older epoch (a rewrap that stopped before its delete) is removed by the next rewrap', async (t) => {
  const { objects, manager } = place();
  const keys = manager();
  const session = crypto.randomUUID();
  await keys.getOrCreate(session);
  const epoch1 = await bytesOf(objects, objectKeys.sessionKey(session, 1));
  await keys.rewrap(session);
  await objects.createOnly(objectKeys.sessionKey(session, 1), epoch1);
  t.is((await keys.getOrCreate(session)).epoch, 2, 'the highest epoch is current');
  t.deepEqual(await keys.rewrap(session), { from: 2, to: 3 });
  t.deepEqual(await keysOf(objects, session), [objectKeys.sessionKey(session, 3)]);
});

test('rewrapAll: rewraps every session; a key that no longer unwraps is unreadable, not failed', async (t) => {
  const { objects, ring, manager } = place();
  const keys = manager();
  const sessions = Array.from({ length: 12 }, () => crypto.randomUUID());
  for (const session of sessions) await keys.getOrCreate(session);
  // One session whose key was wrapped under a version that is already destroyed.
  const dead = crypto.randomUUID();
  const other = LocalKeyRing.open(join(mkdtempSync(join(root, 'other-')), 'ring.json'));
  await manager({ keys: other }).getOrCreate(dead);
  t.deepEqual(await keys.rewrapAll(), { rewrapped: 12, failed: 0, unreadable: 1 });
  for (const session of sessions) t.deepEqual(await keysOf(objects, session), [objectKeys.sessionKey(session, 2)]);
  t.deepEqual(await keysOf(objects, dead), [objectKeys.sessionKey(dead, 1)]);
  t.true(await decryptsFor(keys, sessions[0]!));
  t.deepEqual(ring.versions, [1]);
});

test('rotation job: a session that fails to rewrap leaves every old key version in place; the next good run destroys them', async (t) => {
  const { objects, ring, manager } = place();
  const sessions = [crypto.randomUUID(), crypto.randomUUID()];
  for (const session of sessions) await manager().getOrCreate(session);
  let down = true;
  const flaky: KeyService = {
    wrap: (bytes, aad) => ring.wrap(bytes, aad),
    unwrap: async (bytes, aad) => {
      if (down && Buffer.from(aad).toString().includes(sessions[1]!)) throw new CleanroomError('KEY_SERVICE_UNAVAILABLE', 'down', { retryAfter: 5 });
      return ring.unwrap(bytes, aad);
    },
  };
  const warnings: string[] = [];
  const log: RotationLog = { info() {}, warn: (message, fields) => warnings.push(`${message} ${JSON.stringify(fields)}`) };
  const failed = await rotateSessionKeys({ manager: manager({ keys: flaky }), ring, log });
  t.like(failed, { rewrapped: 1, failed: 1, destroyedVersions: 0 });
  t.deepEqual(ring.versions, [1, 2]);
  t.deepEqual(await keysOf(objects, sessions[1]!), [objectKeys.sessionKey(sessions[1]!, 1)]);
  t.true(warnings.some((line) => line.includes('KEY_SERVICE_UNAVAILABLE')));
  t.false(
    warnings.some((line) => line.includes(sessions[1]!)),
    'no session id in the log',
  );
  t.true(await decryptsFor(manager(), sessions[1]!), 'the failed session still works');

  down = false;
  const good = await rotateSessionKeys({ manager: manager({ keys: flaky }), ring, log });
  t.like(good, { rewrapped: 2, failed: 0, destroyedVersions: 2 });
  t.deepEqual(ring.versions, [3]);
  for (const session of sessions) t.true(await decryptsFor(manager(), session));
});

test('rotation job: without a key ring (Cloud KMS) it only rewraps', async (t) => {
  const { objects, ring, manager } = place();
  const session = crypto.randomUUID();
  await manager().getOrCreate(session);
  const result = await rotateSessionKeys({ manager: manager(), log: quiet });
  t.like(result, { rewrapped: 1, failed: 0, destroyedVersions: 0 });
  t.deepEqual(ring.versions, [1]);
  t.deepEqual(await keysOf(objects, session), [objectKeys.sessionKey(session, 2)]);
});

test('rotation schedule: runs on its timer, reports the last run, and stops when closed', async (t) => {
  let runs = 0;
  const schedule = scheduleRotation(
    20,
    async () => {
      runs++;
      return { at: new Date().toISOString(), rewrapped: runs, failed: 0, unreadable: 0, destroyedVersions: 0 };
    },
    quiet,
  );
  t.is(schedule.last(), null);
  while (runs < 2) await new Promise((resolve) => setTimeout(resolve, 10));
  schedule.close();
  await new Promise((resolve) => setTimeout(resolve, 10));
  const seen = runs;
  t.like(schedule.last(), { ok: true });
  await new Promise((resolve) => setTimeout(resolve, 100));
  t.is(runs, seen, 'no run after close');
  t.throws(() => scheduleRotation(0, async () => ({}) as never, quiet), { instanceOf: TypeError });
});
