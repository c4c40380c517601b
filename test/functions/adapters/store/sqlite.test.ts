import test from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import { DatabaseSync } from 'node:sqlite';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { CleanroomError } from '../../../../protocol/errors.ts';
import { SqliteSessionStore, translateSqliteError } from '../../../../functions/adapters/store/sqlite.ts';
import { newSession, rejectsWithCode, sessionStoreContract, uniqueEmail, withParticipant } from './contract.ts';
import { newQuery, queryStoreContract, queryWrite } from './query-contract.ts';
import { datasetStoreContract, datasetWrite, newDataset } from './dataset-contract.ts';

const dir = mkdtempSync(join(tmpdir(), 'sqlite-store-'));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

const freshPath = (): string => join(dir, `${crypto.randomUUID()}.sqlite`);

sessionStoreContract('sqlite', async () => {
  const store = SqliteSessionStore.open(freshPath());
  return { store, teardown: async () => store.close() };
});

// Two connections to one file, as when the API and the local worker share the data directory.
sessionStoreContract('sqlite, two connections to one file', async () => {
  const path = freshPath();
  const a = SqliteSessionStore.open(path);
  const b = SqliteSessionStore.open(path);
  const pick = (i: number) => (i % 2 === 0 ? a : b);
  let calls = 0;
  // Alternate connections call by call, so racing writes come from different connections.
  const store = {
    create: (...args: Parameters<SqliteSessionStore['create']>) => pick(calls++).create(...args),
    get: (...args: Parameters<SqliteSessionStore['get']>) => pick(calls++).get(...args),
    update: (...args: Parameters<SqliteSessionStore['update']>) => pick(calls++).update(...args),
    listForParticipant: (...args: Parameters<SqliteSessionStore['listForParticipant']>) => pick(calls++).listForParticipant(...args),
    listAudit: (...args: Parameters<SqliteSessionStore['listAudit']>) => pick(calls++).listAudit(...args),
    listUnshredded: (...args: Parameters<SqliteSessionStore['listUnshredded']>) => pick(calls++).listUnshredded(...args),
  };
  return {
    store,
    teardown: async () => {
      a.close();
      b.close();
    },
  };
});

queryStoreContract('sqlite', async () => {
  const store = SqliteSessionStore.open(freshPath());
  return { store, teardown: async () => store.close() };
});

datasetStoreContract('sqlite', async () => {
  const store = SqliteSessionStore.open(freshPath());
  return { store, teardown: async () => store.close() };
});

// Racing query transitions from two connections, as from the API and the reconciler.
queryStoreContract('sqlite, two connections to one file', async () => {
  const path = freshPath();
  const connections = [SqliteSessionStore.open(path), SqliteSessionStore.open(path)] as const;
  let calls = 0;
  const pick = () => connections[calls++ % 2]!;
  const store = new Proxy(connections[0], {
    get: (target, property) => {
      const value = Reflect.get(target, property);
      return typeof value === 'function' ? (...args: unknown[]) => Reflect.apply(value, pick(), args) : value;
    },
  });
  return {
    store,
    teardown: async () => connections.forEach((c) => c.close()),
  };
});

test('sqlite: a database file from before queries existed gains the queries table on open', async (t) => {
  const path = freshPath();
  const old = new DatabaseSync(path);
  old.exec('CREATE TABLE sessions (id TEXT PRIMARY KEY, doc TEXT NOT NULL, status TEXT NOT NULL, created_at TEXT NOT NULL, version INTEGER NOT NULL) STRICT');
  old.close();
  const store = SqliteSessionStore.open(path);
  const { session, entry } = await newSession();
  await store.create(session, entry);
  const query = newQuery(session);
  await store.commitQuery((await queryWrite(session, query, null)).write);
  t.deepEqual(await store.getQuery(session.id, query.id), query);
  store.close();
});

