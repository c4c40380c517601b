import test, { type ExecutionContext } from 'ava';
import { randomBytes } from 'node:crypto';
import { CleanroomError, type ErrorCode } from '../../protocol/errors.ts';
import type { ObjectStore } from '../../runtime/object-store/port.ts';

/** An object store under test and how to dispose of it. */
export interface ObjectStoreUnderTest {
  store: ObjectStore;
  teardown(): Promise<void>;
}

/** Asserts `promise` rejects with a `CleanroomError` of `code`, and returns it. */
export async function rejectsWithCode(t: ExecutionContext, promise: Promise<unknown>, code: ErrorCode): Promise<CleanroomError | undefined> {
  const error = await t.throwsAsync(promise);
  t.true(error instanceof CleanroomError, `expected a CleanroomError, got ${String(error)}`);
  t.is((error as CleanroomError | undefined)?.code, code);
  return error as CleanroomError | undefined;
}

/**
 * `bytes` as a stream of `chunkBytes` pieces, yielding to the event loop between them so that
 * concurrent writers interleave. `failAfter` makes the source error after that many bytes.
 */
export function streamOf(bytes: Uint8Array, options: { chunkBytes?: number; failAfter?: number } = {}): ReadableStream<Uint8Array> {
  const chunkBytes = options.chunkBytes ?? 64 * 1024;
  let offset = 0;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      await new Promise((resolve) => setImmediate(resolve));
      if (options.failAfter !== undefined && offset >= options.failAfter) {
        controller.error(new Error('the source broke off'));
        return;
      }
      if (offset >= bytes.byteLength) {
        controller.close();
        return;
      }
      // Copies, so a consumer that keeps chunks cannot see them change.
      controller.enqueue(bytes.slice(offset, offset + chunkBytes));
      offset += chunkBytes;
    },
  });
}

