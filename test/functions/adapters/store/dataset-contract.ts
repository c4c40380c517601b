import test, { type ExecutionContext } from 'ava';
import { nextAuditEntry, verifyAuditChain, type AuditEntry } from '../../../../protocol/audit.ts';
import { CleanroomError } from '../../../../protocol/errors.ts';
import type { ClosedCursor, DatasetStore, DatasetWrite, SessionStore } from '../../../../functions/core/ports.ts';
import type { DatasetRecord, SessionRecord } from '../../../../functions/core/records.ts';
import { newSession, rejectsWithCode } from './contract.ts';

/** A store serving the session and dataset ports, and how to dispose of it. */
export interface DatasetStoreUnderTest {
  store: SessionStore & DatasetStore;
  teardown(): Promise<void>;
}

/** A dataset record of `session` (owner: the session's owner unless overridden). */
export function newDataset(session: SessionRecord, overrides: Partial<DatasetRecord> = {}): DatasetRecord {
  const id = overrides.id ?? crypto.randomUUID();
  return {
    id,
    session_id: session.id,
    owner_email: session.owner_email,
    table: `t_${id.slice(0, 8)}`,
    format: 'csv',
    schema: [
      { name: 'email', type: 'VARCHAR' },
      { name: 'amount', type: 'DOUBLE' },
    ],
    row_count: 42,
    ciphertext_bytes: 4096,
    ciphertext_sha256: 'c'.repeat(64),
    wrapped_key: 'eyJhbGciOiJFQ0RILUVTK0EyNTZLVyJ9.a2V5.aXY.Y2lwaGVy.dGFn',
    session_key_thumbprint: 'K'.repeat(43),
    object_key: `datasets/${session.id}/${id}.crds`,
    created_at: new Date().toISOString(),
    ...overrides,
  };
}

/** The registration of `dataset` on top of `session` as read, and the session as it reads afterwards. */
export async function datasetWrite(session: SessionRecord, dataset: DatasetRecord): Promise<{ write: DatasetWrite; session: SessionRecord; entry: AuditEntry }> {
  const entry = await nextAuditEntry(session.audit_head, {
    session_id: session.id,
    at: dataset.created_at,
    actor: dataset.owner_email,
    action: 'dataset.registered',
    details: { dataset_id: dataset.id, table: dataset.table },
  });
  return {
    entry,
    write: { dataset, expectedSessionVersion: session.version, entry },
    session: { ...session, version: session.version + 1, audit_head: { seq: entry.seq, hash: entry.hash } },
  };
}

/**
 * Registers the `DatasetStore` contract (and the session store's view of closes still to shred)
 * as ava tests titled `${name}: datasets: ...`. Every test uses fresh ids, so stores may share
 * one database.
 */