test('sqlite: a database file from before datasets existed gains the datasets table on open', async (t) => {
  const path = freshPath();
  const old = new DatabaseSync(path);
  old.exec('CREATE TABLE sessions (id TEXT PRIMARY KEY, doc TEXT NOT NULL, status TEXT NOT NULL, created_at TEXT NOT NULL, version INTEGER NOT NULL) STRICT');
  old.close();
  const store = SqliteSessionStore.open(path);
  const { session, entry } = await newSession();
  await store.create(session, entry);
  const dataset = newDataset(session);
  await store.commitDataset((await datasetWrite(session, dataset)).write);
  t.deepEqual(await store.getDataset(session.id, dataset.id), dataset);
  store.close();
});

test('sqlite: a malformed stored dataset is INTERNAL and the message does not quote it', async (t) => {
  const store = SqliteSessionStore.open(freshPath());
  const { session, entry } = await newSession();
  await store.create(session, entry);
  const dataset = newDataset(session);
  await store.commitDataset((await datasetWrite(session, dataset)).write);
  const secret = 'eyJ.secret-wrapped-key';
  store.database.prepare('UPDATE datasets SET doc = ? WHERE id = ?').run(JSON.stringify({ ...dataset, wrapped_key: secret, table: 'Bad Name' }), dataset.id);
  for (const read of [() => store.getDataset(session.id, dataset.id), () => store.listDatasets(session.id, { limit: 10 })]) {
    const error = await t.throwsAsync(read());
    t.is((error as CleanroomError).code, 'INTERNAL');
    t.false(JSON.stringify({ m: error?.message, c: String((error as CleanroomError).cause) }).includes(secret));
  }
  // A record stored under another session's key is as malformed.
  store.database.prepare('UPDATE datasets SET doc = ? WHERE id = ?').run(JSON.stringify({ ...dataset, session_id: 'elsewhere' }), dataset.id);
  await rejectsWithCode(t, store.getDataset(session.id, dataset.id), 'INTERNAL');
  store.close();
});

test('sqlite: a malformed stored query is INTERNAL and the message does not quote it', async (t) => {
  const store = SqliteSessionStore.open(freshPath());
  const { session, entry } = await newSession();
  await store.create(session, entry);
  const query = newQuery(session);
  await store.commitQuery((await queryWrite(session, query, null)).write);
  const secret = 'SELECT secret_literal_42';
  store.database.prepare('UPDATE queries SET doc = ? WHERE id = ?').run(JSON.stringify({ ...query, sql: secret, status: 'DONE' }), query.id);
  for (const read of [
    () => store.getQuery(session.id, query.id),
    () => store.listQueries(session.id, { limit: 10 }),
    () => store.listQueriesInStatus('PENDING_APPROVAL', { before: '2999-01-01T00:00:00.000Z', limit: 10 }),
  ]) {
    const error = await t.throwsAsync(read());
    t.is((error as CleanroomError).code, 'INTERNAL');
    t.false(JSON.stringify({ m: error?.message, c: String((error as CleanroomError).cause) }).includes(secret));
  }
  store.close();
});

test('sqlite: open creates the file, WAL mode and foreign keys', (t) => {
  const store = SqliteSessionStore.open(freshPath());
  t.is(store.database.prepare('PRAGMA journal_mode').get()?.journal_mode, 'wal');
  t.is(store.database.prepare('PRAGMA foreign_keys').get()?.foreign_keys, 1);
  store.close();
  store.close(); // idempotent
});

test('sqlite: sessions and their audit chains survive close and reopen', async (t) => {
  const path = freshPath();
  const first = await newSession();
  const second = await withParticipant(first.session, uniqueEmail('p'));
  const writer = SqliteSessionStore.open(path);
  await writer.create(first.session, first.entry);
  await writer.update(second.session, 1, second.entry);
  writer.close();

  const reader = SqliteSessionStore.open(path);
  t.deepEqual(await reader.get(first.session.id), second.session);
  t.deepEqual(await reader.listAudit(first.session.id, 0, 10), [first.entry, second.entry]);
  t.deepEqual(await reader.listForParticipant(second.session.participant_emails[1]!, { limit: 10 }), [second.session]);
  // Still conditional after reopening: version 1 is stale now.
  const stale = await withParticipant(first.session, uniqueEmail('q'));
  await rejectsWithCode(t, reader.update(stale.session, 1, stale.entry), 'CONFLICT');
  reader.close();
});

