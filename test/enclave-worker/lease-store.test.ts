import test from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SqliteLeaseStore, type LeaseKey } from '../../enclave-worker/intake/lease-store.ts';

const dir = mkdtempSync(join(tmpdir(), 'leases-'));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

const NOW = new Date('2030-01-01T00:00:00Z');
const later = (ms: number) => new Date(NOW.getTime() + ms);
const key = (overrides: Partial<LeaseKey> = {}): LeaseKey => ({ jti: crypto.randomUUID(), queryId: crypto.randomUUID(), attempt: 1, ...overrides });
const holder = (bootId: string, now = NOW) => ({ bootId, now, leaseMs: 60_000 });

test('leases: the first arrival acquires, a second of the same boot finds it busy until the lease ends', async (t) => {
  const store = SqliteLeaseStore.open(':memory:');
  const k = key();
  t.deepEqual(await store.acquire(k, holder('boot-1')), { kind: 'acquired', takenOver: false });
  t.deepEqual(await store.acquire(k, holder('boot-1', later(1000))), { kind: 'busy', until: later(60_000) });
  t.deepEqual(await store.acquire({ ...k, jti: crypto.randomUUID() }, holder('boot-1')), { kind: 'busy', until: later(60_000) });
  store.close();
});

test('leases: a completed attempt is a replay, by the same jti or another', async (t) => {
  const store = SqliteLeaseStore.open(':memory:');
  const k = key();
  await store.acquire(k, holder('boot-1'));
  t.true(await store.complete(k, 'boot-1', { status: 'SUCCEEDED' }, NOW));
  t.deepEqual(await store.acquire(k, holder('boot-1')), { kind: 'completed' });
  t.deepEqual(await store.acquire(k, holder('boot-2')), { kind: 'completed' });
  t.deepEqual(await store.acquire({ ...k, jti: crypto.randomUUID() }, holder('boot-2')), { kind: 'completed' });
  store.close();
});

test('leases: a jti seen with another query attempt is a replay', async (t) => {
  const store = SqliteLeaseStore.open(':memory:');
  const k = key();
  await store.acquire(k, holder('boot-1'));
  t.deepEqual(await store.acquire({ ...k, attempt: 2 }, holder('boot-1')), { kind: 'completed' });
  t.deepEqual(await store.acquire({ ...k, queryId: crypto.randomUUID() }, holder('boot-1')), { kind: 'completed' });
  store.close();
});

test('leases: a lease of a previous boot is taken over; the old boot can no longer complete it', async (t) => {
  const path = join(dir, `${crypto.randomUUID()}.sqlite`);
  const first = SqliteLeaseStore.open(path);
  const k = key();
  await first.acquire(k, holder('boot-1'));
  first.close(); // the worker dies holding the lease
  const second = SqliteLeaseStore.open(path);
  t.deepEqual(await second.acquire(k, holder('boot-2')), { kind: 'acquired', takenOver: true });
  t.false(await second.complete(k, 'boot-1', { status: 'SUCCEEDED' }, NOW));
  t.true(await second.complete(k, 'boot-2', { status: 'SUCCEEDED' }, NOW));
  t.deepEqual(await second.acquire(k, holder('boot-3')), { kind: 'completed' });
  second.close();
});

test('leases: a lapsed lease of this boot is taken over', async (t) => {
  const store = SqliteLeaseStore.open(':memory:');
  const k = key();
  await store.acquire(k, holder('boot-1'));
  t.deepEqual(await store.acquire(k, holder('boot-1', later(60_001))), { kind: 'acquired', takenOver: true });
  store.close();
});

test('leases: a released lease is acquired afresh', async (t) => {
  const store = SqliteLeaseStore.open(':memory:');
  const k = key();
  await store.acquire(k, holder('boot-1'));
  await store.release(k, 'boot-1');
  t.deepEqual(await store.acquire(k, holder('boot-1')), { kind: 'acquired', takenOver: false });
  store.close();
});

test('leases: of many arrivals over two connections to one file, exactly one acquires', async (t) => {
  const path = join(dir, `${crypto.randomUUID()}.sqlite`);
  const a = SqliteLeaseStore.open(path);
  const b = SqliteLeaseStore.open(path);
  const k = key();
  const claims = await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 ? a : b).acquire({ ...k, jti: crypto.randomUUID() }, holder('boot-1'))));
  t.is(claims.filter((c) => c.kind === 'acquired').length, 1);
  t.is(claims.filter((c) => c.kind === 'busy').length, 9);
  a.close();
  b.close();
});
