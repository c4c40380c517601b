import test from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { objectKeys } from '../../../protocol/dataset.ts';
import { CleanroomError } from '../../../protocol/errors.ts';
import type { TaskSigner } from '../../../protocol/task.ts';
import { SqliteSessionStore } from '../../../functions/adapters/store/sqlite.ts';
import { DataPathService, type DataPathDeps } from '../../../functions/core/datapath-service.ts';
import type { ObjectStore } from '../../../functions/core/ports.ts';
import { SessionService } from '../../../functions/core/session-service.ts';

const OWNER = 'owner@example.com';
const dir = mkdtempSync(join(tmpdir(), 'datapath-'));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

function deps(overrides: Partial<DataPathDeps> = {}): DataPathDeps & { store: SqliteSessionStore } {
  const store = SqliteSessionStore.open(join(dir, `${crypto.randomUUID()}.sqlite`));
  const objects: ObjectStore = { read: async () => null, stat: async () => null, deletePrefix: async () => 0 };
  const signer: TaskSigner = { kid: 'k', sign: async () => new Uint8Array(64) };
  return {
    store,
    objects,
    uploads: { signUpload: async () => ({ url: 'https://x', method: 'PUT', headers: {}, expiresAt: new Date() }) },
    worker: { sessionKey: async () => '{}' },
    signer,
    clock: { now: () => new Date() },
    newId: () => crypto.randomUUID(),
    ...overrides,
  } as DataPathDeps & { store: SqliteSessionStore };
}

test('datapath: a result stream that breaks off is OBJECT_STORE_UNAVAILABLE, never a short 200', async (t) => {
  const broken: ReadableStream<Uint8Array> = new ReadableStream({
    start(controller) {
      controller.enqueue(new TextEncoder().encode('{"v":1,'));
      controller.error(new Error('connection reset'));
    },
  });
  const d = deps({ objects: { read: async () => broken, stat: async () => null, deletePrefix: async () => 0 } });
  const session = await new SessionService({ store: d.store, clock: d.clock, newId: () => crypto.randomUUID() }).create(OWNER, { name: 's' });
  // A SUCCEEDED query of OWNER's, written straight into the store.
  const { nextAuditEntry } = await import('../../../protocol/audit.ts');
  const now = new Date().toISOString();
  const id = crypto.randomUUID();
  const entry = await nextAuditEntry(session.audit_head, { session_id: session.id, at: now, actor: OWNER, action: 'query.succeeded', details: { query_id: id } });
  await d.store.commitQuery({
    query: {
      id,
      session_id: session.id,
      sql: 'SELECT 1',
      proposer: OWNER,
      recipients: [OWNER],
      status: 'SUCCEEDED',
      status_since: now,
      required_approvers: [OWNER],
      decisions: [],
      attempt: 1,
      task_id: crypto.randomUUID(),
      created_at: now,
      updated_at: now,
      approved_at: now,
      queued_at: now,
      started_at: now,
      finished_at: now,
      error_code: null,
      stats: null,
      result_ref: objectKeys.result(session.id, id),
      version: 1,
    },
    expectedQueryVersion: null,
    expectedSessionVersion: session.version,
    entry,
  });
  const error = await t.throwsAsync(new DataPathService(d).result(OWNER, session.id, id));
  t.is((error as CleanroomError).code, 'OBJECT_STORE_UNAVAILABLE');
  t.true(((error as CleanroomError).retryAfter ?? 0) > 0);
  d.store.close();
});

test('datapath: a signer out of reach (KMS) is KEY_SERVICE_UNAVAILABLE for the session key relay, and the worker is not asked', async (t) => {
  let asked = 0;
  const d = deps({
    signer: {
      get kid(): string {
        throw new CleanroomError('QUEUE_UNAVAILABLE', 'the task-signing key is not loaded yet', { retryAfter: 5 });
      },
      sign: async () => new Uint8Array(64),
    },
    worker: { sessionKey: async () => (asked++, '{}') },
  });
  const session = await new SessionService({ store: d.store, clock: d.clock, newId: () => crypto.randomUUID() }).create(OWNER, { name: 's' });
  const error = await t.throwsAsync(new DataPathService(d).sessionKey(OWNER, session.id, 'n'.repeat(16)));
  t.is((error as CleanroomError).code, 'KEY_SERVICE_UNAVAILABLE');
  t.is(asked, 0);
  d.store.close();
});

test('datapath: settings that are not positive whole numbers are a bug (TypeError)', (t) => {
  const base = deps();
  for (const bad of [0, -1, 1.5, Number.NaN]) {
    t.throws(() => new DataPathService({ ...base, maxDatasetBytes: bad }), { instanceOf: TypeError });
    t.throws(() => new DataPathService({ ...base, shredAfterSeconds: bad }), { instanceOf: TypeError });
  }
  base.store.close();
});
