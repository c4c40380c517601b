import test from 'ava';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { objectKeys } from '../../protocol/dataset.ts';
import { openSealedResult, receiptIdentityVerifier } from '../../protocol/sealed-result.ts';
import type { TestParticipantKeys } from '../helpers/participant-keys.ts';
import { startFullStack, type FullStack } from './stack.ts';

const OWNER = 'owner@example.com';
/** The digest the local worker's dev attester claims by default (`enclave-worker/config.ts`). */
const DEV_WORKER_DIGEST = `sha256:${'0'.repeat(56)}de7de7de`;
let stack: FullStack;
const keys = new Map<string, TestParticipantKeys>();

test.before(async () => {
  stack = await startFullStack();
});
test.after.always(async () => {
  await stack?.close();
});

async function sessionWithTable(rows: number): Promise<string> {
  const session = await stack.call('POST', '/api/tee/sessions', OWNER, { name: 'crash', approval_policy: 'none' });
  // Results are sealed to their recipients' registered keys: the owner receives them.
  keys.set(session.body.id, await stack.registerKeys(session.body.id, OWNER));
  const dir = join(stack.fixturesDir, session.body.id);
  mkdirSync(dir, { recursive: true });
  const lines = ['x:INTEGER', ...Array.from({ length: rows }, (_, i) => String(i))];
  writeFileSync(join(dir, 't.csv'), `${lines.join('\n')}\n`);
  return session.body.id;
}

test.serial('end to end: a proposed query runs in the worker and is recorded SUCCEEDED with its timings', async (t) => {
  const id = await sessionWithTable(100);
  const q = await stack.call('POST', `/api/tee/sessions/${id}/queries`, OWNER, { sql: 'SELECT sum(x) AS s FROM t' });
  t.is(q.status, 201);
  const done = await stack.waitFor(id, q.body.id, OWNER, ['SUCCEEDED', 'FAILED']);
  t.is(done.status, 'SUCCEEDED');
  t.truthy(done.started_at);
  t.truthy(done.finished_at);
  t.is(done.result_ref, `object:${objectKeys.result(id, q.body.id)}`);
  // The sealed result opens with the owner's key, under a receipt by the attested worker.
  const sealed = JSON.parse(readFileSync(join(stack.objectsDir, objectKeys.result(id, q.body.id)), 'utf8'));
  const opened = await openSealedResult({
    sealed,
    recipientPrivateKey: keys.get(id)!.encryptionPrivateKey,
    expect: { sessionId: id, queryId: q.body.id },
    verifyIdentity: receiptIdentityVerifier({
      policy: { audience: 'cleanroom-clients', allowedImageDigests: [DEV_WORKER_DIGEST], allowInsecureDev: true, devIssuer: `${stack.workerUrl}/dev-attestation` },
    }),
  });
  t.deepEqual(opened.rows, [['4950']]); // sum() is a HUGEINT: an exact decimal string
  t.deepEqual(opened.receipt.recipients, [OWNER]);
});

test.serial('end to end: a policy violation fails with POLICY_VIOLATION and the worker keeps serving', async (t) => {
  const id = await sessionWithTable(10);
  const bad = await stack.call('POST', `/api/tee/sessions/${id}/queries`, OWNER, { sql: "SELECT * FROM read_csv('/etc/passwd')" });
  const failed = await stack.waitFor(id, bad.body.id, OWNER, ['SUCCEEDED', 'FAILED']);
  t.is(failed.status, 'FAILED');
  t.is(failed.error_code, 'POLICY_VIOLATION');
  const good = await stack.call('POST', `/api/tee/sessions/${id}/queries`, OWNER, { sql: 'SELECT count(*) AS n FROM t' });
  t.is((await stack.waitFor(id, good.body.id, OWNER, ['SUCCEEDED', 'FAILED'])).status, 'SUCCEEDED');
});

test.serial('a worker killed with SIGKILL mid-query and restarted completes that query exactly once', async (t) => {
  const id = await sessionWithTable(700);
  // Slow enough to be caught running (a three-way self-join of 700 rows), fast enough for CI.
  const sql = 'SELECT count(*) AS n FROM t a, t b, t c WHERE (a.x + b.x + c.x) % 7 = 3';
  const q = await stack.call('POST', `/api/tee/sessions/${id}/queries`, OWNER, { sql });
  await stack.waitFor(id, q.body.id, OWNER, ['RUNNING']);
  await stack.killWorker('SIGKILL');
  await stack.startWorker();
  const done = await stack.waitFor(id, q.body.id, OWNER, ['SUCCEEDED', 'FAILED'], 120_000);
  t.is(done.status, 'SUCCEEDED');
  t.is(done.attempt, 1, 'the same attempt completed; no new task was needed');
  // One outcome record for the query, and one success in the session's audit chain.
  t.deepEqual(readdirSync(join(stack.objectsDir, objectKeys.resultPrefix(id))), [`${q.body.id}.json`]);
  const audit = await stack.call('GET', `/api/tee/sessions/${id}/audit?limit=200`, OWNER);
  const actions = audit.body.entries.map((e: any) => e.action);
  t.is(actions.filter((a: string) => a === 'query.succeeded').length, 1, actions.join(','));
  t.is(actions.filter((a: string) => a === 'query.failed').length, 0);
});