export function datasetStoreContract(name: string, setup: () => Promise<DatasetStoreUnderTest>): void {
  const withStore = (title: string, body: (t: ExecutionContext, store: SessionStore & DatasetStore) => Promise<void>, serial = false) => {
    (serial ? test.serial : test)(`${name}: datasets: ${title}`, async (t) => {
      const { store, teardown } = await setup();
      try {
        await body(t, store);
      } finally {
        await teardown();
      }
    });
  };

  async function storedSession(store: SessionStore, overrides: Parameters<typeof newSession>[0] = {}) {
    const created = await newSession(overrides);
    await store.create(created.session, created.entry);
    return created;
  }

  withStore('commitDataset stores the record, appends its entry and moves only the session version and audit head', async (t, store) => {
    const first = await storedSession(store);
    const dataset = newDataset(first.session);
    const { write, session, entry } = await datasetWrite(first.session, dataset);
    await store.commitDataset(write);
    t.deepEqual(await store.getDataset(session.id, dataset.id), dataset);
    t.deepEqual(await store.listDatasets(session.id, { limit: 10 }), [dataset]);
    t.deepEqual(await store.get(session.id), session);
    const audit = await store.listAudit(session.id, 0, 10);
    t.deepEqual(audit, [first.entry, entry]);
    t.deepEqual(await verifyAuditChain(audit), { ok: true, head: session.audit_head });
  });

  withStore("a CSV's dialect and DECIMAL columns are stored and read back as written", async (t, store) => {
    const first = await storedSession(store);
    const dataset = newDataset(first.session, {
      csv: { delimiter: '\t', quote: "'", escape: '\\', header: false },
      schema: [
        { name: 'email', type: 'VARCHAR' },
        { name: 'amount', type: 'DECIMAL(38,2)' },
      ],
    });
    await store.commitDataset((await datasetWrite(first.session, dataset)).write);
    t.deepEqual(await store.getDataset(first.session.id, dataset.id), dataset);
  });

  withStore('getDataset is null for an unknown id and in another session; one id in two sessions is two datasets', async (t, store) => {
    const a = await storedSession(store);
    const b = await storedSession(store);
    const mine = newDataset(a.session);
    await store.commitDataset((await datasetWrite(a.session, mine)).write);
    t.is(await store.getDataset(a.session.id, crypto.randomUUID()), null);
    t.is(await store.getDataset(b.session.id, mine.id), null);
    t.is(await store.getDataset(crypto.randomUUID(), mine.id), null);
    // Ids are the client's: the same id in another session is no conflict and no leak.
    const twin = newDataset(b.session, { id: mine.id, table: 'other' });
    await store.commitDataset((await datasetWrite(b.session, twin)).write);
    t.deepEqual(await store.getDataset(b.session.id, mine.id), twin);
    t.deepEqual(await store.getDataset(a.session.id, mine.id), mine);
  });

  withStore('an existing dataset id is CONFLICT and changes nothing', async (t, store) => {
    const first = await storedSession(store);
    const dataset = newDataset(first.session);
    const a = await datasetWrite(first.session, dataset);
    await store.commitDataset(a.write);
    const impostor = newDataset(a.session, { id: dataset.id, table: 'impostor', owner_email: 'mallory@example.test' });
    await rejectsWithCode(t, store.commitDataset((await datasetWrite(a.session, impostor)).write), 'CONFLICT');
    t.deepEqual(await store.getDataset(first.session.id, dataset.id), dataset);
    t.deepEqual(await store.get(first.session.id), a.session);
    t.deepEqual(await store.listAudit(first.session.id, 0, 10), [first.entry, a.entry]);
  });

  withStore('a stale session version, or a session that does not exist, is CONFLICT and stores nothing', async (t, store) => {
    const first = await storedSession(store);
    const a = await datasetWrite(first.session, newDataset(first.session));
    await store.commitDataset(a.write);
    // Decided on the session as it was before the first registration.
    const stale = newDataset(first.session);
    await rejectsWithCode(t, store.commitDataset((await datasetWrite(first.session, stale)).write), 'CONFLICT');
    t.is(await store.getDataset(first.session.id, stale.id), null);
    t.deepEqual(await store.get(first.session.id), a.session);

    const nowhere = await newSession();
    const orphan = newDataset(nowhere.session);
    await rejectsWithCode(t, store.commitDataset((await datasetWrite(nowhere.session, orphan)).write), 'CONFLICT');
    t.is(await store.getDataset(nowhere.session.id, orphan.id), null);
    t.is(await store.get(nowhere.session.id), null);
  });

  withStore(
    'registrations racing from the same session version: exactly one lands, the others are CONFLICT (3 rounds)',
    async (t, store) => {
      let { session, entry } = await storedSession(store);
      const chain = [entry];
      for (let round = 0; round < 3; round++) {
        // The same table name: only the version keeps two owners from both taking it.
        const contenders = await Promise.all([0, 1, 2].map(() => datasetWrite(session, newDataset(session, { table: 'sales' }))));
        const results = await Promise.allSettled(contenders.map((c) => store.commitDataset(c.write)));
        const won = contenders.filter((_, i) => results[i]!.status === 'fulfilled');
        t.is(won.length, 1, `round ${round}`);
        for (const r of results) if (r.status === 'rejected') t.true(r.reason instanceof CleanroomError && r.reason.code === 'CONFLICT');
        chain.push(won[0]!.entry);
        session = won[0]!.session;
      }
      t.is((await store.listDatasets(session.id, { limit: 10 })).length, 3);
      t.deepEqual(await store.listAudit(session.id, 0, 10), chain);
    },
    true,
  );

  withStore('listDatasets: only that session, oldest first (created_at, then id), up to the limit', async (t, store) => {
    const first = await storedSession(store);
    const other = await storedSession(store);
    let session = first.session;
    const times = ['2024-05-02T00:00:00.000Z', '2024-05-01T00:00:00.000Z', '2024-05-02T00:00:00.000Z', '2024-05-03T00:00:00.000Z'];
    const created: DatasetRecord[] = [];
    for (const at of times) {
      const w = await datasetWrite(session, newDataset(session, { created_at: at }));
      await store.commitDataset(w.write);
      session = w.session;
      created.push(w.write.dataset);
    }
    await store.commitDataset((await datasetWrite(other.session, newDataset(other.session))).write);
    const expected = [...created].sort((a, b) => (a.created_at !== b.created_at ? (a.created_at < b.created_at ? -1 : 1) : a.id < b.id ? -1 : 1));
    t.deepEqual(await store.listDatasets(session.id, { limit: 10 }), expected);
    t.deepEqual(await store.listDatasets(session.id, { limit: 2 }), expected.slice(0, 2));
    t.deepEqual(await store.listDatasets(crypto.randomUUID(), { limit: 10 }), []);
    await t.throwsAsync(store.listDatasets(session.id, { limit: 0 }), { instanceOf: TypeError });
  });

  withStore('a dataset write our own code got wrong is a TypeError and stores nothing', async (t, store) => {
    const first = await storedSession(store);
    const other = await storedSession(store);
    const dataset = newDataset(first.session);
    const good = await datasetWrite(first.session, dataset);
    const cases: Array<[string, DatasetWrite]> = [
      ['record breaks the schema', { ...good.write, dataset: { ...dataset, table: 'Not A Table' } }],
      ['object key of another dataset', { ...good.write, dataset: { ...dataset, object_key: `datasets/${first.session.id}/${crypto.randomUUID()}.crds` } }],
      ['entry of another session', { ...good.write, entry: (await datasetWrite(other.session, { ...dataset, session_id: other.session.id })).entry }],
      ['entry does not name the dataset', { ...good.write, dataset: { ...dataset, id: crypto.randomUUID() } }],
      ['entry does not extend the stored chain', { ...good.write, entry: await nextAuditEntry({ seq: 1, hash: 'f'.repeat(64) }, { ...good.entry }) }],
      ['no session version', { ...good.write, expectedSessionVersion: 0 }],
    ];
    for (const [label, write] of cases) {
      await t.throwsAsync(store.commitDataset(write), { instanceOf: TypeError }, label);
    }
    t.deepEqual(await store.listDatasets(first.session.id, { limit: 10 }), []);
    t.deepEqual(await store.get(first.session.id), first.session);
    t.deepEqual(await store.listAudit(first.session.id, 0, 10), [first.entry]);
  });

  withStore('listUnshredded: CLOSED sessions with shredded_at null that closed before the cutoff, oldest close first, paged', async (t, store) => {
    // Far in the past, so sessions of other tests sharing the database sort after these.
    const closes = ['1990-01-01T00:00:02.000Z', '1990-01-01T00:00:01.000Z', '1990-01-01T00:00:02.000Z', '1990-01-01T00:00:03.000Z'];
    const pending: SessionRecord[] = [];
    for (const at of closes) {
      const { session, entry } = await newSession({ status: 'CLOSED', created_at: at });
      const record = { ...session, shredded_at: null };
      await store.create(record, { ...entry });
      pending.push(record);
    }
    // Not due: shredded already, closed before shredding existed (no field), closed after the cutoff, or active.
    const done = await newSession({ status: 'CLOSED', created_at: '1990-01-01T00:00:01.500Z' });
    await store.create({ ...done.session, shredded_at: '1990-01-01T03:00:00.000Z' }, done.entry);
    const legacy = await newSession({ status: 'CLOSED', created_at: '1990-01-01T00:00:01.500Z' });
    await store.create(legacy.session, legacy.entry);
    const late = await newSession({ status: 'CLOSED', created_at: '1990-01-01T00:00:05.000Z' });
    await store.create({ ...late.session, shredded_at: null }, late.entry);
    await storedSession(store);
    const ours = new Set([...pending, done.session, legacy.session, late.session].map((s) => s.id));
    const closedBefore = '1990-01-01T00:00:04.000Z';
    const expected = [...pending].sort((a, b) => (a.closed_at! !== b.closed_at! ? (a.closed_at! < b.closed_at! ? -1 : 1) : a.id < b.id ? -1 : 1));
    for (const limit of [1, 3, 100]) {
      const all: SessionRecord[] = [];
      let after: ClosedCursor | undefined;
      for (let page = 0; page < 100; page++) {
        const rows = await store.listUnshredded({ closedBefore, limit, ...(after ? { after } : {}) });
        all.push(...rows);
        const last = rows.at(-1);
        if (rows.length < limit || !last) break;
        after = { closed_at: last.closed_at!, id: last.id };
      }
      t.deepEqual(
        all.filter((s) => ours.has(s.id)),
        expected,
        `limit ${limit}`,
      );
      t.true(all.every((s) => s.status === 'CLOSED' && s.shredded_at === null && s.closed_at! < closedBefore));
    }
    // Recorded as shredded (a session update), it is no longer listed.
    const first = expected[0]!;
    const entry = await nextAuditEntry(first.audit_head, {
      session_id: first.id,
      at: '1990-01-01T05:00:00.000Z',
      actor: 'control-plane',
      action: 'session.shredded',
      details: { deleted_objects: 0 },
    });
    await store.update({ ...first, shredded_at: entry.at, version: 2, audit_head: { seq: entry.seq, hash: entry.hash } }, 1, entry);
    const after = await store.listUnshredded({ closedBefore, limit: 100 });
    t.false(after.some((s) => s.id === first.id));
    await t.throwsAsync(store.listUnshredded({ closedBefore: 'yesterday', limit: 10 }), { instanceOf: TypeError });
  });
}
