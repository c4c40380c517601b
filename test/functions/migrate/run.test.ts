import test, { type ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { Firestore, Timestamp, type DocumentReference } from '@google-cloud/firestore';
import { verifyAuditChain } from '../../../protocol/audit.ts';
import { sha256Hex } from '../../../protocol/canonical-json.ts';
import { FirestoreSessionStore } from '../../../functions/adapters/store/firestore.ts';
import { firestoreSource, toPlain } from '../../../functions/migrate/firestore-source.ts';
import { archiveJson } from '../../../functions/migrate/map.ts';
import { ndjsonSource } from '../../../functions/migrate/ndjson.ts';
import { runMigration, type MigrationHooks } from '../../../functions/migrate/run.ts';
import type { MigrationReport } from '../../../functions/migrate/report.ts';
import type { LegacySource } from '../../../functions/migrate/source.ts';
import { startFirestoreEmulator, type RunningEmulator } from '../../helpers/firestore-emulator.ts';

// The SDK lets this variable override the host given in settings; every client here names its own.
delete process.env.FIRESTORE_EMULATOR_HOST;

const TARGET = 'collaboration_sessions';
const NOW = new Date('2025-06-01T12:00:00.000Z');
const REPO = resolve(import.meta.dirname, '..', '..', '..');

let emulator: RunningEmulator | undefined;

// Never skips: if the emulator cannot start, this hook throws and every test in the file fails.
test.before(async () => {
  emulator = await startFirestoreEmulator();
});

test.after.always(async () => {
  await emulator?.stop();
});

/** A client on a project of its own, so tests running side by side never see each other's data. */
function freshDb(t: ExecutionContext): { db: Firestore; projectId: string } {
  if (!emulator) throw new Error('the Firestore emulator did not start');
  const projectId = `migrate-${crypto.randomUUID().slice(0, 8)}`;
  const db = new Firestore({ projectId, host: emulator.host, ssl: false });
  t.teardown(() => db.terminate());
  return { db, projectId };
}

const ts = (iso: string): Timestamp => Timestamp.fromDate(new Date(iso));
const VM = (n: number) => ({ gcp_project_id: 'legacy-proj', gcp_zone: 'europe-west4-a', gcp_instance_id: `tee-vm-${n}`, attestation_token: `tok-${n}.secret` });

/** The legacy data set: four normal tees (every status, with children), five odd ones. */
const LEGACY: Record<string, Record<string, unknown>> = {
  't-active': {
    name: 'Active join',
    owner_email: 'Alice@Example.com',
    participant_emails: ['bob@example.com'],
    status: 'ACTIVE',
    created_at: ts('2024-03-01T10:00:00.123Z'),
    ...VM(1),
  },
  't-creating': {
    name: 'Still booting',
    owner_email: 'carol@example.com',
    status: 'CREATING',
    created_at: '2024-05-01T08:00:00+02:00',
    gcp_project_id: 'legacy-proj',
    gcp_zone: 'us-central1-a',
  },
  't-terminated': {
    name: 'Finished',
    created_by: 'dave@example.com',
    participant_emails: ['Alice@example.com', 'dave@example.com'],
    status: 'TERMINATED',
    created_at: ts('2023-11-01T00:00:00Z'),
    terminated_at: ts('2023-12-01T00:00:00Z'),
    approval_policy: 'none',
    ...VM(3),
  },
  't-terminated-2': {
    name: 'Cross-party',
    owner_email: 'erin@example.com',
    status: 'TERMINATED',
    created_at: '2023-01-01T00:00:00Z',
    terminated_at: '2023-02-01T00:00:00Z',
    allow_cross_party_joins: true,
    ...VM(4),
  },
  'odd-status': { name: 'Broken', owner_email: 'x@example.com', status: 'ERROR', created_at: ts('2024-01-01T00:00:00Z'), ...VM(5) },
  'odd-noname': { owner_email: 'x@example.com', status: 'ACTIVE', created_at: ts('2024-01-01T00:00:00Z') },
  'odd-terminated': { name: 'No end', owner_email: 'x@example.com', status: 'TERMINATED', created_at: ts('2024-01-01T00:00:00Z') },
  'odd-audit': { name: 'Has audit', owner_email: 'x@example.com', status: 'ACTIVE', created_at: ts('2024-01-01T00:00:00Z') },
  'odd-child': { name: 'Bad child', owner_email: 'x@example.com', status: 'ACTIVE', created_at: ts('2024-01-01T00:00:00Z') },
};
const NORMAL = ['t-active', 't-creating', 't-terminated', 't-terminated-2'];
const ODD = ['odd-audit', 'odd-child', 'odd-noname', 'odd-status', 'odd-terminated'];

/** Child documents: path below `tees/` → data. */
const CHILDREN: Record<string, Record<string, unknown>> = {
  't-active/datasets/d1': { tee_id: 't-active', rows: 10, uploaded_at: ts('2024-03-02T00:00:00Z') },
  't-active/datasets/d2': { tee_id: 't-active', rows: 20 },
  't-active/queries/q1': { tee_id: 't-active', sql: 'SELECT 1' },
  't-active/queries/q1/results/r1': { tee_id: 't-active', query_id: 'q1' },
  't-terminated/datasets/d9': { tee_id: 't-terminated', rows: 1 },
  'odd-audit/audit/a1': { event: 'created' },
  'odd-child/datasets/d1': { tee_id: 'odd-child', session_id: 'someone-else' },
};

async function seed(db: Firestore): Promise<void> {
  const batch = db.batch();
  for (const [id, data] of Object.entries(LEGACY)) batch.set(db.doc(`tees/${id}`), data);
  for (const [path, data] of Object.entries(CHILDREN)) batch.set(db.doc(`tees/${path}`), data);
  await batch.commit();
}

interface RunOptions {
  dryRun?: boolean;
  hooks?: MigrationHooks;
  signal?: AbortSignal;
  source?: LegacySource;
  limit?: number;
}

/** Runs the migration with a fixed clock and a small page size, so paging is exercised too. */
function migrate(db: Firestore, options: RunOptions = {}): Promise<MigrationReport> {
  return runMigration({
    source: options.source ?? firestoreSource(db, { collection: 'tees', pageSize: 3 }),
    store: new FirestoreSessionStore(db),
    db,
    targetCollection: TARGET,
    clock: { now: () => NOW },
    dryRun: options.dryRun ?? false,
    limit: options.limit,
    pageSize: 2,
    signal: options.signal,
    hooks: options.hooks,
  });
}

/** Every document below a collection, at any depth: path → data and update time. */
async function dump(db: Firestore, collection: string): Promise<Map<string, { data: unknown; updated: string }>> {
  const out = new Map<string, { data: unknown; updated: string }>();
  const walk = async (refs: DocumentReference[]): Promise<void> => {
    for (const ref of refs) {
      const snap = await ref.get();
      if (snap.exists) out.set(ref.path, { data: toPlain(snap.data()), updated: snap.updateTime!.toDate().toISOString() });
      for (const sub of await ref.listCollections()) await walk(await sub.listDocuments());
    }
  };
  await walk(await db.collection(collection).listDocuments());
  return out;
}

/** The dump's paths and data only (update times differ between projects). */
const contents = (d: Map<string, { data: unknown }>) => Object.fromEntries([...d].map(([k, v]) => [k, v.data]).sort());

/** The final state of a clean, uninterrupted run, for comparison. */
async function cleanRunState(t: ExecutionContext) {
  const { db } = freshDb(t);
  await seed(db);
  await migrate(db);
  return contents(await dump(db, TARGET));
}

test('run: a dry run writes nothing and reports what would happen', async (t) => {
  const { db } = freshDb(t);
  await seed(db);
  const legacyBefore = await dump(db, 'tees');
  const report = await migrate(db, { dryRun: true });
  t.deepEqual(report.counts, { scanned: 9, migrated: 4, already_migrated: 0, odd: 5, failed: 0 });
  t.is(report.children, 5);
  t.true(report.dry_run);
  t.false(report.interrupted);
  t.deepEqual(report.odd.map((o) => o.id).sort(), ODD);
  t.is((await dump(db, TARGET)).size, 0);
  t.deepEqual(await dump(db, 'tees'), legacyBefore);
});

test('run: a full run creates every normal session with its children and an intact audit chain', async (t) => {
  const { db } = freshDb(t);
  await seed(db);
  const legacyBefore = await dump(db, 'tees');
  const report = await migrate(db);
  t.deepEqual(report.counts, { scanned: 9, migrated: 4, already_migrated: 0, odd: 5, failed: 0 });
  t.is(report.children, 5);

  const store = new FirestoreSessionStore(db);
  for (const id of NORMAL) {
    const session = await store.get(id);
    if (!session) return t.fail(`${id} missing`);
    t.is(session.migrated_from, `tees/${id}`);
    t.is(session.version, 1);
    t.true(session.participants.every((p) => p.keys === null));
    const raw = (await db.doc(`${TARGET}/${id}`).get()).data()!;
    for (const dropped of ['gcp_project_id', 'gcp_zone', 'gcp_instance_id', 'attestation_token', 'terminated_at', 'created_by']) {
      t.false(dropped in raw, `${id}.${dropped}`);
    }
    const audit = await store.listAudit(id, 0, 10);
    t.is(audit.length, 1);
    t.deepEqual(await verifyAuditChain(audit), { ok: true, head: session.audit_head });
    const legacy = (await db.doc(`tees/${id}`).get()).data();
    t.like(audit[0], { actor: 'migration', action: 'session.migrated', at: NOW.toISOString() });
    t.deepEqual(audit[0]!.details, {
      migrated_from: `tees/${id}`,
      source: 'firestore',
      legacy_status: LEGACY[id]!.status as string,
      archived_record_sha256: await sha256Hex(archiveJson(toPlain(legacy))),
    });
  }

  t.like(await store.get('t-active'), {
    owner_email: 'alice@example.com',
    participant_emails: ['alice@example.com', 'bob@example.com'],
    status: 'ACTIVE',
    created_at: '2024-03-01T10:00:00.123Z',
    closed_at: null,
    config: { allow_cross_party_joins: false, approval_policy: 'all_participants' },
  });
  t.like(await store.get('t-creating'), { status: 'ACTIVE', created_at: '2024-05-01T06:00:00.000Z' });
  t.like(await store.get('t-terminated'), {
    owner_email: 'dave@example.com',
    participant_emails: ['dave@example.com', 'alice@example.com'],
    status: 'CLOSED',
    closed_at: '2023-12-01T00:00:00.000Z',
    config: { allow_cross_party_joins: false, approval_policy: 'none' },
  });
  t.like(await store.get('t-terminated-2'), { status: 'CLOSED', config: { allow_cross_party_joins: true, approval_policy: 'all_participants' } });
  // Listed for their participants, like any session.
  t.deepEqual(
    (await store.listForParticipant('alice@example.com', { limit: 10 })).map((s) => s.id),
    ['t-active', 't-terminated'],
  );

  // Children follow at the same paths, tee_id renamed; Firestore values are kept as they were.
  const target = await dump(db, TARGET);
  for (const [path, data] of Object.entries(CHILDREN)) {
    const copied = target.get(`${TARGET}/${path}`);
    if (path.startsWith('odd-')) {
      t.is(copied, undefined, path);
      continue;
    }
    const { tee_id, ...rest } = toPlain(data) as Record<string, unknown>;
    t.deepEqual(copied?.data, { ...rest, session_id: tee_id }, path);
  }
  const uploaded = (await db.doc(`${TARGET}/t-active/datasets/d1`).get()).get('uploaded_at');
  t.true(uploaded instanceof Timestamp);
  // Nothing of the odd records, nothing else: 4 sessions + 4 audit entries + 5 children.
  t.is(target.size, 13);
  t.false([...target.keys()].some((p) => p.includes('/odd-')));
  t.deepEqual(await dump(db, 'tees'), legacyBefore, 'the legacy archive is left as it was');

  t.deepEqual(report.vms.map((vm) => `${vm.session_id}:${vm.project}/${vm.zone}/${vm.instance}:${vm.legacy_status}`).sort(), [
    'odd-status:legacy-proj/europe-west4-a/tee-vm-5:ERROR',
    't-active:legacy-proj/europe-west4-a/tee-vm-1:ACTIVE',
    't-creating:legacy-proj/us-central1-a/null:CREATING',
    't-terminated-2:legacy-proj/europe-west4-a/tee-vm-4:TERMINATED',
    't-terminated:legacy-proj/europe-west4-a/tee-vm-3:TERMINATED',
  ]);
  t.false(JSON.stringify(report).includes('.secret'), 'no legacy token in the report');
});

test('run: odd records are reported with their reasons, never dropped silently', async (t) => {
  const { db } = freshDb(t);
  await seed(db);
  const report = await migrate(db);
  const reasons = Object.fromEntries(report.odd.map((o) => [o.id, o.reasons.join('; ')]));
  t.regex(reasons['odd-status']!, /^status:.*"ERROR"/);
  t.regex(reasons['odd-noname']!, /^name: missing/);
  t.regex(reasons['odd-terminated']!, /^terminated_at: missing/);
  t.regex(reasons['odd-audit']!, /^subcollection audit:/);
  t.regex(reasons['odd-child']!, /^child datasets\/d1: has both tee_id and a different session_id/);
  t.is(report.counts.scanned, report.counts.migrated + report.counts.already_migrated + report.counts.odd + report.counts.failed);
});

test('run: a second run reports everything already migrated and changes nothing', async (t) => {
  const { db } = freshDb(t);
  await seed(db);
  await migrate(db);
  const before = await dump(db, TARGET);
  const report = await migrate(db);
  t.deepEqual(report.counts, { scanned: 9, migrated: 0, already_migrated: 4, odd: 5, failed: 0 });
  t.is(report.children, 0);
  // Same documents with the same update times: nothing was rewritten.
  t.deepEqual(await dump(db, TARGET), before);
});

test('run: interrupted after two sessions, a re-run finishes with every session exactly once', async (t) => {
  const { db } = freshDb(t);
  await seed(db);
  const controller = new AbortController();
  let created = 0;
  const first = await migrate(db, { signal: controller.signal, hooks: { afterCreate: () => void (++created === 2 && controller.abort()) } });
  t.true(first.interrupted);
  t.is(first.counts.migrated, 2);
  t.is(first.counts.failed, 0);
  const second = await migrate(db);
  t.false(second.interrupted);
  t.is(second.counts.migrated, 2);
  t.is(second.counts.already_migrated, 2);
  t.deepEqual(contents(await dump(db, TARGET)), await cleanRunState(t));
});

test('run: interrupted between the children and the session, nothing is visible and a re-run completes', async (t) => {
  const { db } = freshDb(t);
  await seed(db);
  const controller = new AbortController();
  const first = await migrate(db, { signal: controller.signal, hooks: { beforeCreate: (id) => void (id === 't-active' && controller.abort()) } });
  t.true(first.interrupted);
  t.is(first.counts.migrated, 0);
  // The children are there, the session is not: no client or API path shows a half session.
  const store = new FirestoreSessionStore(db);
  t.true((await db.doc(`${TARGET}/t-active/datasets/d1`).get()).exists);
  t.is(await store.get('t-active'), null);
  t.deepEqual(await store.listForParticipant('alice@example.com', { limit: 10 }), []);

  const second = await migrate(db);
  t.is(second.counts.migrated, 4);
  t.deepEqual(contents(await dump(db, TARGET)), await cleanRunState(t));
});

test('run: a session that fails is reported failed, the others go on, and a re-run migrates it', async (t) => {
  const { db } = freshDb(t);
  await seed(db);
  const first = await migrate(db, {
    hooks: {
      beforeCreate: (id) => {
        if (id === 't-terminated') throw new Error('injected outage');
      },
    },
  });
  t.deepEqual(first.counts, { scanned: 9, migrated: 3, already_migrated: 0, odd: 5, failed: 1 });
  t.deepEqual(first.failed, [{ id: 't-terminated', error: 'Error: injected outage' }]);
  t.true(first.next_steps.some((s) => s.startsWith('Run the migration again')));
  const second = await migrate(db);
  t.deepEqual(second.counts, { scanned: 9, migrated: 1, already_migrated: 3, odd: 5, failed: 0 });
  t.deepEqual(contents(await dump(db, TARGET)), await cleanRunState(t));
});

test('run: an id already taken by a session not migrated from that tee is odd, and left untouched', async (t) => {
  const { db } = freshDb(t);
  await seed(db);
  const store = new FirestoreSessionStore(db);
  await migrate(db);
  // A later run finds a session under a legacy id that some other process put there.
  const existing = (await store.get('t-active'))!;
  await db.doc(`${TARGET}/t-active`).set({ ...existing, migrated_from: 'tees/elsewhere' });
  const before = await dump(db, TARGET);
  const report = await migrate(db);
  t.is(report.counts.already_migrated, 3);
  t.regex(report.odd.find((o) => o.id === 't-active')?.reasons[0] ?? '', /^id: taken by a session/);
  t.deepEqual((await dump(db, TARGET)).get(`${TARGET}/t-active`), before.get(`${TARGET}/t-active`));
});

test('run: --limit stops after N records without calling it an interruption', async (t) => {
  const { db } = freshDb(t);
  await seed(db);
  const report = await migrate(db, { limit: 4 });
  t.is(report.counts.scanned, 4);
  t.false(report.interrupted);
});

test('run: an NDJSON export of the SQL table migrates with the same mapping; bad lines are odd', async (t) => {
  const { db } = freshDb(t);
  const rows = [
    JSON.stringify({
      id: 17,
      name: 'From SQL',
      owner_email: 'Sam@Example.com',
      participant_emails: null,
      status: 'TERMINATED',
      created_at: '2022-01-01 10:00:00.5+00',
      terminated_at: '2022-02-01 10:00:00+00',
      gcp_project_id: 'p-old',
      gcp_zone: 'z',
      gcp_instance_id: 'vm-17',
      attestation_token: null,
      allow_cross_party_joins: null,
      approval_policy: null,
    }),
    '',
    '{not json',
    JSON.stringify({ id: 17, name: 'dup' }),
    JSON.stringify({ id: 'x1', name: 'Unknown', owner_email: 'a@example.com', status: 'PAUSED', created_at: '2022-01-01T00:00:00Z' }),
  ];
  async function* lines() {
    yield* rows;
  }
  const report = await migrate(db, { source: ndjsonSource(lines(), 'tees.ndjson') });
  t.deepEqual(report.counts, { scanned: 4, migrated: 1, already_migrated: 0, odd: 3, failed: 0 });
  t.deepEqual(
    report.odd.map((o) => o.id),
    ['line 3', 'line 4', 'x1'],
  );
  t.deepEqual(report.vms, [{ session_id: '17', legacy_status: 'TERMINATED', project: 'p-old', zone: 'z', instance: 'vm-17' }]);
  const session = await new FirestoreSessionStore(db).get('17');
  t.like(session, { owner_email: 'sam@example.com', status: 'CLOSED', created_at: '2022-01-01T10:00:00.500Z', closed_at: '2022-02-01T10:00:00.000Z', migrated_from: 'tees/17' });
  const [entry] = await new FirestoreSessionStore(db).listAudit('17', 0, 10);
  t.is(entry?.details.source, 'ndjson');
});

/** Runs main.ts as `npm run migrate:shared-tee` would, with the project's Node. */
function runMain(args: string[], env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, ['functions/migrate/main.ts', ...args], { cwd: REPO, env: { ...process.env, ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += String(d)));
    child.stderr.on('data', (d) => (stderr += String(d)));
    child.on('error', fail);
    child.on('close', (code) => done({ code, stdout, stderr }));
  });
}

test('main: --dry-run --json against the emulator prints the report, writes nothing and exits 0', async (t) => {
  const { db, projectId } = freshDb(t);
  await seed(db);
  const { code, stdout, stderr } = await runMain(['--dry-run', '--json', '--project', projectId], { FIRESTORE_EMULATOR_HOST: emulator!.host });
  t.is(code, 0, stderr);
  const report = JSON.parse(stdout) as MigrationReport;
  t.deepEqual(report.counts, { scanned: 9, migrated: 4, already_migrated: 0, odd: 5, failed: 0 });
  t.is(report.vms.length, 5);
  t.is((await dump(db, TARGET)).size, 0);
});

test('main: bad arguments exit 2 with the usage', async (t) => {
  for (const args of [['--frobnicate'], ['--limit', '0'], ['--limit', 'ten'], ['--project', 'Bad_Project'], ['stray']]) {
    const { code, stderr } = await runMain(args, {});
    t.is(code, 2, args.join(' '));
    t.regex(stderr, /Usage: npm run migrate:shared-tee/);
  }
});