/** Every byte of a stream. */
export async function readAll(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** A fresh key prefix, so suites sharing one bucket never see each other's objects. */
export function freshPrefix(): string {
  return `contract/${crypto.randomUUID()}/`;
}

export interface ObjectStoreContractOptions {
  /** Size of the large round trip (default 5 MiB). */
  largeBytes?: number;
  /** Run one test at a time (a real bucket, to stay within rate limits). */
  serial?: boolean;
}

/**
 * Registers the `ObjectStore` contract as ava tests titled `${name}: ...`. `setup` runs once per
 * test; every test works under its own key prefix, so stores may share one bucket.
 */
export function objectStoreContract(name: string, setup: () => Promise<ObjectStoreUnderTest>, options: ObjectStoreContractOptions = {}): void {
  const withStore = (title: string, body: (t: ExecutionContext, store: ObjectStore, prefix: string) => Promise<void>) => {
    (options.serial ? test.serial : test)(`${name}: ${title}`, async (t) => {
      const { store, teardown } = await setup();
      const prefix = freshPrefix();
      try {
        await body(t, store, prefix);
      } finally {
        await store.deletePrefix(prefix).catch(() => {});
        await teardown();
      }
    });
  };

  withStore('createOnly stores the bytes once; a second write is OBJECT_EXISTS and changes nothing', async (t, store, prefix) => {
    const key = `${prefix}once.bin`;
    const first = randomBytes(1000);
    const info = await store.createOnly(key, first);
    t.deepEqual({ key: info.key, size: info.size }, { key, size: 1000 });
    t.true(typeof info.generation === 'string' && info.generation.length > 0);
    await rejectsWithCode(t, store.createOnly(key, randomBytes(1000)), 'OBJECT_EXISTS');
    await rejectsWithCode(t, store.createOnly(key, streamOf(randomBytes(10))), 'OBJECT_EXISTS');
    t.deepEqual(await readAll((await store.read(key))!), new Uint8Array(first));
    t.deepEqual(await store.stat(key), info);
  });

  withStore('racing streamed createOnly calls: exactly one wins and the object is its bytes', async (t, store, prefix) => {
    const key = `${prefix}race.bin`;
    const bodies = Array.from({ length: 5 }, () => randomBytes(300 * 1024));
    const results = await Promise.allSettled(bodies.map((body) => store.createOnly(key, streamOf(body, { chunkBytes: 16 * 1024 }))));
    const winners = results.flatMap((r, i) => (r.status === 'fulfilled' ? [i] : []));
    t.is(winners.length, 1, 'one winner');
    for (const r of results) {
      if (r.status === 'rejected') t.is((r.reason as CleanroomError).code, 'OBJECT_EXISTS');
    }
    t.deepEqual(await readAll((await store.read(key))!), new Uint8Array(bodies[winners[0]!]!));
  });

  withStore('a streamed body past maxBytes is DATASET_TOO_LARGE and leaves nothing behind', async (t, store, prefix) => {
    const key = `${prefix}big.bin`;
    await rejectsWithCode(t, store.createOnly(key, streamOf(randomBytes(200 * 1024), { chunkBytes: 8192 }), { maxBytes: 100 * 1024 }), 'DATASET_TOO_LARGE');
    t.is(await store.stat(key), null);
    t.is(await store.read(key), null);
    // The key is still free: the failed write claimed nothing.
    t.is((await store.createOnly(key, randomBytes(10), { maxBytes: 100 * 1024 })).size, 10);
  });

  withStore('a byte array past maxBytes is DATASET_TOO_LARGE; exactly maxBytes is stored', async (t, store, prefix) => {
    await rejectsWithCode(t, store.createOnly(`${prefix}a`, randomBytes(101), { maxBytes: 100 }), 'DATASET_TOO_LARGE');
    t.is(await store.stat(`${prefix}a`), null);
    t.is((await store.createOnly(`${prefix}b`, streamOf(randomBytes(100), { chunkBytes: 7 }), { maxBytes: 100 })).size, 100);
    t.is((await store.createOnly(`${prefix}c`, randomBytes(100), { maxBytes: 100 })).size, 100);
  });

  withStore('a source that fails midway rejects and leaves no object', async (t, store, prefix) => {
    const key = `${prefix}broken.bin`;
    await t.throwsAsync(store.createOnly(key, streamOf(randomBytes(64 * 1024), { chunkBytes: 4096, failAfter: 16 * 1024 })));
    t.is(await store.stat(key), null);
    t.is(await store.read(key), null);
  });

  withStore('read and stat of a missing object are null', async (t, store, prefix) => {
    t.is(await store.read(`${prefix}missing`), null);
    t.is(await store.stat(`${prefix}missing`), null);
  });

  withStore('a multi-MiB streamed body round-trips byte for byte', async (t, store, prefix) => {
    const key = `${prefix}large.bin`;
    const bytes = randomBytes(options.largeBytes ?? 5 * 1024 * 1024 + 123);
    // Odd-sized chunks, so no chunk boundary lines up with anything.
    const info = await store.createOnly(key, streamOf(bytes, { chunkBytes: 65_521 }), { maxBytes: bytes.byteLength });
    t.is(info.size, bytes.byteLength);
    const stream = await store.read(key);
    t.true(stream instanceof ReadableStream);
    t.true(Buffer.from(await readAll(stream!)).equals(bytes));
  });

  withStore('an empty object is an object', async (t, store, prefix) => {
    const key = `${prefix}empty`;
    t.is((await store.createOnly(key, new Uint8Array(0))).size, 0);
    t.is((await store.stat(key))?.size, 0);
    t.is((await readAll((await store.read(key))!)).byteLength, 0);
    await rejectsWithCode(t, store.createOnly(key, new Uint8Array(0)), 'OBJECT_EXISTS');
  });

  withStore('stat reports size and generation; a deleted and recreated object has a new generation', async (t, store, prefix) => {
    const key = `${prefix}dir/object.json`;
    const first = await store.createOnly(key, new TextEncoder().encode('{"a":1}'));
    t.deepEqual(await store.stat(key), { key, size: 7, generation: first.generation });
    t.is(await store.deletePrefix(`${prefix}dir/`), 1);
    t.is(await store.stat(key), null);
    const second = await store.createOnly(key, new TextEncoder().encode('{"a":2}'));
    t.not(second.generation, first.generation);
    t.deepEqual(await store.stat(key), second);
  });

  withStore('deletePrefix removes every object under the prefix and nothing else', async (t, store, prefix) => {
    const inside = [`${prefix}s1/a.crds`, `${prefix}s1/b.crds`, `${prefix}s1/nested/c.json`];
    const outside = [`${prefix}s10/a.crds`, `${prefix}s1.crds`, `${prefix}s2/a.crds`];
    for (const key of [...inside, ...outside]) await store.createOnly(key, new TextEncoder().encode(key));
    t.is(await store.deletePrefix(`${prefix}s1/`), inside.length);
    for (const key of inside) t.is(await store.stat(key), null, key);
    for (const key of outside) t.is((await store.stat(key))?.size, new TextEncoder().encode(key).byteLength, key);
    t.is(await store.deletePrefix(`${prefix}s1/`), 0);
    t.is(await store.deletePrefix(`${prefix}never/`), 0);
    // The prefix can be used again after it was shredded.
    await store.createOnly(inside[0]!, new Uint8Array([1]));
    t.is((await store.stat(inside[0]!))?.size, 1);
  });

  withStore('deletePrefix of many objects removes them all (pagination)', async (t, store, prefix) => {
    const keys = Array.from({ length: 7 }, (_, i) => `${prefix}many/${i}.bin`);
    await Promise.all(keys.map((key) => store.createOnly(key, new Uint8Array([1, 2, 3]))));
    t.is(await store.deletePrefix(`${prefix}many/`), keys.length);
    for (const key of keys) t.is(await store.stat(key), null);
  });

  withStore("list returns every object under the prefix, nested too, sorted by key, with stat's size and generation", async (t, store, prefix) => {
    const inside = [`${prefix}s1/b.crds`, `${prefix}s1/nested/c.json`, `${prefix}s1/a.crds`, `${prefix}s1/epoch-10.json`, `${prefix}s1/epoch-9.json`];
    const outside = [`${prefix}s10/a.crds`, `${prefix}s1.crds`, `${prefix}s2/a.crds`];
    for (const key of [...inside, ...outside]) await store.createOnly(key, new TextEncoder().encode(key));
    const listed = await store.list(`${prefix}s1/`);
    t.deepEqual(
      listed.map((info) => info.key),
      [...inside].sort((a, b) => (a < b ? -1 : 1)),
    );
    for (const info of listed) t.deepEqual(await store.stat(info.key), info, info.key);
    t.deepEqual(await store.list(`${prefix}never/`), []);
    t.is((await store.list(prefix)).length, inside.length + outside.length);
  });

  withStore('list of many objects returns them all (pagination)', async (t, store, prefix) => {
    const keys = Array.from({ length: 7 }, (_, i) => `${prefix}many/${i}.bin`);
    await Promise.all(keys.map((key) => store.createOnly(key, new Uint8Array([1, 2, 3]))));
    t.deepEqual(
      (await store.list(`${prefix}many/`)).map((info) => info.key),
      keys,
    );
  });

  withStore('delete removes one object and is false when there was none; the key can be written again', async (t, store, prefix) => {
    const key = `${prefix}s1/epoch-1.json`;
    const sibling = `${prefix}s1/epoch-2.json`;
    await store.createOnly(key, new Uint8Array([1]));
    await store.createOnly(sibling, new Uint8Array([2]));
    t.true(await store.delete(key));
    t.is(await store.stat(key), null);
    t.is(await store.read(key), null);
    t.false(await store.delete(key));
    t.false(await store.delete(`${prefix}never`));
    t.is((await store.stat(sibling))?.size, 1);
    t.deepEqual(
      (await store.list(`${prefix}s1/`)).map((info) => info.key),
      [sibling],
    );
    t.is((await store.createOnly(key, new Uint8Array([3, 4]))).size, 2);
  });

  withStore('misuse is a TypeError: keys outside the layout, a prefix without a slash', async (t, store, prefix) => {
    for (const key of ['../escape', '/absolute', `${prefix}a/../b`, `${prefix}sp ace`, '', `${prefix}${'x'.repeat(600)}`]) {
      await t.throwsAsync(store.createOnly(key, new Uint8Array([1])), { instanceOf: TypeError }, key);
      await t.throwsAsync(store.read(key), { instanceOf: TypeError }, key);
      await t.throwsAsync(store.stat(key), { instanceOf: TypeError }, key);
      await t.throwsAsync(store.delete(key), { instanceOf: TypeError }, key);
    }
    await t.throwsAsync(store.deletePrefix(`${prefix}s1`), { instanceOf: TypeError });
    await t.throwsAsync(store.deletePrefix('/'), { instanceOf: TypeError });
    await t.throwsAsync(store.list(`${prefix}s1`), { instanceOf: TypeError });
    await t.throwsAsync(store.list('/'), { instanceOf: TypeError });
  });
}
