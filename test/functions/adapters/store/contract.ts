import test, { type ExecutionContext } from 'ava';
import { nextAuditEntry, verifyAuditChain, type AuditEntry } from '../../../../protocol/audit.ts';
import { CleanroomError, type ErrorCode } from '../../../../protocol/errors.ts';
import type { SessionStatus } from '../../../../protocol/session.ts';
import type { SessionCursor, SessionStore } from '../../../../functions/core/ports.ts';
import type { SessionRecord } from '../../../../functions/core/records.ts';

/** A store under test and how to dispose of it. */
export interface StoreUnderTest {
  store: SessionStore;
  teardown(): Promise<void>;
}

/** A fresh, unique, lowercased email, so tests sharing one database never see each other's sessions. */
export function uniqueEmail(label: string): string {
  return `${label}-${crypto.randomUUID()}@example.test`;
}

/** A new session (version 1) and its first audit entry, as the session service builds them. */
export async function newSession(
  overrides: { id?: string; owner?: string; others?: string[]; created_at?: string; status?: SessionStatus } = {},
): Promise<{ session: SessionRecord; entry: AuditEntry }> {
  const id = overrides.id ?? crypto.randomUUID();
  const owner = overrides.owner ?? uniqueEmail('owner');
  const createdAt = overrides.created_at ?? new Date().toISOString();
  const emails = [owner, ...(overrides.others ?? [])];
  const entry = await nextAuditEntry(null, {
    session_id: id,
    at: createdAt,
    actor: owner,
    action: 'session.created',
    details: { participants: emails.length, approval_policy: 'none' },
  });
  const session: SessionRecord = {
    id,
    name: `session ${id.slice(0, 8)}`,
    owner_email: owner,
    participant_emails: emails,
    participants: emails.map((email, i) => ({
      email,
      role: i === 0 ? 'owner' : 'participant',
      added_at: createdAt,
      keys: null,
    })),
    config: { allow_cross_party_joins: false, approval_policy: 'none' },
    status: overrides.status ?? 'ACTIVE',
    created_at: createdAt,
    updated_at: createdAt,
    closed_at: overrides.status === 'CLOSED' ? createdAt : null,
    version: 1,
    audit_head: { seq: entry.seq, hash: entry.hash },
  };
  return { session, entry };
}

/** The next version of `session` with one more participant, and the audit entry that says so. */
export async function withParticipant(session: SessionRecord, email: string): Promise<{ session: SessionRecord; entry: AuditEntry }> {
  const at = new Date().toISOString();
  const entry = await nextAuditEntry(session.audit_head, {
    session_id: session.id,
    at,
    actor: session.owner_email,
    action: 'participant.added',
    details: { email },
  });
  return {
    entry,
    session: {
      ...session,
      participant_emails: [...session.participant_emails, email],
      participants: [...session.participants, { email, role: 'participant', added_at: at, keys: null }],
      updated_at: at,
      version: session.version + 1,
      audit_head: { seq: entry.seq, hash: entry.hash },
    },
  };
}

/** Asserts `promise` rejects with a `CleanroomError` of `code`. */
export async function rejectsWithCode(t: ExecutionContext, promise: Promise<unknown>, code: ErrorCode): Promise<void> {
  const error = await t.throwsAsync(promise);
  t.true(error instanceof CleanroomError, `expected a CleanroomError, got ${String(error)}`);
  t.is((error as CleanroomError).code, code);
}

/** Every page of `email`'s sessions, `limit` at a time, following the cursor to the end. */
async function allPages(store: SessionStore, email: string, limit: number, status?: SessionStatus): Promise<SessionRecord[]> {
  const out: SessionRecord[] = [];
  let after: SessionCursor | undefined;
  for (let page = 0; page < 100; page++) {
    const rows = await store.listForParticipant(email, { limit, ...(status ? { status } : {}), ...(after ? { after } : {}) });
    out.push(...rows);
    const last = rows.at(-1);
    if (rows.length < limit || !last) return out;
    after = { created_at: last.created_at, id: last.id };
  }
  throw new Error('pagination did not end');
}

