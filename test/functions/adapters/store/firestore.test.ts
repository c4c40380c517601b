import test from 'ava';
import { Firestore } from '@google-cloud/firestore';
import { readFileSync } from 'node:fs';
import * as v from 'valibot';
import { CleanroomError, type ErrorCode } from '../../../../protocol/errors.ts';
import {
  DEFAULT_SESSIONS_COLLECTION,
  FIRESTORE_QUERY_SHAPES,
  FirestoreSessionStore,
  auditDocId,
  translateFirestoreError,
  type FirestoreQueryShape,
} from '../../../../functions/adapters/store/firestore.ts';
import { startFirestoreEmulator, type RunningEmulator } from '../../../helpers/firestore-emulator.ts';
import { newSession, rejectsWithCode, sessionStoreContract, uniqueEmail, withParticipant } from './contract.ts';
import { newQuery, queryStoreContract, queryWrite } from './query-contract.ts';
import { datasetStoreContract, datasetWrite, newDataset } from './dataset-contract.ts';

// The SDK lets this variable override any host passed in settings; the client below names the
// emulator this file started, so a value inherited from the shell must not redirect it.
delete process.env.FIRESTORE_EMULATOR_HOST;
// google-gax asks google-auth-library for a universe domain even on the emulator's insecure
// channel, which probes for a GCE metadata server and warns when there is none. There is none.
process.env.METADATA_SERVER_DETECTION = 'none';

const PROJECT_ID = `test-${crypto.randomUUID().slice(0, 8)}`;
let emulator: RunningEmulator | undefined;
let db: Firestore | undefined;

// Never skips: if the emulator cannot start, this hook throws and every test in the file fails.
test.before(async () => {
  emulator = await startFirestoreEmulator();
  // `ssl: false` makes the SDK use an insecure channel and send `Bearer owner`, as for the emulator.
  db = new Firestore({ projectId: PROJECT_ID, host: emulator.host, ssl: false });
});

test.after.always(async () => {
  await db?.terminate();
  await emulator?.stop();
});

function database(): Firestore {
  if (!db) throw new Error('the Firestore emulator did not start');
  return db;
}

// One client for the whole file: every test uses fresh ids and emails.
sessionStoreContract('firestore', async () => ({ store: new FirestoreSessionStore(database()), teardown: async () => {} }));

queryStoreContract('firestore', async () => ({ store: new FirestoreSessionStore(database()), teardown: async () => {} }));

datasetStoreContract('firestore', async () => ({ store: new FirestoreSessionStore(database()), teardown: async () => {} }));

test('firestore: queries live at collaboration_sessions/{id}/queries/{query id}; the session keeps its other fields', async (t) => {
  const store = new FirestoreSessionStore(database());
  const { session, entry } = await newSession();
  await store.create(session, entry);
  const query = newQuery(session);
  const w = await queryWrite(session, query, null);
  await store.commitQuery(w.write);
  t.deepEqual((await database().doc(`${DEFAULT_SESSIONS_COLLECTION}/${session.id}/queries/${query.id}`).get()).data(), query);
  t.deepEqual((await database().doc(`${DEFAULT_SESSIONS_COLLECTION}/${session.id}`).get()).data(), w.session);
  t.deepEqual((await database().doc(`${DEFAULT_SESSIONS_COLLECTION}/${session.id}/audit/0000000002`).get()).data(), w.entry);
});

test('firestore: datasets live at collaboration_sessions/{id}/datasets/{dataset id}; a malformed one is INTERNAL without quoting it', async (t) => {
  const store = new FirestoreSessionStore(database());
  const { session, entry } = await newSession();
  await store.create(session, entry);
  const dataset = newDataset(session);
  const w = await datasetWrite(session, dataset);
  await store.commitDataset(w.write);
  const ref = database().doc(`${DEFAULT_SESSIONS_COLLECTION}/${session.id}/datasets/${dataset.id}`);
  t.deepEqual((await ref.get()).data(), dataset);
  t.deepEqual((await database().doc(`${DEFAULT_SESSIONS_COLLECTION}/${session.id}`).get()).data(), w.session);
  t.deepEqual((await database().doc(`${DEFAULT_SESSIONS_COLLECTION}/${session.id}/audit/0000000002`).get()).data(), w.entry);
  const secret = 'eyJ.secret-wrapped-key';
  await ref.set({ ...dataset, wrapped_key: secret, row_count: -1 });
  for (const read of [() => store.getDataset(session.id, dataset.id), () => store.listDatasets(session.id, { limit: 10 })]) {
    const error = await t.throwsAsync(read());
    t.is((error as CleanroomError).code, 'INTERNAL');
    t.false(JSON.stringify({ m: error?.message, c: String((error as CleanroomError).cause) }).includes(secret));
  }
});

