import test from 'ava';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportJWK, generateKeyPair } from 'jose';
import { LocalKeyRing } from '../../../enclave-worker/keys/local-key-ring.ts';
import { sessionKeyAad, type KeyService } from '../../../enclave-worker/keys/port.ts';
import { PRIVATE_KEY_CACHE_MS, SessionKeyManager } from '../../../enclave-worker/keys/session-keys.ts';
import { objectKeys } from '../../../protocol/dataset.ts';
import { CleanroomError } from '../../../protocol/errors.ts';
import { verifySessionKeyBundle } from '../../../protocol/session-key.ts';
import { LocalObjectStore } from '../../../runtime/object-store/local.ts';
import type { ObjectStore } from '../../../runtime/object-store/port.ts';
import { devTrust, freshNonce } from '../dev-trust.ts';

// Awaited before any test is declared (ava closes declarations once the module yields after one).
const trust = await devTrust();
const root = mkdtempSync(join(tmpdir(), 'session-keys-'));
test.after.always(() => rmSync(root, { recursive: true, force: true }));

/** A fresh object store directory and key ring file. */
function place() {
  const dir = mkdtempSync(join(root, 'p-'));
  return { objectsDir: join(dir, 'objects'), ringFile: join(dir, 'key-ring.json') };
}

function manager(p: ReturnType<typeof place>, overrides: { objects?: ObjectStore; keys?: KeyService; now?: () => number } = {}) {
  return new SessionKeyManager({
    objects: overrides.objects ?? new LocalObjectStore(p.objectsDir),
    keys: overrides.keys ?? LocalKeyRing.open(p.ringFile),
    identity: trust.identity,
    ...(overrides.now ? { now: overrides.now } : {}),
  });
}

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
    return 'ok';
  } catch (error) {
    if (error instanceof CleanroomError) return error.code;
    throw error;
  }
}

/** ECDH between `privateKey` and a fresh peer, checked against the peer's side with `publicJwk`. */
async function agrees(privateKey: CryptoKey, publicJwk: JsonWebKey): Promise<boolean> {
  const peer = (await crypto.subtle.generateKey({ name: 'ECDH', namedCurve: 'P-256' }, false, ['deriveBits'])) as CryptoKeyPair;
  const pub = await crypto.subtle.importKey('jwk', { kty: 'EC', crv: 'P-256', x: publicJwk.x!, y: publicJwk.y! }, { name: 'ECDH', namedCurve: 'P-256' }, false, []);
  const ours = await crypto.subtle.deriveBits({ name: 'ECDH', public: peer.publicKey }, privateKey, 256);
  const theirs = await crypto.subtle.deriveBits({ name: 'ECDH', public: pub }, peer.privateKey, 256);
  return Buffer.from(ours).equals(Buffer.from(theirs));
}

test('session keys: 10 concurrent first requests in one process make one key', async (t) => {
  const keys = manager(place());
  const session = crypto.randomUUID();
  const got = await Promise.all(Array.from({ length: 10 }, () => keys.getOrCreate(session)));
  t.is(new Set(got.map((k) => k.thumbprint)).size, 1);
  t.is(got[0]!.epoch, 1);
});

test('session keys: 10 workers racing on one store make one key, and each uses it', async (t) => {
  const p = place();
  const session = crypto.randomUUID();
  // Separate managers (separate caches, separate in-flight maps): only the create-only write decides.
  let lost = 0;
  const store = new LocalObjectStore(p.objectsDir);
  const counting: ObjectStore = {
    createOnly: (key, body) => store.createOnly(key, body).catch((error) => ((lost += Number(error?.code === 'OBJECT_EXISTS')), Promise.reject(error))),
    read: (key) => store.read(key),
    stat: (key) => store.stat(key),
    deletePrefix: (prefix) => store.deletePrefix(prefix),
    list: (prefix) => store.list(prefix),
    delete: (key) => store.delete(key),
  };
  const got = await Promise.all(Array.from({ length: 10 }, () => manager(p, { objects: counting }).getOrCreate(session)));
  t.is(new Set(got.map((k) => k.thumbprint)).size, 1);
  t.true(lost >= 1, 'several workers tried to create it');
  const key = await manager(p).privateKey(session, got[0]!.thumbprint);
  t.true(await agrees(key, got[0]!.publicJwk as JsonWebKey));
});

