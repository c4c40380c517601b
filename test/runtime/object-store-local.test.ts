import test from 'ava';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalObjectStore } from '../../runtime/object-store/local.ts';
import { objectStoreContract, readAll, rejectsWithCode, streamOf } from './object-store.contract.ts';

const root = mkdtempSync(join(tmpdir(), 'object-store-'));
test.after.always(() => rmSync(root, { recursive: true, force: true }));

const freshRoot = () => join(root, crypto.randomUUID());

objectStoreContract('local object store', async () => ({ store: new LocalObjectStore(freshRoot()), teardown: async () => {} }));

// Two store instances on one directory, as the API (uploads) and the worker (reads) share it.
objectStoreContract('local object store, two instances on one directory', async () => {
  const dir = freshRoot();
  const [a, b] = [new LocalObjectStore(dir), new LocalObjectStore(dir)];
  let calls = 0;
  const pick = () => (calls++ % 2 === 0 ? a : b);
  return {
    store: {
      createOnly: (...args) => pick().createOnly(...args),
      read: (...args) => pick().read(...args),
      stat: (...args) => pick().stat(...args),
      deletePrefix: (...args) => pick().deletePrefix(...args),
      list: (...args) => pick().list(...args),
      delete: (...args) => pick().delete(...args),
    },
    teardown: async () => {},
  };
});

/** Every file and directory under `dir`, relative. */
function tree(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' }).sort();
}

test('local object store: objects are files 0600 in directories 0700 under the root', async (t) => {
  const dir = freshRoot();
  const store = new LocalObjectStore(dir);
  await store.createOnly('datasets/s1/d1.crds', randomBytes(10));
  t.is(statSync(dir).mode & 0o777, 0o700);
  t.is(statSync(join(dir, 'datasets')).mode & 0o777, 0o700);
  t.is(statSync(join(dir, 'datasets/s1')).mode & 0o777, 0o700);
  t.is(statSync(join(dir, 'datasets/s1/d1.crds')).mode & 0o777, 0o600);
  t.deepEqual(tree(dir), ['datasets', 'datasets/s1', 'datasets/s1/d1.crds']);
});

test('local object store: no temporary file is left after a win, a loss, an oversize body or a broken source', async (t) => {
  const dir = freshRoot();
  const store = new LocalObjectStore(dir);
  await Promise.allSettled([1, 2, 3].map(() => store.createOnly('r/x', streamOf(randomBytes(100_000), { chunkBytes: 1000 }))));
  await rejectsWithCode(t, store.createOnly('r/y', streamOf(randomBytes(10_000)), { maxBytes: 5000 }), 'DATASET_TOO_LARGE');
  await t.throwsAsync(store.createOnly('r/z', streamOf(randomBytes(10_000), { chunkBytes: 1000, failAfter: 3000 })));
  t.deepEqual(tree(dir), ['r', 'r/x']);
});

test('local object store: while a write is in progress the object is not visible', async (t) => {
  const store = new LocalObjectStore(freshRoot());
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  let sent = 0;
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (sent === 1) await gate;
      if (sent === 2) return controller.close();
      controller.enqueue(randomBytes(1000));
      sent++;
    },
  });
  const writing = store.createOnly('p/slow', body);
  while (sent < 1) await new Promise((resolve) => setImmediate(resolve));
  t.is(await store.stat('p/slow'), null);
  t.is(await store.read('p/slow'), null);
  release();
  t.is((await writing).size, 2000);
});

test('local object store: a read that started before deletePrefix still streams the whole object', async (t) => {
  const store = new LocalObjectStore(freshRoot());
  const bytes = randomBytes(3 * 1024 * 1024);
  await store.createOnly('d/s/obj', bytes);
  const stream = await store.read('d/s/obj');
  t.is(await store.deletePrefix('d/s/'), 1);
  t.true(Buffer.from(await readAll(stream!)).equals(bytes));
});

test('local object store: deletePrefix removes the emptied directories and keeps the parent', async (t) => {
  const dir = freshRoot();
  const store = new LocalObjectStore(dir);
  await store.createOnly('session-keys/s1/epoch-1.json', randomBytes(5));
  await store.createOnly('session-keys/s1/deep/x', randomBytes(5));
  await store.createOnly('session-keys/s2/epoch-1.json', randomBytes(5));
  t.is(await store.deletePrefix('session-keys/s1/'), 2);
  t.deepEqual(tree(dir), ['session-keys', 'session-keys/s2', 'session-keys/s2/epoch-1.json']);
});

test('local object store: keys that would alias or hide a path are TypeErrors', async (t) => {
  const store = new LocalObjectStore(freshRoot());
  for (const key of ['a//b', 'a/./b', 'a/', '.hidden', 'a/.tmp-1234', './a']) {
    await t.throwsAsync(store.createOnly(key, new Uint8Array([1])), { instanceOf: TypeError }, key);
    await t.throwsAsync(store.stat(key), { instanceOf: TypeError }, key);
  }
  t.throws(() => new LocalObjectStore(''), { instanceOf: TypeError });
});

test('local object store: a directory is not an object', async (t) => {
  const store = new LocalObjectStore(freshRoot());
  await store.createOnly('a/b/c', randomBytes(3));
  t.is(await store.stat('a/b'), null);
  t.is(await store.read('a/b'), null);
});
