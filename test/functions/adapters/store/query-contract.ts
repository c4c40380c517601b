import test, { type ExecutionContext } from 'ava';
import { nextAuditEntry, verifyAuditChain, type AuditEntry } from '../../../../protocol/audit.ts';
import { CleanroomError } from '../../../../protocol/errors.ts';
import type { QueryStatus } from '../../../../protocol/query.ts';
import type { QueryStore, QueryWrite, SessionStore, StatusCursor } from '../../../../functions/core/ports.ts';
import type { QueryRecord, SessionRecord } from '../../../../functions/core/records.ts';
import { newSession, rejectsWithCode, uniqueEmail, withParticipant } from './contract.ts';

/** A store serving both ports, and how to dispose of it. */
export interface QueryStoreUnderTest {
  store: SessionStore & QueryStore;
  teardown(): Promise<void>;
}

/** A query record of `session` (version 1, PENDING_APPROVAL unless overridden). */
export function newQuery(session: SessionRecord, overrides: Partial<QueryRecord> = {}): QueryRecord {
  const now = overrides.created_at ?? new Date().toISOString();
  return {
    id: crypto.randomUUID(),
    session_id: session.id,
    sql: 'SELECT COUNT(*) FROM a JOIN b USING (email)',
    proposer: session.owner_email,
    recipients: [session.owner_email],
    status: 'PENDING_APPROVAL',
    status_since: now,
    required_approvers: [...session.participant_emails],
    decisions: [{ email: session.owner_email, decision: 'approve', at: now }],
    attempt: 0,
    task_id: null,
    created_at: now,
    updated_at: now,
    approved_at: null,
    queued_at: null,
    started_at: null,
    finished_at: null,
    error_code: null,
    stats: null,
    result_ref: null,
    version: 1,
    ...overrides,
  };
}

/**
 * The write that moves `query` (stored at `expectedQueryVersion`, null for a new one) on top of
 * `session` as read, and the session as it will read afterwards.
 */
export async function queryWrite(session: SessionRecord, query: QueryRecord, expectedQueryVersion: number | null): Promise<{ write: QueryWrite; session: SessionRecord; entry: AuditEntry }> {
  const entry = await nextAuditEntry(session.audit_head, {
    session_id: session.id,
    at: query.updated_at,
    actor: session.owner_email,
    action: expectedQueryVersion === null ? 'query.proposed' : 'query.approved',
    details: { query_id: query.id, status: query.status },
  });
  return {
    entry,
    write: { query, expectedQueryVersion, expectedSessionVersion: session.version, entry },
    session: { ...session, version: session.version + 1, audit_head: { seq: entry.seq, hash: entry.hash } },
  };
}

/** The next version of `query` with `changes`. */
function changed(query: QueryRecord, changes: Partial<QueryRecord>): QueryRecord {
  return { ...query, updated_at: new Date().toISOString(), ...changes, version: query.version + 1 };
}

/**
 * Registers the `QueryStore` contract as ava tests titled `${name}: queries: ...`. Every test uses
 * fresh ids and emails, so stores may share one database.
 */
