import test from 'ava';
import { EXIT } from '../../client/cli/exit-codes.ts';
import { outcome } from '../../client/cli/query-outcome.ts';
import type { QueryView } from '../../client/sdk/schemas.ts';

const QUERY: QueryView = {
  id: '6f1c8a52-3d7e-4b8e-9a51-2f0c1d9e7b44',
  session_id: 's-1',
  sql: 'SELECT 1',
  proposer: 'alice@example.com',
  recipients: ['alice@example.com'],
  status: 'SUCCEEDED',
  required_approvers: ['alice@example.com', 'bob@example.com'],
  decisions: [],
  attempt: 1,
  created_at: '2031-06-01T12:00:00.000Z',
  updated_at: '2031-06-01T12:00:00.000Z',
  approved_at: null,
  queued_at: null,
  started_at: null,
  finished_at: null,
  error_code: null,
  stats: null,
  result_ref: null,
};

test('query outcome: SUCCEEDED is no error', (t) => {
  t.is(outcome(QUERY), null);
});

const unsuccessful: Array<[string, Partial<QueryView>, string, RegExp]> = [
  ['FAILED with a policy refusal', { status: 'FAILED', error_code: 'POLICY_VIOLATION' }, 'QUERY_FAILED', /FAILED with POLICY_VIOLATION: .*change the query/],
  ['FAILED with an input that did not load', { status: 'FAILED', error_code: 'DATASET_SCHEMA_MISMATCH' }, 'QUERY_FAILED', /DATASET_SCHEMA_MISMATCH: .*its owner uploads it again/],
  ['FAILED with a code newer than this CLI', { status: 'FAILED', error_code: 'SOMETHING_NEW' }, 'QUERY_FAILED', /SOMETHING_NEW: see the error code/],
  ['FAILED with a control character in its code', { status: 'FAILED', error_code: 'X\u001b[2J' }, 'QUERY_FAILED', /X\?\[2J/],
  ['REJECTED', { status: 'REJECTED', decisions: [{ email: 'bob@example.com', decision: 'reject', at: '2031-06-01T12:00:00.000Z' }] }, 'QUERY_REJECTED', /rejected by bob@example\.com/],
  ['CANCELLED', { status: 'CANCELLED' }, 'QUERY_CANCELLED', /was cancelled/],
  ['EXPIRED', { status: 'EXPIRED' }, 'QUERY_EXPIRED', /expired before every approval arrived: propose it again/],
];
for (const [name, change, code, message] of unsuccessful) {
  test(`query outcome: ${name} is ${code}, exit 3`, (t) => {
    const error = outcome({ ...QUERY, ...change });
    t.is(error?.code as string | undefined, code);
    t.is(error?.exitCode, EXIT.queryUnsuccessful);
    t.regex(error?.message ?? '', message);
  });
}

test('query outcome: a status that is not final is a bug of the caller', (t) => {
  t.throws(() => outcome({ ...QUERY, status: 'RUNNING' }), { instanceOf: TypeError });
});