test('sqlite: a race between two store instances on one file resolves to one winner', async (t) => {
  const path = freshPath();
  const a = SqliteSessionStore.open(path);
  const b = SqliteSessionStore.open(path);
  const { session, entry } = await newSession();
  await a.create(session, entry);
  const fromA = await withParticipant(session, uniqueEmail('a'));
  const fromB = await withParticipant(session, uniqueEmail('b'));
  const results = await Promise.allSettled([a.update(fromA.session, 1, fromA.entry), b.update(fromB.session, 1, fromB.entry)]);
  t.is(results.filter((r) => r.status === 'fulfilled').length, 1);
  const loser = results.find((r) => r.status === 'rejected');
  t.true(loser?.status === 'rejected' && loser.reason instanceof CleanroomError && loser.reason.code === 'CONFLICT');
  t.is((await b.listAudit(session.id, 0, 10)).length, 2);
  a.close();
  b.close();
});

// node:sqlite is synchronous, so two stores in one thread never overlap. Two threads do: each
// opens its own connection, waits at a shared barrier, then writes at the same moment.
const RACER = `
const { workerData, parentPort } = require('node:worker_threads');
import(workerData.module).then(async ({ SqliteSessionStore }) => {
  const store = SqliteSessionStore.open(workerData.path);
  parentPort.postMessage('ready');
  Atomics.wait(workerData.barrier, 0, 0);
  try {
    await store.update(workerData.session, workerData.expectedVersion, workerData.entry);
    parentPort.postMessage({ ok: true });
  } catch (error) {
    parentPort.postMessage({ ok: false, code: error.code ?? String(error) });
  } finally {
    store.close();
  }
});
`;

test('sqlite: updates racing from two threads, each with its own connection, resolve to one winner (10 rounds)', async (t) => {
  const path = freshPath();
  const store = SqliteSessionStore.open(path);
  const module = new URL('../../../../functions/adapters/store/sqlite.ts', import.meta.url).href;
  let { session, entry } = await newSession();
  await store.create(session, entry);
  for (let round = 0; round < 10; round++) {
    const contenders = [await withParticipant(session, uniqueEmail('a')), await withParticipant(session, uniqueEmail('b'))];
    const barrier = new Int32Array(new SharedArrayBuffer(4));
    const outcomes = contenders.map((next) => {
      const worker = new Worker(RACER, {
        eval: true,
        workerData: { module, path, barrier, session: next.session, entry: next.entry, expectedVersion: session.version },
      });
      const ready = Promise.withResolvers<void>();
      const done = Promise.withResolvers<{ ok: boolean; code?: string }>();
      worker.on('message', (message) => (message === 'ready' ? ready.resolve() : done.resolve(message)));
      worker.once('error', (error) => (ready.reject(error), done.reject(error)));
      return { ready: ready.promise, done: done.promise };
    });
    await Promise.all(outcomes.map((o) => o.ready));
    Atomics.store(barrier, 0, 1);
    Atomics.notify(barrier, 0);
    const results = await Promise.all(outcomes.map((o) => o.done));
    t.is(results.filter((r) => r.ok).length, 1, `round ${round}: one winner`);
    t.deepEqual(
      results.filter((r) => !r.ok).map((r) => r.code),
      ['CONFLICT'],
      `round ${round}: one CONFLICT`,
    );
    const winner = contenders[results.findIndex((r) => r.ok)]!;
    t.deepEqual(await store.get(session.id), winner.session);
    t.is((await store.listAudit(session.id, 0, 100)).length, round + 2);
    session = winner.session;
  }
  store.close();
});

