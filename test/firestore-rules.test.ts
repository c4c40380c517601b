import test from 'ava';
import { resolve } from 'node:path';
import { readFileSync } from 'node:fs';
import { assertFails, assertSucceeds, initializeTestEnvironment, type RulesTestContext, type RulesTestEnvironment } from '@firebase/rules-unit-testing';
import { collection, deleteDoc, doc, getDoc, getDocs, limit, orderBy, query, setDoc, setLogLevel, updateDoc, where, type Firestore as ClientFirestore } from 'firebase/firestore';
import { startFirestoreEmulator, type RunningEmulator } from './helpers/firestore-emulator.ts';

// The rules are tested against Google's real emulator, never skipped: if it cannot start, the
// `before` hook throws and every test in this file fails.
const RULES_PATH = resolve(import.meta.dirname, '..', 'firestore.rules');
const PROJECT_ID = 'rules-test';

const OWNER = 'owner@example.com';
const MEMBER = 'member@example.com';
const STRANGER = 'stranger@example.com';

let emulator: RunningEmulator | undefined;
let env: RulesTestEnvironment | undefined;

function session(id: string, owner: string, others: string[]) {
  const now = '2024-01-01T00:00:00.000Z';
  const emails = [owner, ...others];
  return {
    id,
    name: `session ${id}`,
    owner_email: owner,
    participant_emails: emails,
    participants: emails.map((email, i) => ({ email, role: i === 0 ? 'owner' : 'participant', added_at: now, keys: null })),
    config: { allow_cross_party_joins: false, approval_policy: 'all_participants' },
    status: 'ACTIVE',
    created_at: now,
    updated_at: now,
    closed_at: null,
    version: 1,
    audit_head: { seq: 1, hash: 'a'.repeat(64) },
  };
}

test.before(async () => {
  // Denied writes are the expected outcome here; the SDK would log each one as a warning.
  setLogLevel('error');
  emulator = await startFirestoreEmulator({ rules: RULES_PATH });
  env = await initializeTestEnvironment({
    projectId: PROJECT_ID,
    firestore: { host: '127.0.0.1', port: emulator.port, rules: readFileSync(RULES_PATH, 'utf8') },
  });
  await env.withSecurityRulesDisabled(async (ctx) => {
    const db = modular(ctx);
    await setDoc(doc(db, 'collaboration_sessions/s1'), session('s1', OWNER, [MEMBER]));
    await setDoc(doc(db, 'collaboration_sessions/s2'), session('s2', STRANGER, []));
    await setDoc(doc(db, 'collaboration_sessions/s1/audit/0000000001'), { seq: 1, action: 'session.created' });
    await setDoc(doc(db, 'collaboration_sessions/s1/datasets/d1'), { id: 'd1', session_id: 's1', table: 'sales', wrapped_key: 'a.b.c.d.e' });
    await setDoc(doc(db, 'collaboration_sessions/s2/datasets/d2'), { id: 'd2', session_id: 's2', table: 'crm', wrapped_key: 'a.b.c.d.e' });
    await setDoc(doc(db, 'collaboration_sessions/s1/queries/q1'), { id: 'q1', session_id: 's1', sql: 'SELECT 1' });
    await setDoc(doc(db, 'tees/legacy1'), { name: 'old', owner_email: OWNER, participant_emails: [OWNER] });
    await setDoc(doc(db, 'other/x'), { participant_emails: [OWNER] });
  });
});

test.after.always(async () => {
  await env?.cleanup();
  await emulator?.stop();
});

/** A client signed in as `email`, verified unless told otherwise. */
function as(email: string, verified = true): ClientFirestore {
  return modular(env!.authenticatedContext(`uid-${email}`, { email, email_verified: verified }));
}

/**
 * The context's Firestore for the modular API. rules-unit-testing types it as the compat
 * instance, which wraps the same modular one the functions below accept at run time.
 */
function modular(context: RulesTestContext): ClientFirestore {
  return context.firestore() as unknown as ClientFirestore;
}

test('rules: a participant reads their own session', async (t) => {
  await assertSucceeds(getDoc(doc(as(MEMBER), 'collaboration_sessions/s1')));
  await assertSucceeds(getDoc(doc(as(OWNER), 'collaboration_sessions/s1')));
  t.pass();
});

test('rules: a non-participant cannot get a session', async (t) => {
  await assertFails(getDoc(doc(as(STRANGER), 'collaboration_sessions/s1')));
  t.pass();
});

test('rules: a missing session cannot be read either (ids leak nothing)', async (t) => {
  await assertFails(getDoc(doc(as(OWNER), 'collaboration_sessions/does-not-exist')));
  t.pass();
});

test('rules: an unauthenticated client reads nothing', async (t) => {
  const db = modular(env!.unauthenticatedContext());
  await assertFails(getDoc(doc(db, 'collaboration_sessions/s1')));
  await assertFails(getDocs(query(collection(db, 'collaboration_sessions'), where('participant_emails', 'array-contains', OWNER))));
  t.pass();
});

test('rules: an unverified email is refused', async (t) => {
  await assertFails(getDoc(doc(as(MEMBER, false), 'collaboration_sessions/s1')));
  t.pass();
});

test('rules: a token without email_verified or without email is refused', async (t) => {
  const noVerifiedClaim = modular(env!.authenticatedContext('u1', { email: MEMBER }));
  await assertFails(getDoc(doc(noVerifiedClaim, 'collaboration_sessions/s1')));
  const noEmail = modular(env!.authenticatedContext('u2', { email_verified: true }));
  await assertFails(getDoc(doc(noEmail, 'collaboration_sessions/s1')));
  t.pass();
});