test('firestore: a racing query transition loses with CONFLICT even when the SDK retries the aborted transaction', async (t) => {
  const store = new FirestoreSessionStore(database());
  const { session, entry } = await newSession();
  await store.create(session, entry);
  const query = newQuery(session);
  const created = await queryWrite(session, query, null);
  await store.commitQuery(created.write);
  const contenders = await Promise.all(Array.from({ length: 6 }, (_, i) => queryWrite(created.session, { ...query, result_ref: `r${i}`, version: 2, updated_at: new Date().toISOString() }, 1)));
  const results = await Promise.allSettled(contenders.map((c) => store.commitQuery(c.write)));
  t.is(results.filter((r) => r.status === 'fulfilled').length, 1);
  for (const r of results) if (r.status === 'rejected') t.is((r.reason as CleanroomError).code, 'CONFLICT');
  t.is((await store.listAudit(session.id, 0, 100)).length, 3);
});

test('firestore: a malformed stored query is INTERNAL and the message does not quote it', async (t) => {
  const store = new FirestoreSessionStore(database());
  const { session, entry } = await newSession();
  await store.create(session, entry);
  const query = newQuery(session);
  await store.commitQuery((await queryWrite(session, query, null)).write);
  const secret = 'SELECT secret_literal_42';
  await database()
    .doc(`${DEFAULT_SESSIONS_COLLECTION}/${session.id}/queries/${query.id}`)
    .set({ ...query, sql: secret, status: 'DONE' });
  for (const read of [() => store.getQuery(session.id, query.id), () => store.listQueries(session.id, { limit: 10 })]) {
    const error = await t.throwsAsync(read());
    t.is((error as CleanroomError).code, 'INTERNAL');
    t.false(JSON.stringify({ m: error?.message, c: String((error as CleanroomError).cause) }).includes(secret));
  }
});

test('firestore: documents live at collaboration_sessions/{id} and .../audit/{10-digit seq}, timestamps as strings', async (t) => {
  const store = new FirestoreSessionStore(database());
  const { session, entry } = await newSession();
  await store.create(session, entry);
  const doc = await database().doc(`${DEFAULT_SESSIONS_COLLECTION}/${session.id}`).get();
  t.deepEqual(doc.data(), session);
  t.is(typeof doc.get('created_at'), 'string');
  const audit = await database().doc(`${DEFAULT_SESSIONS_COLLECTION}/${session.id}/audit/0000000001`).get();
  t.deepEqual(audit.data(), entry);
  t.is(auditDocId(42), '0000000042');
});

test('firestore: the collection option moves the sessions', async (t) => {
  const collection = `sessions_${crypto.randomUUID().slice(0, 8)}`;
  const store = new FirestoreSessionStore(database(), { collection });
  const { session, entry } = await newSession();
  await store.create(session, entry);
  t.true((await database().doc(`${collection}/${session.id}`).get()).exists);
  t.false((await database().doc(`${DEFAULT_SESSIONS_COLLECTION}/${session.id}`).get()).exists);
  t.deepEqual(await store.get(session.id), session);
});

test('firestore: a malformed stored record is INTERNAL on every read path, and the message does not quote it', async (t) => {
  const store = new FirestoreSessionStore(database());
  const { session, entry } = await newSession();
  await store.create(session, entry);
  const ref = database().doc(`${DEFAULT_SESSIONS_COLLECTION}/${session.id}`);
  const secret = 'eyJhbGciOiJFUzI1NiJ9.secret-token';
  await ref.set({ ...session, name: 42, participants: [{ ...session.participants[0], binding_token: secret }] });
  for (const read of [() => store.get(session.id), () => store.listForParticipant(session.owner_email, { limit: 10 })]) {
    const error = await t.throwsAsync(read());
    t.is((error as CleanroomError).code, 'INTERNAL');
    t.false(JSON.stringify({ m: error?.message, c: String((error as CleanroomError).cause) }).includes(secret));
  }
  // A Firestore Timestamp where the schema wants an ISO string is malformed too.
  await ref.set({ ...session, created_at: new Date() });
  await rejectsWithCode(t, store.get(session.id), 'INTERNAL');
  // So is an entry stored under a document id that is not its seq.
  await ref.set(session);
  await ref.collection('audit').doc('0000000002').set(entry);
  await rejectsWithCode(t, store.listAudit(session.id, 0, 10), 'INTERNAL');
});

