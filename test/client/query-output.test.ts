import test from 'ava';
import { formatQuery, formatQueryTable } from '../../client/cli/query-output.ts';
import type { QueryView } from '../../client/sdk/schemas.ts';

const BASE: QueryView = {
  id: '6f1c8a52-3d7e-4b8e-9a51-2f0c1d9e7b44',
  session_id: 's-1',
  sql: 'SELECT 1',
  proposer: 'alice@example.com',
  recipients: ['alice@example.com'],
  status: 'PENDING_APPROVAL',
  required_approvers: ['alice@example.com', 'bob@example.com'],
  decisions: [{ email: 'alice@example.com', decision: 'approve', at: '2031-06-01T12:00:00.000Z' }],
  attempt: 0,
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

const FAILED: QueryView = {
  ...BASE,
  status: 'FAILED',
  decisions: [...BASE.decisions, { email: 'bob@example.com', decision: 'approve', at: '2031-06-01T12:01:00.000Z' }],
  attempt: 2,
  approved_at: '2031-06-01T12:01:00.000Z',
  queued_at: '2031-06-01T12:01:00.000Z',
  started_at: '2031-06-01T12:01:05.000Z',
  finished_at: '2031-06-01T12:01:35.000Z',
  error_code: 'QUERY_TIMEOUT',
};

test('query output: a pending query shows its status, pending approvers and no later timings', (t) => {
  const out = formatQuery(BASE);
  t.regex(out, /^status\s+PENDING_APPROVAL$/m);
  t.regex(out, /^approvals\s+alice@example\.com \(approved\), bob@example\.com \(pending\)$/m);
  t.regex(out, /^created\s+2031-06-01T12:00:00\.000Z$/m);
  for (const label of ['approved', 'queued', 'started', 'finished', 'elapsed', 'error', 'attempt']) {
    t.notRegex(out, new RegExp(`^${label}\\s`, 'm'), label);
  }
});

test('query output: a failed query shows every timing, the elapsed time, the attempt and its error code', (t) => {
  const out = formatQuery(FAILED);
  t.regex(out, /^status\s+FAILED$/m);
  t.regex(out, /^approved\s+2031-06-01T12:01:00\.000Z$/m);
  t.regex(out, /^queued\s+2031-06-01T12:01:00\.000Z$/m);
  t.regex(out, /^started\s+2031-06-01T12:01:05\.000Z$/m);
  t.regex(out, /^finished\s+2031-06-01T12:01:35\.000Z$/m);
  t.regex(out, /^elapsed\s+30\.0 s$/m);
  t.regex(out, /^attempt\s+2$/m);
  t.regex(out, /^error\s+QUERY_TIMEOUT$/m);
});

test('query output: the worker-reported run time and result size win over the timestamps', (t) => {
  const out = formatQuery({ ...FAILED, status: 'SUCCEEDED', error_code: null, stats: { rows: null, bytes: 2048, elapsed_ms: 2000 } });
  t.regex(out, /^elapsed\s+2\.0 s$/m);
  t.regex(out, /^result size\s+2048 bytes$/m);
  t.notRegex(out, /^error\s/m);
});

test('query output: control characters from the API cannot drive the terminal', (t) => {
  const out = formatQuery({ ...BASE, sql: 'SELECT 1\n-- \u001b[2Jcleared', proposer: 'a\u001b]0;x\u0007@example.com' });
  t.false(out.includes('\u001b'));
  t.false(out.includes('\u0007'));
  t.regex(out, /^\s+-- \?\[2Jcleared$/m);
  t.false(formatQueryTable([{ ...BASE, sql: 'SELECT\u001b[31m 1' }]).includes('\u001b'));
});

test('query output: the table shortens long SQL to one line and shows a dash for no error', (t) => {
  const long = `SELECT ${'x, '.repeat(40)}y\nFROM t`;
  const out = formatQueryTable([{ ...BASE, sql: long }, FAILED]);
  const [header, first, second] = out.trim().split('\n');
  t.regex(header!, /^ID\s+STATUS\s+CREATED\s+PROPOSER\s+ERROR\s+SQL$/);
  t.regex(first!, /PENDING_APPROVAL .* -\s+SELECT x, x, .*\.\.\.$/);
  t.false(first!.includes('FROM t'));
  t.regex(second!, /FAILED .*QUERY_TIMEOUT {2}SELECT 1$/);
  t.is(formatQueryTable([]), 'no queries\n');
});