test('sqlite: a write lock held elsewhere past the busy timeout is STORE_UNAVAILABLE with retryAfter, and nothing is written', async (t) => {
  const path = freshPath();
  const store = SqliteSessionStore.open(path, { busyTimeoutMs: 50 });
  const other = new DatabaseSync(path);
  other.exec('BEGIN IMMEDIATE');
  const { session, entry } = await newSession();
  const error = await t.throwsAsync(store.create(session, entry));
  t.true(error instanceof CleanroomError);
  t.is((error as CleanroomError).code, 'STORE_UNAVAILABLE');
  t.true(((error as CleanroomError).retryAfter ?? 0) > 0);
  other.exec('ROLLBACK');
  other.close();
  t.is(await store.get(session.id), null);
  await store.create(session, entry);
  t.deepEqual(await store.get(session.id), session);
  store.close();
});

test('sqlite: a malformed stored record is INTERNAL on every read path, and the message does not quote it', async (t) => {
  const store = SqliteSessionStore.open(freshPath());
  const { session, entry } = await newSession();
  await store.create(session, entry);
  const secret = 'eyJhbGciOiJFUzI1NiJ9.secret-token';
  const broken = { ...session, name: 42, participants: [{ ...session.participants[0], binding_token: secret }] };
  store.database.prepare('UPDATE sessions SET doc = ? WHERE id = ?').run(JSON.stringify(broken), session.id);
  for (const read of [() => store.get(session.id), () => store.listForParticipant(session.owner_email, { limit: 10 })]) {
    const error = await t.throwsAsync(read());
    t.is((error as CleanroomError).code, 'INTERNAL');
    t.false(JSON.stringify({ m: error?.message, c: String((error as CleanroomError).cause) }).includes(secret));
  }

  store.database.prepare('UPDATE sessions SET doc = ? WHERE id = ?').run(`{"not json ${secret}`, session.id);
  const notJson = await t.throwsAsync(store.get(session.id));
  t.is((notJson as CleanroomError).code, 'INTERNAL');
  t.false(String(notJson?.message).includes(secret));

  // A record stored under another id is as malformed as one that fails the schema.
  store.database.prepare('UPDATE sessions SET doc = ? WHERE id = ?').run(JSON.stringify({ ...session, id: 'other' }), session.id);
  await rejectsWithCode(t, store.get(session.id), 'INTERNAL');

  store.database.prepare('UPDATE audit SET doc = ? WHERE session_id = ?').run(JSON.stringify({ ...entry, seq: 2 }), session.id);
  await rejectsWithCode(t, store.listAudit(session.id, 0, 10), 'INTERNAL');
  store.close();
});

test('sqlite: translateSqliteError maps busy, locked and constraint codes', (t) => {
  const sqliteError = (errcode: number) => Object.assign(new Error('x'), { code: 'ERR_SQLITE_ERROR', errcode });
  t.is(translateSqliteError(sqliteError(5)).code, 'STORE_UNAVAILABLE');
  t.is(translateSqliteError(sqliteError(517)).code, 'STORE_UNAVAILABLE'); // SQLITE_BUSY_SNAPSHOT
  t.is(translateSqliteError(sqliteError(6)).code, 'STORE_UNAVAILABLE');
  t.is(translateSqliteError(sqliteError(1555)).code, 'CONFLICT'); // SQLITE_CONSTRAINT_PRIMARYKEY
  t.is(translateSqliteError(sqliteError(11)).code, 'INTERNAL'); // SQLITE_CORRUPT
  t.is(translateSqliteError(new Error('other')).code, 'INTERNAL');
  const own = new CleanroomError('CONFLICT', 'mine');
  t.is(translateSqliteError(own), own);
});

test('sqlite: misuse of page arguments is a TypeError', async (t) => {
  const store = SqliteSessionStore.open(freshPath());
  await t.throwsAsync(store.listForParticipant('a@example.test', { limit: 0 }), { instanceOf: TypeError });
  await t.throwsAsync(store.listAudit('x', -1, 10), { instanceOf: TypeError });
  await t.throwsAsync(store.listAudit('x', 0, 1.5), { instanceOf: TypeError });
  store.close();
});