test('firestore: a racing update loses with CONFLICT even when the SDK retries the aborted transaction', async (t) => {
  // Many writers at once force the emulator to abort transactions; the SDK retries them, and on
  // the retry the callback sees the new version and gives up with CONFLICT (not ABORTED).
  const store = new FirestoreSessionStore(database());
  const { session, entry } = await newSession();
  await store.create(session, entry);
  const contenders = await Promise.all(Array.from({ length: 6 }, () => withParticipant(session, uniqueEmail('c'))));
  const results = await Promise.allSettled(contenders.map((c) => store.update(c.session, 1, c.entry)));
  t.is(results.filter((r) => r.status === 'fulfilled').length, 1);
  for (const r of results) {
    if (r.status === 'rejected') t.is((r.reason as CleanroomError).code, 'CONFLICT');
  }
  t.is((await store.listAudit(session.id, 0, 100)).length, 2);
});

test('firestore: a call that does not answer is STORE_UNAVAILABLE with retryAfter at the adapter deadline', async (t) => {
  // The real SDK retries UNAVAILABLE by itself for about 45 s on a read and over 2 minutes in a
  // transaction (measured against a closed port), and terminating it with calls in flight makes
  // it raise an unhandled rejection of its own. So the deadline is tested on a client whose
  // calls never settle: it is the adapter's deadline, not the SDK's, that answers the caller.
  const never = () => new Promise<never>(() => {});
  const hanging = {
    collection: () => ({ doc: () => ({ get: never, collection: () => ({ doc: () => ({}) }) }) }),
    runTransaction: never,
  } as unknown as Firestore;
  const store = new FirestoreSessionStore(hanging, { timeoutMs: 100 });
  const { session, entry } = await newSession();
  for (const call of [() => store.get(session.id), () => store.create(session, entry)]) {
    const started = Date.now();
    const error = await t.throwsAsync(call());
    t.is((error as CleanroomError).code, 'STORE_UNAVAILABLE');
    t.true(((error as CleanroomError).retryAfter ?? 0) > 0);
    t.true(Date.now() - started < 2000);
  }
});

test('firestore: translateFirestoreError maps gRPC codes, lost races only for writes', (t) => {
  const grpc = (code: number) => Object.assign(new Error(`grpc ${code}`), { code });
  const cases: Array<[number, 'read' | 'write', ErrorCode]> = [
    [14, 'read', 'STORE_UNAVAILABLE'], // UNAVAILABLE
    [4, 'write', 'STORE_UNAVAILABLE'], // DEADLINE_EXCEEDED
    [8, 'read', 'STORE_UNAVAILABLE'], // RESOURCE_EXHAUSTED
    [10, 'write', 'CONFLICT'], // ABORTED after the SDK's retries
    [6, 'write', 'CONFLICT'], // ALREADY_EXISTS
    [9, 'write', 'CONFLICT'], // FAILED_PRECONDITION
    [409, 'write', 'CONFLICT'], // ABORTED over the REST fallback
    [9, 'read', 'INTERNAL'], // FAILED_PRECONDITION on a query: a missing index
    [7, 'read', 'INTERNAL'], // PERMISSION_DENIED
    [3, 'write', 'INTERNAL'], // INVALID_ARGUMENT
  ];
  for (const [code, kind, expected] of cases) {
    const translated = translateFirestoreError(grpc(code), kind);
    t.is(translated.code, expected, `${code} on ${kind}`);
    if (expected === 'STORE_UNAVAILABLE') t.true((translated.retryAfter ?? 0) > 0);
  }
  t.is(translateFirestoreError(new Error('no code'), 'write').code, 'INTERNAL');
  const own = new CleanroomError('CONFLICT', 'mine');
  t.is(translateFirestoreError(own, 'write'), own);
});

// --- Composite indexes: the emulator runs any query, production refuses one without its index.

const IndexFileSchema = v.object({
  indexes: v.array(
    v.object({
      collectionGroup: v.string(),
      queryScope: v.picklist(['COLLECTION', 'COLLECTION_GROUP']),
      fields: v.array(
        v.union([v.strictObject({ fieldPath: v.string(), order: v.picklist(['ASCENDING', 'DESCENDING']) }), v.strictObject({ fieldPath: v.string(), arrayConfig: v.literal('CONTAINS') })]),
      ),
    }),
  ),
  fieldOverrides: v.array(v.unknown()),
});
type IndexDefinition = v.InferOutput<typeof IndexFileSchema>['indexes'][number];

const ORDER = { asc: 'ASCENDING', desc: 'DESCENDING' } as const;

/**
 * A query with filters and orders on one field (or the document id alone) uses automatic indexes;
 * those have collection scope only, so a collection-group query always needs one of ours.
 */