export function queryStoreContract(name: string, setup: () => Promise<QueryStoreUnderTest>): void {
  const withStore = (title: string, body: (t: ExecutionContext, store: SessionStore & QueryStore) => Promise<void>, serial = false) => {
    (serial ? test.serial : test)(`${name}: queries: ${title}`, async (t) => {
      const { store, teardown } = await setup();
      try {
        await body(t, store);
      } finally {
        await teardown();
      }
    });
  };

  /** A stored session with `others` as participants. */
  async function storedSession(store: SessionStore, others: string[] = []): Promise<{ session: SessionRecord; entry: AuditEntry }> {
    const created = await newSession({ others });
    await store.create(created.session, created.entry);
    return created;
  }

  withStore('commitQuery creates the query, appends its entry and moves only the session version and audit head', async (t, store) => {
    const first = await storedSession(store, [uniqueEmail('p')]);
    const query = newQuery(first.session);
    const { write, session, entry } = await queryWrite(first.session, query, null);
    await store.commitQuery(write);
    t.deepEqual(await store.getQuery(session.id, query.id), query);
    t.deepEqual(await store.get(session.id), session);
    t.deepEqual(await store.listForParticipant(session.owner_email, { limit: 10 }), [session]);
    const audit = await store.listAudit(session.id, 0, 10);
    t.deepEqual(audit, [first.entry, entry]);
    t.deepEqual(await verifyAuditChain(audit), { ok: true, head: session.audit_head });
  });

  withStore('a transition replaces the query; the chain goes on across queries and session changes', async (t, store) => {
    const first = await storedSession(store);
    const q1 = newQuery(first.session);
    const a = await queryWrite(first.session, q1, null);
    await store.commitQuery(a.write);
    const added = await withParticipant(a.session, uniqueEmail('p'));
    await store.update(added.session, a.session.version, added.entry);
    const q1b = changed(q1, { status: 'APPROVED', approved_at: new Date().toISOString() });
    const b = await queryWrite(added.session, q1b, 1);
    await store.commitQuery(b.write);
    t.deepEqual(await store.getQuery(first.session.id, q1.id), q1b);
    t.deepEqual(await store.get(first.session.id), b.session);
    const audit = await store.listAudit(first.session.id, 0, 10);
    t.deepEqual(audit, [first.entry, a.entry, added.entry, b.entry]);
    t.deepEqual(await verifyAuditChain(audit), { ok: true, head: b.session.audit_head });
  });

  withStore('getQuery is null for an unknown id and for a query asked of another session', async (t, store) => {
    const mine = await storedSession(store);
    const other = await storedSession(store);
    const query = newQuery(mine.session);
    await store.commitQuery((await queryWrite(mine.session, query, null)).write);
    t.is(await store.getQuery(mine.session.id, crypto.randomUUID()), null);
    t.is(await store.getQuery(other.session.id, query.id), null);
    t.is(await store.getQuery(crypto.randomUUID(), query.id), null);
  });

  withStore('creating an existing query id is CONFLICT and changes nothing', async (t, store) => {
    const first = await storedSession(store);
    const query = newQuery(first.session);
    const a = await queryWrite(first.session, query, null);
    await store.commitQuery(a.write);
    const impostor = newQuery(a.session, { id: query.id, sql: 'SELECT 2' });
    await rejectsWithCode(t, store.commitQuery((await queryWrite(a.session, impostor, null)).write), 'CONFLICT');
    t.deepEqual(await store.getQuery(query.session_id, query.id), query);
    t.deepEqual(await store.get(query.session_id), a.session);
    t.deepEqual(await store.listAudit(query.session_id, 0, 10), [first.entry, a.entry]);
  });

  withStore('a stale query version or a stale session version is CONFLICT and changes nothing', async (t, store) => {
    const first = await storedSession(store);
    const query = newQuery(first.session);
    const a = await queryWrite(first.session, query, null);
    await store.commitQuery(a.write);
    // The query is at version 1; claiming it was at 2 is a stale read of another history.
    const wrongQuery = await queryWrite(a.session, { ...changed(query, { status: 'REJECTED' }), version: 3 }, 2);
    await rejectsWithCode(t, store.commitQuery(wrongQuery.write), 'CONFLICT');
    // Built on the session as it was before the query was created.
    const staleSession = await queryWrite(first.session, changed(query, { status: 'REJECTED' }), 1);
    await rejectsWithCode(t, store.commitQuery(staleSession.write), 'CONFLICT');
    t.deepEqual(await store.getQuery(query.session_id, query.id), query);
    t.deepEqual(await store.get(query.session_id), a.session);
    t.deepEqual(await store.listAudit(query.session_id, 0, 10), [first.entry, a.entry]);
  });

  withStore('updating a query that does not exist, or in a session that does not exist, is CONFLICT and creates nothing', async (t, store) => {
    const first = await storedSession(store);
    const ghost = changed(newQuery(first.session), { status: 'APPROVED' });
    await rejectsWithCode(t, store.commitQuery((await queryWrite(first.session, ghost, 1)).write), 'CONFLICT');
    t.is(await store.getQuery(first.session.id, ghost.id), null);
    t.deepEqual(await store.get(first.session.id), first.session);

    const nowhere = await newSession();
    const orphan = newQuery(nowhere.session);
    await rejectsWithCode(t, store.commitQuery((await queryWrite(nowhere.session, orphan, null)).write), 'CONFLICT');
    t.is(await store.getQuery(nowhere.session.id, orphan.id), null);
    t.is(await store.get(nowhere.session.id), null);
    t.deepEqual(await store.listAudit(nowhere.session.id, 0, 10), []);
  });

  withStore(
    'two racing transitions of one query from the same versions: exactly one wins, one is CONFLICT, one entry (3 rounds)',
    async (t, store) => {
      const first = await storedSession(store, [uniqueEmail('p')]);
      let query = newQuery(first.session);
      let { write, session, entry } = await queryWrite(first.session, query, null);
      await store.commitQuery(write);
      const chain = [first.entry, entry];
      for (let round = 0; round < 3; round++) {
        const a = await queryWrite(session, changed(query, { result_ref: `a-${round}` }), query.version);
        const b = await queryWrite(session, changed(query, { result_ref: `b-${round}` }), query.version);
        const results = await Promise.allSettled([store.commitQuery(a.write), store.commitQuery(b.write)]);
        const won = results.flatMap((r, i) => (r.status === 'fulfilled' ? [i === 0 ? a : b] : []));
        const lost = results.flatMap((r) => (r.status === 'rejected' ? [r.reason] : []));
        t.is(won.length, 1, `round ${round}: exactly one winner`);
        t.true(lost[0] instanceof CleanroomError && lost[0].code === 'CONFLICT', `round ${round}: loser gets CONFLICT, got ${String(lost[0])}`);
        const winner = won[0]!;
        t.deepEqual(await store.getQuery(session.id, query.id), winner.write.query);
        t.deepEqual(await store.get(session.id), winner.session);
        chain.push(winner.entry);
        t.deepEqual(await store.listAudit(session.id, 0, 100), chain);
        ({ session } = winner);
        query = winner.write.query;
      }
    },
    true,
  );

  withStore(
    'transitions of two queries of one session, or a query and the session, from the same session version: exactly one wins',
    async (t, store) => {
      const first = await storedSession(store);
      const q1 = newQuery(first.session);
      const a = await queryWrite(first.session, q1, null);
      await store.commitQuery(a.write);
      const q2 = newQuery(a.session);
      const b = await queryWrite(a.session, q2, null);
      await store.commitQuery(b.write);

      // Two queries: each write's entry claims the same next seq, so both cannot land.
      const x = await queryWrite(b.session, changed(q1, { status: 'APPROVED' }), 1);
      const y = await queryWrite(b.session, changed(q2, { status: 'APPROVED' }), 1);
      const pair = await Promise.allSettled([store.commitQuery(x.write), store.commitQuery(y.write)]);
      t.is(pair.filter((r) => r.status === 'fulfilled').length, 1);
      const queryWinner = pair[0]!.status === 'fulfilled' ? x : y;
      t.deepEqual(await store.get(first.session.id), queryWinner.session);

      // A query transition against a session change (a participant added).
      const session = queryWinner.session;
      const loserQuery = queryWinner === x ? q2 : q1;
      const z = await queryWrite(session, changed(loserQuery, { status: 'REJECTED' }), 1);
      const added = await withParticipant(session, uniqueEmail('p'));
      const mixed = await Promise.allSettled([store.commitQuery(z.write), store.update(added.session, session.version, added.entry)]);
      t.is(mixed.filter((r) => r.status === 'fulfilled').length, 1);
      for (const r of mixed) if (r.status === 'rejected') t.is((r.reason as CleanroomError).code, 'CONFLICT');
      const audit = await store.listAudit(first.session.id, 0, 100);
      t.is(audit.length, 5);
      t.true((await verifyAuditChain(audit)).ok);
    },
    true,
  );

  withStore('listQueries: only that session, newest first, by status, paged with the cursor across ties', async (t, store) => {
    const first = await storedSession(store);
    const other = await storedSession(store);
    let session = first.session;
    const times = ['2024-05-01T00:00:00.000Z', '2024-05-02T00:00:00.000Z', '2024-05-02T00:00:00.000Z', '2024-05-02T00:00:00.000Z', '2024-05-03T00:00:00.000Z'];
    const created: QueryRecord[] = [];
    for (const [i, at] of [...times, ...times].entries()) {
      const status: QueryStatus = i % 3 === 0 ? 'QUEUED' : 'PENDING_APPROVAL';
      const query = newQuery(session, { created_at: at, updated_at: at, status_since: at, status });
      const w = await queryWrite(session, query, null);
      await store.commitQuery(w.write);
      session = w.session;
      created.push(query);
    }
    await store.commitQuery((await queryWrite(other.session, newQuery(other.session), null)).write);
    const expected = [...created].sort((a, b) => (a.created_at !== b.created_at ? (a.created_at < b.created_at ? 1 : -1) : a.id < b.id ? 1 : -1));
    for (const limit of [1, 3, 4, 10, 11]) {
      for (const status of [undefined, 'QUEUED', 'PENDING_APPROVAL'] as const) {
        const all: QueryRecord[] = [];
        for (let page = 0; page < 50; page++) {
          const last = all.at(-1);
          const rows = await store.listQueries(session.id, {
            limit,
            ...(status ? { status } : {}),
            ...(last ? { after: { created_at: last.created_at, id: last.id } } : {}),
          });
          all.push(...rows);
          if (rows.length < limit) break;
        }
        t.deepEqual(
          all,
          expected.filter((q) => !status || q.status === status),
          `limit ${limit}, status ${status ?? 'any'}`,
        );
      }
    }
    t.deepEqual(await store.listQueries(crypto.randomUUID(), { limit: 10 }), []);
  });

  withStore('listQueriesInStatus: every session, oldest status_since first, strictly before `before`, paged without gaps', async (t, store) => {
    const a = await storedSession(store);
    const b = await storedSession(store);
    let sessions = [a.session, b.session];
    // Far in the past, so queries of other tests sharing the database sort after these.
    const times = ['1999-01-01T00:00:01.000Z', '1999-01-01T00:00:02.000Z', '1999-01-01T00:00:02.000Z', '1999-01-01T00:00:03.000Z'];
    const mine: QueryRecord[] = [];
    for (const [i, at] of [...times, ...times, '1999-06-01T00:00:00.000Z'].entries()) {
      const s = sessions[i % 2]!;
      const status: QueryStatus = i % 4 === 3 ? 'RUNNING' : 'QUEUED';
      const query = newQuery(s, { status, status_since: at, attempt: 1, task_id: crypto.randomUUID(), queued_at: at });
      const w = await queryWrite(s, query, null);
      await store.commitQuery(w.write);
      sessions = sessions.map((x) => (x.id === s.id ? w.session : x));
      mine.push(query);
    }
    const ids = new Set(mine.map((q) => q.id));
    const before = '1999-06-01T00:00:00.000Z';
    const expected = mine
      .filter((q) => q.status === 'QUEUED' && q.status_since < before)
      .sort((x, y) => (x.status_since !== y.status_since ? (x.status_since < y.status_since ? -1 : 1) : x.id < y.id ? -1 : 1));
    for (const limit of [1, 2, 5, 100]) {
      const all: QueryRecord[] = [];
      let after: StatusCursor | undefined;
      for (let page = 0; page < 200; page++) {
        const rows = await store.listQueriesInStatus('QUEUED', { before, limit, ...(after ? { after } : {}) });
        all.push(...rows);
        const last = rows.at(-1);
        if (rows.length < limit || !last) break;
        after = { status_since: last.status_since, id: last.id };
      }
      t.deepEqual(
        all.filter((q) => ids.has(q.id)),
        expected,
        `limit ${limit}`,
      );
      t.true(all.every((q) => q.status === 'QUEUED' && q.status_since < before));
    }
    const running = await store.listQueriesInStatus('RUNNING', { before: '1999-01-01T00:00:03.500Z', limit: 100 });
    t.deepEqual(
      running
        .filter((q) => ids.has(q.id))
        .map((q) => q.id)
        .sort(),
      mine
        .filter((q) => q.status === 'RUNNING' && q.status_since < '1999-01-01T00:00:03.500Z')
        .map((q) => q.id)
        .sort(),
    );
  });

  withStore('a query write our own code got wrong is a TypeError and stores nothing', async (t, store) => {
    const first = await storedSession(store);
    const other = await storedSession(store);
    const query = newQuery(first.session);
    const good = await queryWrite(first.session, query, null);
    const cases: Array<[string, QueryWrite]> = [
      ['version not the next', { ...good.write, query: { ...query, version: 2 } }],
      ['record breaks the schema', { ...good.write, query: { ...query, status: 'DONE' as QueryStatus } }],
      ['entry of another session', { ...good.write, entry: (await queryWrite(other.session, { ...query }, null)).entry }],
      ['entry does not name the query', { ...good.write, query: { ...query, id: crypto.randomUUID() } }],
      ['entry does not extend the stored chain', { ...good.write, entry: await nextAuditEntry({ seq: 1, hash: 'f'.repeat(64) }, { ...good.entry }) }],
    ];
    for (const [label, write] of cases) {
      await t.throwsAsync(store.commitQuery(write), { instanceOf: TypeError }, label);
    }
    t.is(await store.getQuery(first.session.id, query.id), null);
    t.deepEqual(await store.get(first.session.id), first.session);
    t.deepEqual(await store.listAudit(first.session.id, 0, 10), [first.entry]);
    await t.throwsAsync(store.listQueriesInStatus('QUEUED', { before: 'yesterday', limit: 10 }), { instanceOf: TypeError });
    await t.throwsAsync(store.listQueries(first.session.id, { limit: 0 }), { instanceOf: TypeError });
  });
}