test('rules: a list constrained to the caller’s own email succeeds and returns only their sessions', async (t) => {
  const db = as(OWNER);
  const snap = await assertSucceeds(getDocs(query(collection(db, 'collaboration_sessions'), where('participant_emails', 'array-contains', OWNER))));
  t.deepEqual(
    snap.docs.map((d) => d.id),
    ['s1'],
  );
  // The console's query shape: ordered, paged, optionally by status.
  await assertSucceeds(
    getDocs(query(collection(db, 'collaboration_sessions'), where('participant_emails', 'array-contains', OWNER), where('status', '==', 'ACTIVE'), orderBy('created_at', 'desc'), limit(10))),
  );
});

test('rules: an unconstrained list, or one constrained to someone else’s email, fails', async (t) => {
  const db = as(OWNER);
  await assertFails(getDocs(collection(db, 'collaboration_sessions')));
  await assertFails(getDocs(query(collection(db, 'collaboration_sessions'), where('participant_emails', 'array-contains', STRANGER))));
  await assertFails(getDocs(query(collection(db, 'collaboration_sessions'), where('owner_email', '==', OWNER))));
  t.pass();
});

test('rules: participants, even the owner, cannot create, update or delete sessions', async (t) => {
  for (const email of [OWNER, MEMBER]) {
    const db = as(email);
    await assertFails(setDoc(doc(db, 'collaboration_sessions/new'), session('new', email, [])));
    await assertFails(setDoc(doc(db, 'collaboration_sessions/s1'), session('s1', email, [])));
    await assertFails(updateDoc(doc(db, 'collaboration_sessions/s1'), { name: 'renamed' }));
    await assertFails(deleteDoc(doc(db, 'collaboration_sessions/s1')));
    await assertFails(setDoc(doc(db, 'collaboration_sessions/s1/audit/0000000002'), { seq: 2 }));
  }
  t.pass();
});

test('rules: the audit subcollection is not readable, even by participants', async (t) => {
  const db = as(OWNER);
  await assertFails(getDoc(doc(db, 'collaboration_sessions/s1/audit/0000000001')));
  await assertFails(getDocs(collection(db, 'collaboration_sessions/s1/audit')));
  t.pass();
});

test('rules: the stored list is lowercase, so a token email in another case still matches', async (t) => {
  const db = as('Member@Example.COM');
  await assertSucceeds(getDoc(doc(db, 'collaboration_sessions/s1')));
  // The client must query with the lowercased email: that is what the rule (and the store) compares.
  await assertSucceeds(getDocs(query(collection(db, 'collaboration_sessions'), where('participant_emails', 'array-contains', MEMBER))));
  t.pass();
});

test('rules: other collections, the legacy tees archive included, are denied', async (t) => {
  const db = as(OWNER);
  await assertFails(getDoc(doc(db, 'tees/legacy1')));
  await assertFails(getDocs(collection(db, 'tees')));
  await assertFails(getDoc(doc(db, 'other/x')));
  await assertFails(setDoc(doc(db, 'other/y'), { a: 1 }));
  await assertFails(setDoc(doc(db, 'tees/legacy2'), { a: 1 }));
  t.pass();
});

test("rules: participants read their session's datasets (get and list); others, unverified and anonymous callers cannot", async (t) => {
  for (const email of [OWNER, MEMBER, 'Member@Example.COM']) {
    await assertSucceeds(getDoc(doc(as(email), 'collaboration_sessions/s1/datasets/d1')));
    const snap = await assertSucceeds(getDocs(collection(as(email), 'collaboration_sessions/s1/datasets')));
    t.deepEqual(
      snap.docs.map((d) => d.id),
      ['d1'],
    );
  }
  await assertFails(getDoc(doc(as(STRANGER), 'collaboration_sessions/s1/datasets/d1')));
  await assertFails(getDocs(collection(as(STRANGER), 'collaboration_sessions/s1/datasets')));
  await assertFails(getDoc(doc(as(MEMBER, false), 'collaboration_sessions/s1/datasets/d1')));
  await assertFails(getDoc(doc(modular(env!.unauthenticatedContext()), 'collaboration_sessions/s1/datasets/d1')));
  // Another session's datasets, and those of a session that does not exist.
  await assertFails(getDoc(doc(as(MEMBER), 'collaboration_sessions/s2/datasets/d2')));
  await assertSucceeds(getDoc(doc(as(STRANGER), 'collaboration_sessions/s2/datasets/d2')));
  await assertFails(getDoc(doc(as(OWNER), 'collaboration_sessions/nope/datasets/d1')));
});

test("rules: nobody writes datasets, not even the session's participants; queries stay unreadable", async (t) => {
  for (const email of [OWNER, MEMBER]) {
    const db = as(email);
    await assertFails(setDoc(doc(db, 'collaboration_sessions/s1/datasets/new'), { id: 'new', table: 'x' }));
    await assertFails(updateDoc(doc(db, 'collaboration_sessions/s1/datasets/d1'), { table: 'renamed' }));
    await assertFails(deleteDoc(doc(db, 'collaboration_sessions/s1/datasets/d1')));
    await assertFails(getDoc(doc(db, 'collaboration_sessions/s1/queries/q1')));
  }
  t.pass();
});