/** Newest first, ties on created_at broken by id, both descending (byte order for ASCII ids). */
function newestFirst(a: SessionRecord, b: SessionRecord): number {
  if (a.created_at !== b.created_at) return a.created_at < b.created_at ? 1 : -1;
  return a.id < b.id ? 1 : a.id > b.id ? -1 : 0;
}

/**
 * Registers the `SessionStore` contract as ava tests titled `${name}: ...`. `setup` runs once per
 * test; every test uses fresh ids and emails, so stores may share one database.
 */
export function sessionStoreContract(name: string, setup: () => Promise<StoreUnderTest>): void {
  const withStore = (title: string, body: (t: ExecutionContext, store: SessionStore) => Promise<void>, serial = false) => {
    (serial ? test.serial : test)(`${name}: ${title}`, async (t) => {
      const { store, teardown } = await setup();
      try {
        await body(t, store);
      } finally {
        await teardown();
      }
    });
  };

  withStore('create then get returns the same record', async (t, store) => {
    const { session, entry } = await newSession({ others: [uniqueEmail('p')] });
    await store.create(session, entry);
    t.deepEqual(await store.get(session.id), session);
    t.deepEqual(await store.listAudit(session.id, 0, 10), [entry]);
  });

  withStore('create keeps a migrated_from marker and a record without one round-trips without it', async (t, store) => {
    const a = await newSession();
    const migrated = { ...a.session, migrated_from: 'tees/legacy-1' };
    await store.create(migrated, a.entry);
    t.deepEqual(await store.get(migrated.id), migrated);
    const b = await newSession();
    await store.create(b.session, b.entry);
    t.false(Object.hasOwn((await store.get(b.session.id))!, 'migrated_from'));
  });

  withStore('get of an unknown id returns null', async (t, store) => {
    t.is(await store.get(crypto.randomUUID()), null);
  });

  withStore('create of an existing id is CONFLICT and leaves the original unchanged', async (t, store) => {
    const original = await newSession();
    await store.create(original.session, original.entry);
    const impostor = await newSession({ id: original.session.id });
    await rejectsWithCode(t, store.create(impostor.session, impostor.entry), 'CONFLICT');
    t.deepEqual(await store.get(original.session.id), original.session);
    t.deepEqual(await store.listAudit(original.session.id, 0, 10), [original.entry]);
  });

  withStore('update with the current version replaces the record and appends the entry', async (t, store) => {
    const first = await newSession();
    await store.create(first.session, first.entry);
    const second = await withParticipant(first.session, uniqueEmail('added'));
    await store.update(second.session, 1, second.entry);
    t.deepEqual(await store.get(first.session.id), second.session);
    t.deepEqual(await store.listAudit(first.session.id, 0, 10), [first.entry, second.entry]);
  });

  withStore('update with a stale version is CONFLICT and changes nothing', async (t, store) => {
    const first = await newSession();
    await store.create(first.session, first.entry);
    const second = await withParticipant(first.session, uniqueEmail('a'));
    await store.update(second.session, 1, second.entry);
    // Built from version 1 again: another writer's view from before `second`.
    const stale = await withParticipant(first.session, uniqueEmail('b'));
    await rejectsWithCode(t, store.update(stale.session, 1, stale.entry), 'CONFLICT');
    t.deepEqual(await store.get(first.session.id), second.session);
    t.deepEqual(await store.listAudit(first.session.id, 0, 10), [first.entry, second.entry]);
  });

  withStore('update of a session that does not exist is CONFLICT and creates nothing', async (t, store) => {
    const ghost = await newSession();
    const next = await withParticipant(ghost.session, uniqueEmail('a'));
    await rejectsWithCode(t, store.update(next.session, 1, next.entry), 'CONFLICT');
    t.is(await store.get(ghost.session.id), null);
    t.deepEqual(await store.listAudit(ghost.session.id, 0, 10), []);
  });

  withStore(
    'two racing updates from the same version: exactly one wins, one is CONFLICT, one entry is appended (3 rounds)',
    async (t, store) => {
      let { session, entry } = await newSession();
      await store.create(session, entry);
      const chain = [entry];
      for (let round = 0; round < 3; round++) {
        const a = await withParticipant(session, uniqueEmail('a'));
        const b = await withParticipant(session, uniqueEmail('b'));
        const results = await Promise.allSettled([store.update(a.session, session.version, a.entry), store.update(b.session, session.version, b.entry)]);
        const won = results.flatMap((r, i) => (r.status === 'fulfilled' ? [i === 0 ? a : b] : []));
        const lost = results.flatMap((r) => (r.status === 'rejected' ? [r.reason] : []));
        t.is(won.length, 1, `round ${round}: exactly one winner`);
        t.is(lost.length, 1, `round ${round}: exactly one loser`);
        t.true(lost[0] instanceof CleanroomError && lost[0].code === 'CONFLICT', `round ${round}: loser gets CONFLICT, got ${String(lost[0])}`);
        const winner = won[0]!;
        t.deepEqual(await store.get(session.id), winner.session);
        chain.push(winner.entry);
        t.deepEqual(await store.listAudit(session.id, 0, 100), chain);
        session = winner.session;
      }
    },
    true,
  );

  withStore(
    'two racing creates of one id: exactly one wins, one is CONFLICT',
    async (t, store) => {
      const a = await newSession();
      const b = await newSession({ id: a.session.id });
      const results = await Promise.allSettled([store.create(a.session, a.entry), store.create(b.session, b.entry)]);
      const winners = results.flatMap((r, i) => (r.status === 'fulfilled' ? [i === 0 ? a : b] : []));
      const losers = results.flatMap((r) => (r.status === 'rejected' ? [r.reason] : []));
      t.is(winners.length, 1);
      t.true(losers[0] instanceof CleanroomError && losers[0].code === 'CONFLICT');
      t.deepEqual(await store.get(a.session.id), winners[0]!.session);
      t.deepEqual(await store.listAudit(a.session.id, 0, 10), [winners[0]!.entry]);
    },
    true,
  );

  withStore('listForParticipant returns only sessions the email takes part in, newest first', async (t, store) => {
    const me = uniqueEmail('me');
    const mine1 = await newSession({ owner: me, created_at: '2024-01-01T00:00:00.000Z' });
    const mine2 = await newSession({ others: [me], created_at: '2024-01-03T00:00:00.000Z' });
    const notMine = await newSession({ others: [uniqueEmail('someone')], created_at: '2024-01-02T00:00:00.000Z' });
    for (const { session, entry } of [mine1, notMine, mine2]) await store.create(session, entry);
    t.deepEqual(await store.listForParticipant(me, { limit: 10 }), [mine2.session, mine1.session]);
    t.deepEqual(await store.listForParticipant(uniqueEmail('nobody'), { limit: 10 }), []);
  });

  withStore('listForParticipant sees participants added by update and filters by status', async (t, store) => {
    const me = uniqueEmail('me');
    const active = await newSession({ owner: me, created_at: '2024-02-01T00:00:00.000Z' });
    const closed = await newSession({ owner: me, status: 'CLOSED', created_at: '2024-02-02T00:00:00.000Z' });
    const joined = await newSession({ created_at: '2024-02-03T00:00:00.000Z' });
    for (const { session, entry } of [active, closed, joined]) await store.create(session, entry);
    const added = await withParticipant(joined.session, me);
    await store.update(added.session, 1, added.entry);
    t.deepEqual(await store.listForParticipant(me, { limit: 10 }), [added.session, closed.session, active.session]);
    t.deepEqual(await store.listForParticipant(me, { limit: 10, status: 'ACTIVE' }), [added.session, active.session]);
    t.deepEqual(await store.listForParticipant(me, { limit: 10, status: 'CLOSED' }), [closed.session]);
  });

  withStore('listForParticipant pages with the cursor without gaps or duplicates, ties on created_at included', async (t, store) => {
    const me = uniqueEmail('me');
    const times = ['2024-03-01T00:00:00.000Z', '2024-03-02T00:00:00.000Z', '2024-03-02T00:00:00.000Z', '2024-03-02T00:00:00.000Z', '2024-03-03T00:00:00.000Z'];
    const created: SessionRecord[] = [];
    for (const [i, created_at] of [...times, ...times].entries()) {
      const { session, entry } = await newSession({ owner: me, created_at, status: i % 3 === 0 ? 'CLOSED' : 'ACTIVE' });
      await store.create(session, entry);
      created.push(session);
    }
    const expected = [...created].sort(newestFirst);
    for (const limit of [1, 2, 3, 4, 10, 11]) {
      t.deepEqual(await allPages(store, me, limit), expected, `limit ${limit}`);
      t.deepEqual(
        await allPages(store, me, limit, 'ACTIVE'),
        expected.filter((s) => s.status === 'ACTIVE'),
        `ACTIVE, limit ${limit}`,
      );
    }
    // A cursor in the middle of a tie resumes right after it.
    const middle = expected[4]!;
    t.deepEqual(await store.listForParticipant(me, { limit: 100, after: { created_at: middle.created_at, id: middle.id } }), expected.slice(5));
  });

  withStore('listAudit returns entries in seq order after afterSeq, at most limit', async (t, store) => {
    let { session, entry } = await newSession();
    await store.create(session, entry);
    const chain = [entry];
    for (let i = 0; i < 4; i++) {
      const next = await withParticipant(session, uniqueEmail(`p${i}`));
      await store.update(next.session, session.version, next.entry);
      chain.push(next.entry);
      session = next.session;
    }
    t.deepEqual(await store.listAudit(session.id, 0, 100), chain);
    t.deepEqual(await store.listAudit(session.id, 2, 2), chain.slice(2, 4));
    t.deepEqual(await store.listAudit(session.id, 4, 100), chain.slice(4));
    t.deepEqual(await store.listAudit(session.id, 5, 100), []);
    t.deepEqual(await store.listAudit(crypto.randomUUID(), 0, 100), []);
  });

  withStore("the stored audit chain verifies and ends at the record's audit_head", async (t, store) => {
    let { session, entry } = await newSession();
    await store.create(session, entry);
    for (let i = 0; i < 3; i++) {
      const next = await withParticipant(session, uniqueEmail(`p${i}`));
      await store.update(next.session, session.version, next.entry);
      session = next.session;
    }
    const stored = (await store.get(session.id))!;
    const verdict = await verifyAuditChain(await store.listAudit(session.id, 0, 100));
    t.deepEqual(verdict, { ok: true, head: stored.audit_head });
    // Verifying from a head seen earlier works too: clients remember the head they saw.
    const tail = await store.listAudit(session.id, 2, 100);
    const [, second] = await store.listAudit(session.id, 0, 2);
    t.deepEqual(await verifyAuditChain(tail, { seq: second!.seq, hash: second!.hash }), { ok: true, head: stored.audit_head });
  });

  withStore('a write our own code got wrong is a TypeError, not a coded error, and stores nothing', async (t, store) => {
    const { session, entry } = await newSession();
    await t.throwsAsync(store.create({ ...session, version: 2 }, entry), { instanceOf: TypeError });
    await t.throwsAsync(store.create({ ...session, audit_head: { seq: 1, hash: 'f'.repeat(64) } }, entry), { instanceOf: TypeError });
    t.is(await store.get(session.id), null);
    await store.create(session, entry);
    const next = await withParticipant(session, uniqueEmail('p'));
    await t.throwsAsync(store.update(next.session, 2, next.entry), { instanceOf: TypeError });
    t.deepEqual(await store.get(session.id), session);
  });
}