test('session keys: the stored object holds the private key only wrapped (no `d` in clear)', async (t) => {
  const p = place();
  const session = crypto.randomUUID();
  await manager(p).getOrCreate(session);
  const stored = readFileSync(join(p.objectsDir, objectKeys.sessionKey(session, 1)));
  const record = JSON.parse(stored.toString('utf8'));
  t.deepEqual(Object.keys(record).sort(), ['created_at', 'epoch', 'public_jwk', 'session_id', 'thumbprint', 'v', 'wrapped_private']);
  t.false('d' in record.public_jwk);
  // Unwrap it as the worker would, to learn `d`, then look for it in the stored bytes.
  const plain = await LocalKeyRing.open(p.ringFile).unwrap(Buffer.from(record.wrapped_private, 'base64url'), sessionKeyAad(session, 1));
  const { d } = JSON.parse(Buffer.from(plain).toString('utf8'));
  t.regex(d, /^[A-Za-z0-9_-]{43}$/);
  t.false(stored.includes(Buffer.from(d)), 'base64url d is not in the object');
  t.false(stored.includes(Buffer.from(d, 'base64url')), 'raw d is not in the object');
  t.false(stored.toString('hex').includes(Buffer.from(d, 'base64url').toString('hex')));
});

test('session keys: a restarted worker with the same store and key ring gets the same key', async (t) => {
  const p = place();
  const session = crypto.randomUUID();
  const first = await manager(p).getOrCreate(session);
  const restarted = manager(p);
  const again = await restarted.getOrCreate(session);
  t.deepEqual(again, first);
  const key = await restarted.privateKey(session, first.thumbprint);
  t.false(key.extractable);
  t.deepEqual(key.usages, ['deriveBits']);
  t.true(await agrees(key, first.publicJwk as JsonWebKey));
});

test('session keys: a shredded session stops unwrapping once the cache window passes', async (t) => {
  const p = place();
  let now = 1_000_000;
  const objects = new LocalObjectStore(p.objectsDir);
  const keys = manager(p, { objects, now: () => now });
  const session = crypto.randomUUID();
  const { thumbprint } = await keys.getOrCreate(session);
  await keys.privateKey(session, thumbprint);
  t.is(await objects.deletePrefix(objectKeys.sessionKeyPrefix(session)), 1);
  now += PRIVATE_KEY_CACHE_MS - 1;
  t.is(await codeOf(keys.privateKey(session, thumbprint)), 'ok', 'still cached inside the window');
  now += 2;
  t.is(await codeOf(keys.privateKey(session, thumbprint)), 'SESSION_KEY_UNAVAILABLE');
  t.is(await codeOf(manager(p).privateKey(session, thumbprint)), 'SESSION_KEY_UNAVAILABLE', 'a cold worker too');
});

test('session keys: queries starting together share one unwrap; the cache serves the next ones', async (t) => {
  const p = place();
  const ring = LocalKeyRing.open(p.ringFile);
  let unwraps = 0;
  const counting: KeyService = { wrap: (b, a) => ring.wrap(b, a), unwrap: (b, a) => (unwraps++, ring.unwrap(b, a)) };
  const keys = manager(p, { keys: counting });
  const session = crypto.randomUUID();
  const { thumbprint } = await keys.getOrCreate(session);
  const got = await Promise.all(Array.from({ length: 10 }, () => keys.privateKey(session, thumbprint)));
  t.is(new Set(got).size, 1);
  await keys.privateKey(session, thumbprint);
  t.is(unwraps, 1);
});

test('session keys: a key named by another thumbprint is unavailable', async (t) => {
  const p = place();
  const keys = manager(p);
  const session = crypto.randomUUID();
  const { thumbprint } = await keys.getOrCreate(session);
  const other = await keys.getOrCreate(crypto.randomUUID());
  t.is(await codeOf(keys.privateKey(session, other.thumbprint)), 'SESSION_KEY_UNAVAILABLE');
  t.is(await codeOf(keys.privateKey(session, thumbprint)), 'ok');
});