function needsCompositeIndex(shape: FirestoreQueryShape): boolean {
  if ((shape.scope ?? 'COLLECTION') === 'COLLECTION_GROUP') return true;
  const fields = new Set([...shape.filters, ...shape.orderBy].map((f) => f.fieldPath).filter((f) => f !== '__name__'));
  return fields.size > 1;
}

/**
 * Whether `index` serves `shape`: same collection group and scope; its leading fields are the
 * shape's equality filters (in any order; array-contains as CONTAINS), followed by the shape's
 * orders in sequence. A range filter (`<`) must be on the first order's field, which the index
 * then covers. A trailing `__name__` may be left implicit when it runs in the direction of the
 * last order, as Firestore adds it so.
 */
function indexServes(index: IndexDefinition, shape: FirestoreQueryShape): boolean {
  if (index.collectionGroup !== shape.collectionGroup || index.queryScope !== (shape.scope ?? 'COLLECTION')) return false;
  const equalities = shape.filters.filter((f) => f.op !== '<');
  const ranges = shape.filters.filter((f) => f.op === '<');
  if (ranges.some((r) => r.fieldPath !== shape.orderBy[0]?.fieldPath)) return false;
  const prefix = index.fields.slice(0, equalities.length);
  const rest = index.fields.slice(equalities.length);
  const filtersMatch =
    prefix.length === equalities.length &&
    equalities.every((filter) => prefix.some((field) => field.fieldPath === filter.fieldPath && (filter.op === 'array-contains' ? 'arrayConfig' in field : 'order' in field)));
  let orders = shape.orderBy.map((o) => ({ fieldPath: o.fieldPath, order: ORDER[o.direction] }));
  const last = orders.at(-1);
  const beforeLast = orders.at(-2);
  if (last?.fieldPath === '__name__' && beforeLast && beforeLast.order === last.order && rest.length === orders.length - 1) {
    orders = orders.slice(0, -1);
  }
  return filtersMatch && v.is(v.array(v.unknown()), rest) && JSON.stringify(rest) === JSON.stringify(orders);
}

const indexFile = v.parse(IndexFileSchema, JSON.parse(readFileSync(new URL('../../../../firestore.indexes.json', import.meta.url), 'utf8')));

for (const [name, shape] of Object.entries(FIRESTORE_QUERY_SHAPES)) {
  test(`firestore indexes: query shape ${name} has a composite index in firestore.indexes.json (or needs none)`, (t) => {
    if (!needsCompositeIndex(shape)) return t.pass();
    t.true(
      indexFile.indexes.some((index) => indexServes(index, shape)),
      JSON.stringify(shape),
    );
  });
}

test('firestore indexes: every composite index in firestore.indexes.json serves a query the adapter issues', (t) => {
  for (const index of indexFile.indexes) {
    t.true(
      Object.values(FIRESTORE_QUERY_SHAPES).some((shape) => indexServes(index, shape)),
      JSON.stringify(index),
    );
  }
});

test('firestore indexes: the matcher refuses an index in the wrong direction or without the filter', (t) => {
  const shape = FIRESTORE_QUERY_SHAPES.sessionsOfParticipantByStatus;
  const good = indexFile.indexes.find((index) => indexServes(index, shape))!;
  t.truthy(good);
  const flipped = { ...good, fields: good.fields.map((f) => (f.fieldPath === 'created_at' ? { fieldPath: f.fieldPath, order: 'ASCENDING' as const } : f)) };
  t.false(indexServes(flipped, shape));
  t.false(indexServes({ ...good, fields: good.fields.filter((f) => f.fieldPath !== 'status') }, shape));
  t.false(indexServes({ ...good, collectionGroup: 'other' }, shape));
  t.false(indexServes(good, FIRESTORE_QUERY_SHAPES.sessionsOfParticipant));
});

test('firestore indexes: the matcher refuses a collection-scoped index for a collection-group query, and a range filter off the first order', (t) => {
  const shape = FIRESTORE_QUERY_SHAPES.queriesInStatusSince;
  const good = indexFile.indexes.find((index) => indexServes(index, shape))!;
  t.truthy(good);
  t.false(indexServes({ ...good, queryScope: 'COLLECTION' }, shape));
  t.false(indexServes(good, { ...shape, orderBy: [...shape.orderBy].reverse() }));
  t.false(needsCompositeIndex(FIRESTORE_QUERY_SHAPES.queriesOfSession));
  t.true(needsCompositeIndex({ ...FIRESTORE_QUERY_SHAPES.queriesOfSession, scope: 'COLLECTION_GROUP' }));
});
