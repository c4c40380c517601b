import test from 'ava';
import type { ExecuteOutcome, Executor } from '../../enclave-worker/executor/executor.ts';
import type { ExecuteRequest } from '../../enclave-worker/executor/ports.ts';
import { recipientKeysOf, runTask } from '../../enclave-worker/intake/run-task.ts';
import type { Reporter } from '../../enclave-worker/report/control-plane.ts';
import type { TaskInput, TaskRecipientKey } from '../../protocol/dataset.ts';
import type { QueryEvent } from '../../protocol/query.ts';
import { taskPayload } from '../helpers/task.ts';

const coordinate = () => Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString('base64url');
const keyOf = (email: string): TaskRecipientKey => ({ email, encryption_jwk: { kty: 'EC', crv: 'P-256', x: coordinate(), y: coordinate(), alg: 'ECDH-ES+A256KW', use: 'enc' } });
const ALICE = keyOf('alice@example.com');
const BOB = keyOf('bob@example.com');

test('recipient keys: exactly one key per recipient, in the task order, non-recipients left out', (t) => {
  const carol = keyOf('carol@example.com');
  t.deepEqual(recipientKeysOf({ recipients: ['bob@example.com', 'alice@example.com'], recipient_keys: [ALICE, carol, BOB] }), [BOB, ALICE]);
  t.deepEqual(recipientKeysOf({ recipients: ['alice@example.com', 'alice@example.com'], recipient_keys: [ALICE] }), [ALICE]);
});

for (const [name, recipient_keys] of [
  ['no recipient_keys (a task queued before keys)', undefined],
  ['no keys', []],
  ['a recipient without a key', [ALICE]],
  ['a recipient with two keys', [ALICE, BOB, keyOf('bob@example.com')]],
] as const) {
  test(`recipient keys: ${name} is null`, (t) => {
    t.is(recipientKeysOf({ recipients: ['alice@example.com', 'bob@example.com'], ...(recipient_keys ? { recipient_keys: [...recipient_keys] } : {}) }), null);
  });
}

function fakes(outcome: ExecuteOutcome = { status: 'SUCCEEDED', result: { ref: 'object:results/s/q.json', rows: 2, bytes: 900, elapsedMs: 12.4 } }) {
  const events: QueryEvent[] = [];
  const requests: ExecuteRequest[] = [];
  const reporter = { report: async (event: QueryEvent) => (events.push(event), 'ok' as const) } as Reporter;
  const executor = { execute: async (request: ExecuteRequest) => (requests.push(request), outcome) } as unknown as Executor;
  return { events, requests, reporter, executor };
}

test('run task: the executor gets the task inputs, attempt and recipient keys; the outcome is reported', async (t) => {
  const { events, requests, reporter, executor } = fakes();
  const input = { dataset_id: crypto.randomUUID(), table: 'sales' } as unknown as TaskInput;
  const payload = taskPayload({ attempt: 3, recipients: ['alice@example.com'], recipient_keys: [ALICE, BOB], inputs: [input] });
  const signal = new AbortController().signal;
  t.deepEqual(await runTask(payload, signal, executor, reporter), { status: 'SUCCEEDED' });
  t.deepEqual(requests, [{ sessionId: payload.session_id, queryId: payload.query_id, attempt: 3, sql: payload.sql, inputs: [input], recipients: [ALICE], signal }]);
  t.deepEqual(
    events.map((e) => e.event),
    ['RUNNING', 'SUCCEEDED'],
  );
  t.is(events[1]!.result_ref, 'object:results/s/q.json');
});

test('run task: a task without inputs runs with none', async (t) => {
  const { requests, reporter, executor } = fakes();
  await runTask(taskPayload({ recipient_keys: [ALICE] }), new AbortController().signal, executor, reporter);
  t.deepEqual(requests[0]!.inputs, []);
});

test('run task: a recipient without a key fails RECIPIENT_KEY_MISSING without executing', async (t) => {
  const { events, requests, reporter, executor } = fakes();
  const outcome = await runTask(taskPayload({ recipients: ['alice@example.com', 'bob@example.com'], recipient_keys: [ALICE] }), new AbortController().signal, executor, reporter);
  t.deepEqual(outcome, { status: 'FAILED', code: 'RECIPIENT_KEY_MISSING' });
  t.is(requests.length, 0);
  t.deepEqual(
    events.map((e) => [e.event, e.error_code]),
    [
      ['RUNNING', undefined],
      ['FAILED', 'RECIPIENT_KEY_MISSING'],
    ],
  );
});