test('session keys: a key object moved into another session is refused', async (t) => {
  const p = place();
  const keys = manager(p);
  const victim = crypto.randomUUID();
  const attacker = crypto.randomUUID();
  const { thumbprint } = await keys.getOrCreate(attacker);
  const record = JSON.parse(readFileSync(join(p.objectsDir, objectKeys.sessionKey(attacker, 1)), 'utf8'));
  const plant = (value: unknown) => {
    const path = join(p.objectsDir, objectKeys.sessionKey(victim, 1));
    mkdirSync(join(path, '..'), { recursive: true });
    writeFileSync(path, JSON.stringify(value));
  };
  // As is: it names the other session.
  plant(record);
  t.is(await codeOf(keys.getOrCreate(victim)), 'SESSION_KEY_INVALID');
  // Relabelled: it parses, but the AAD binds the wrapped key to the other session.
  plant({ ...record, session_id: victim });
  t.is((await keys.getOrCreate(victim)).thumbprint, thumbprint);
  t.is(await codeOf(keys.privateKey(victim, thumbprint)), 'SESSION_KEY_UNAVAILABLE');
  // A public key swapped under the wrapped private key does not match its thumbprint, or its private part.
  const { publicKey } = await generateKeyPair('ECDH-ES', { crv: 'P-256', extractable: true });
  const { x, y } = await exportJWK(publicKey);
  plant({ ...record, session_id: victim, public_jwk: { ...record.public_jwk, x, y } });
  t.is(await codeOf(keys.getOrCreate(victim)), 'SESSION_KEY_INVALID');
  for (const junk of ['not json', { ...record, session_id: victim, extra: 1 }, { ...record, session_id: victim, public_jwk: { ...record.public_jwk, d: 'x'.repeat(43) } }]) {
    plant(junk);
    t.is(await codeOf(keys.getOrCreate(victim)), 'SESSION_KEY_INVALID');
  }
});

test('session keys: key service and object store outages pass through with their codes', async (t) => {
  const p = place();
  const down = (code: 'KEY_SERVICE_UNAVAILABLE' | 'OBJECT_STORE_UNAVAILABLE') => async () => {
    throw new CleanroomError(code, 'down', { retryAfter: 5 });
  };
  const deadKms: KeyService = { wrap: down('KEY_SERVICE_UNAVAILABLE'), unwrap: down('KEY_SERVICE_UNAVAILABLE') };
  t.is(await codeOf(manager(p, { keys: deadKms }).getOrCreate(crypto.randomUUID())), 'KEY_SERVICE_UNAVAILABLE');
  const session = crypto.randomUUID();
  const { thumbprint } = await manager(p).getOrCreate(session);
  t.is(await codeOf(manager(p, { keys: deadKms }).privateKey(session, thumbprint)), 'KEY_SERVICE_UNAVAILABLE');
  const store = new LocalObjectStore(p.objectsDir);
  const deadStore: ObjectStore = {
    createOnly: down('OBJECT_STORE_UNAVAILABLE'),
    read: down('OBJECT_STORE_UNAVAILABLE'),
    stat: store.stat.bind(store),
    deletePrefix: store.deletePrefix.bind(store),
    list: store.list.bind(store),
    delete: store.delete.bind(store),
  };
  t.is(await codeOf(manager(p, { objects: deadStore }).getOrCreate(session)), 'OBJECT_STORE_UNAVAILABLE');
});

test('session keys: a key ring whose key version is destroyed no longer unwraps the session key', async (t) => {
  const p = place();
  const session = crypto.randomUUID();
  const { thumbprint } = await manager(p).getOrCreate(session);
  const ring = LocalKeyRing.open(p.ringFile);
  ring.rotate();
  ring.destroyVersion(1);
  t.is(await codeOf(manager(p).privateKey(session, thumbprint)), 'SESSION_KEY_UNAVAILABLE');
});

test('session keys: the bundle verifies with the caller nonce, the dev opt-in and the session', async (t) => {
  const keys = manager(place());
  const session = crypto.randomUUID();
  const nonce = freshNonce();
  const bundle = await keys.bundle(session, nonce, trust.attest);
  t.is(bundle.attestation_kind, 'insecure-dev');
  const verified = await verifySessionKeyBundle(bundle, { sessionId: session, nonce, policy: trust.policy, devKeys: trust.devKeys });
  t.is(verified.thumbprint, (await keys.getOrCreate(session)).thumbprint);
  t.true(verified.attestation.insecureDev);
  const err = await t.throwsAsync(verifySessionKeyBundle(bundle, { sessionId: crypto.randomUUID(), nonce, policy: trust.policy, devKeys: trust.devKeys }));
  t.is((err as CleanroomError).code, 'SESSION_KEY_INVALID', 'not for another session');
  const replay = await t.throwsAsync(verifySessionKeyBundle(bundle, { sessionId: session, nonce: freshNonce(), policy: trust.policy, devKeys: trust.devKeys }));
  t.is((replay as CleanroomError).code, 'ATTESTATION_NONCE', 'not for another nonce');
});
