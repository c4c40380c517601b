import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { CleanroomApi } from '../../client/sdk/api-client.ts';
import { waitForQuery } from '../../client/sdk/query-wait.ts';
import type { FetchLike } from '../../client/sdk/transport.ts';
import { CleanroomError, type ErrorCode } from '../../protocol/errors.ts';
import { registerTestKeys } from '../helpers/participant-keys.ts';
import { localStack, runCli, tempHome, tempRoot, type CliResult } from './local-stack.ts';

const ALICE = 'alice@example.com';
const BOB = 'bob@example.com';
const CAROL = 'carol@example.com';
const EVE = 'eve@example.com';
const SQL = 'SELECT count(*) AS n FROM ads';
const UNKNOWN_QUERY = '00000000-0000-4000-8000-000000000000';

let stack: Awaited<ReturnType<typeof localStack>>;
let homes: string;
test.before(async () => {
  homes = tempRoot();
  stack = await localStack();
});
test.after.always(async () => {
  await stack?.stop();
  if (homes) rmSync(homes, { recursive: true, force: true });
});

/** An SDK client acting as `email`. */
function as(email: string, fetchFn?: FetchLike): CleanroomApi {
  return new CleanroomApi({
    baseUrl: stack.apiUrl,
    token: async () => (await stack.devIdp.issue(email)).token,
    ...(fetchFn ? { fetch: fetchFn } : {}),
  });
}

/** A CLI user logged in as `email` with a home of their own. */
async function cli(email: string) {
  const home = tempHome(homes);
  const run = (...args: string[]) => runCli(args, { CLEANROOM_API: stack.apiUrl, CLEANROOM_HOME: home });
  const login = await run('login', '--email', email);
  if (login.code !== 0) throw new Error(`login failed: ${login.stderr}`);
  return { home, run };
}

/**
 * A session owned by alice with bob (and carol); every participant approves by default. Each
 * member registers keys, as `session join` does: results are sealed to recipients' keys.
 */
async function session(options: { participants?: string[]; approval?: 'none' | 'all_participants' } = {}): Promise<string> {
  const participants = options.participants ?? [BOB];
  const created = await as(ALICE).createSession({
    name: 'queries',
    participant_emails: participants,
    approval_policy: options.approval ?? 'all_participants',
  });
  for (const email of [ALICE, ...participants]) await registerTestKeys({ apiUrl: stack.apiUrl, idp: stack.devIdp, sessionId: created.id, email });
  return created.id;
}

function json(res: CliResult): any {
  return JSON.parse(res.stdout);
}

function assertFailure(t: ExecutionContext, res: CliResult, exitCode: number, code: string) {
  t.is(res.code, exitCode, res.stderr);
  t.regex(res.stderr, new RegExp(`^error: ${code}: `, 'm'));
  t.notRegex(res.stderr, /^\s+at /m);
  t.is(res.stdout, '');
}

async function apiCode(promise: Promise<unknown>): Promise<ErrorCode | 'ok'> {
  try {
    await promise;
    return 'ok';
  } catch (error) {
    if (error instanceof CleanroomError) return error.code;
    throw error;
  }
}

// --- SDK ---------------------------------------------------------------------------------------

test('sdk queries: propose, approve by the other participant, get, list', async (t) => {
  const id = await session();
  const proposed = await as(ALICE).proposeQuery(id, { sql: SQL });
  t.is(proposed.status, 'PENDING_APPROVAL');
  t.is(proposed.proposer, ALICE);
  t.deepEqual(proposed.recipients, [ALICE]);
  t.deepEqual([...proposed.required_approvers].sort(), [ALICE, BOB]);
  t.deepEqual(await as(BOB).getQuery(id, proposed.id), proposed);

  const approved = await as(BOB).approveQuery(id, proposed.id);
  t.not(approved.status, 'PENDING_APPROVAL');
  t.truthy(approved.approved_at);
  t.deepEqual(
    approved.decisions.map((d) => [d.email, d.decision]),
    [
      [ALICE, 'approve'],
      [BOB, 'approve'],
    ],
  );

  const page = await as(BOB).listQueries(id);
  t.deepEqual(
    page.queries.map((q) => q.id),
    [proposed.id],
  );
  t.is(page.next_cursor, null);
});

test('sdk queries: iterateQueries walks every page newest first and filters by status', async (t) => {
  const id = await session();
  const alice = as(ALICE);
  const ids: string[] = [];
  for (let i = 0; i < 5; i++) ids.push((await alice.proposeQuery(id, { sql: `SELECT ${i}` })).id);
  await alice.cancelQuery(id, ids[0]!);
  const walked: string[] = [];
  for await (const q of alice.iterateQueries(id, { limit: 2 })) walked.push(q.id);
  t.deepEqual(walked, [...ids].reverse());
  const cancelled: string[] = [];
  for await (const q of alice.iterateQueries(id, { status: 'CANCELLED' })) cancelled.push(q.id);
  t.deepEqual(cancelled, [ids[0]]);
});

const badProposals: Array<[string, unknown, ErrorCode]> = [
  ['sql is a number', { sql: 42 }, 'VALIDATION_FAILED'],
  ['sql is empty', { sql: '' }, 'VALIDATION_FAILED'],
  ['sql is missing', {}, 'VALIDATION_FAILED'],
  ['an unknown member', { sql: SQL, run_now: true }, 'VALIDATION_FAILED'],
  ['recipients is not a list', { sql: SQL, recipients: BOB }, 'VALIDATION_FAILED'],
  ['a recipient outside the session', { sql: SQL, recipients: [EVE] }, 'NOT_A_RECIPIENT'],
];
for (const [name, body, code] of badProposals) {
  test(`sdk queries: a bad proposal (${name}) is ${code}`, async (t) => {
    const id = await session();
    t.is(await apiCode(as(ALICE).proposeQuery(id, body as never)), code);
    t.deepEqual((await as(ALICE).listQueries(id)).queries, []);
  });
}

test('sdk queries: a malformed query id is refused before any request', async (t) => {
  let calls = 0;
  const counting: FetchLike = (input, init) => {
    calls++;
    return fetch(input, init);
  };
  const api = as(ALICE, counting);
  for (const bad of ['..', 'not-a-uuid', `${UNKNOWN_QUERY}/approve`]) {
    t.is(await apiCode(api.getQuery('s1', bad)), 'VALIDATION_FAILED', bad);
    t.is(await apiCode(api.approveQuery('s1', bad)), 'VALIDATION_FAILED', bad);
  }
  t.is(calls, 0);
});

test('sdk waitForQuery: returns at a final status, and reports a timeout as done: false', async (t) => {
  const id = await session();
  const rejected = await as(ALICE).proposeQuery(id, { sql: SQL });
  await as(BOB).rejectQuery(id, rejected.id);
  const seen: string[] = [];
  const done = await waitForQuery(as(ALICE), id, rejected.id, { timeoutMs: 10_000, onStatus: (q) => seen.push(q.status) });
  t.true(done.done);
  t.is(done.query.status, 'REJECTED');
  t.deepEqual(seen, ['REJECTED']);

  // A pending query never moves by itself; fake time runs out after three polls.
  const pending = await as(ALICE).proposeQuery(id, { sql: SQL });
  let now = 0;
  let polls = 0;
  const waited = await waitForQuery(as(ALICE), id, pending.id, {
    timeoutMs: 3000,
    intervalMs: 1000,
    now: () => now,
    sleep: async (ms) => {
      polls++;
      now += ms;
    },
  });
  t.false(waited.done);
  t.is(waited.query.status, 'PENDING_APPROVAL');
  t.is(polls, 3);
});

// --- CLI ---------------------------------------------------------------------------------------

test('cli query: alice proposes, bob sees it and approves, both see the approval with its timings', async (t) => {
  const alice = await cli(ALICE);
  const bob = await cli(BOB);
  const id = await session();
  const proposed = await alice.run('query', 'propose', id, '--sql', SQL, '--recipient', ALICE, '--recipient', BOB, '--json');
  t.is(proposed.code, 0, proposed.stderr);
  const query = json(proposed);
  t.like(query, { status: 'PENDING_APPROVAL', proposer: ALICE, sql: SQL, session_id: id });
  t.deepEqual(query.recipients, [ALICE, BOB]);

  const pending = await bob.run('query', 'show', id, query.id);
  t.is(pending.code, 0, pending.stderr);
  t.regex(pending.stdout, /^status\s+PENDING_APPROVAL$/m);
  t.regex(pending.stdout, new RegExp(`^approvals\\s+.*${BOB} \\(pending\\)`, 'm'));
  t.true(pending.stdout.includes(`\nsql                ${SQL}\n`));
  t.notRegex(pending.stdout, /^approved\s/m);

  const approved = await bob.run('query', 'approve', id, query.id, '--json');
  t.is(approved.code, 0, approved.stderr);
  t.not(json(approved).status, 'PENDING_APPROVAL');
  t.truthy(json(approved).approved_at);

  const shown = await alice.run('query', 'show', id, query.id);
  t.is(shown.code, 0, shown.stderr);
  t.regex(shown.stdout, /^status\s+(APPROVED|QUEUED|RUNNING|SUCCEEDED|FAILED)$/m);
  t.regex(shown.stdout, new RegExp(`^approvals\\s+.*${BOB} \\(approved\\)`, 'm'));
  t.regex(shown.stdout, /^created\s+\d{4}-/m);
  t.regex(shown.stdout, /^approved\s+\d{4}-/m);

  // Approving twice is refused.
  assertFailure(t, await bob.run('query', 'approve', id, query.id), 1, 'ALREADY_DECIDED');
});

test('cli query reject: the query is REJECTED for good; show --wait returns at once with exit 3', async (t) => {
  const alice = await cli(ALICE);
  const bob = await cli(BOB);
  const carol = await cli(CAROL);
  const id = await session({ participants: [BOB, CAROL] });
  const query = json(await alice.run('query', 'propose', id, '--sql', SQL, '--json'));
  const rejected = await bob.run('query', 'reject', id, query.id);
  t.is(rejected.code, 0, rejected.stderr);
  t.regex(rejected.stdout, /^status\s+REJECTED$/m);
  t.regex(rejected.stdout, new RegExp(`^approvals\\s+.*${BOB} \\(rejected\\)`, 'm'));
  t.regex(rejected.stdout, /^finished\s+\d{4}-/m);

  const waited = await alice.run('query', 'show', id, query.id, '--wait', '--json');
  // A query that ended without success is not a success (exit-codes.ts); it is still printed.
  t.is(waited.code, 3, waited.stderr);
  t.regex(waited.stderr, /^error: QUERY_REJECTED: /m);
  t.is(json(waited).status, 'REJECTED');
  assertFailure(t, await carol.run('query', 'approve', id, query.id), 1, 'ILLEGAL_TRANSITION');
  assertFailure(t, await alice.run('query', 'cancel', id, query.id), 1, 'ILLEGAL_TRANSITION');
});

test('cli query cancel: only the proposer or the owner; a cancelled query cannot be cancelled again', async (t) => {
  const alice = await cli(ALICE);
  const bob = await cli(BOB);
  const carol = await cli(CAROL);
  const id = await session({ participants: [BOB, CAROL] });
  const byBob = json(await bob.run('query', 'propose', id, '--sql', SQL, '--json'));
  assertFailure(t, await carol.run('query', 'cancel', id, byBob.id), 1, 'FORBIDDEN');
  // The owner may cancel someone else's query.
  const cancelled = await alice.run('query', 'cancel', id, byBob.id, '--json');
  t.is(cancelled.code, 0, cancelled.stderr);
  t.is(json(cancelled).status, 'CANCELLED');
  t.truthy(json(cancelled).finished_at);
  assertFailure(t, await bob.run('query', 'cancel', id, byBob.id), 1, 'ILLEGAL_TRANSITION');
  const mine = json(await carol.run('query', 'propose', id, '--sql', SQL, '--json'));
  t.is(json(await carol.run('query', 'cancel', id, mine.id, '--json')).status, 'CANCELLED');
});

test('cli query propose: a proposer who is the only approver gets the query queued at once', async (t) => {
  const alice = await cli(ALICE);
  const id = await session({ approval: 'none' });
  const res = await alice.run('query', 'propose', id, '--sql', SQL, '--json');
  t.is(res.code, 0, res.stderr);
  t.not(json(res).status, 'PENDING_APPROVAL');
  t.truthy(json(res).approved_at);
});

test('cli query propose --sql-file: multi-line SQL is sent as written and shown line by line', async (t) => {
  const alice = await cli(ALICE);
  const id = await session();
  const file = join(homes, 'query.sql');
  const text = 'SELECT region,\n       count(*) AS n\nFROM ads\nGROUP BY region\n';
  writeFileSync(file, text);
  const res = await alice.run('query', 'propose', id, '--sql-file', file);
  t.is(res.code, 0, res.stderr);
  t.regex(res.stdout, /^sql\s+SELECT region,$/m);
  t.regex(res.stdout, /^\s+FROM ads$/m);
  const [query] = (await as(ALICE).listQueries(id)).queries;
  t.is(query!.sql, text);
});

test('cli query propose: bad SQL and recipients get the API codes, exit 1', async (t) => {
  const alice = await cli(ALICE);
  const id = await session();
  assertFailure(t, await alice.run('query', 'propose', id, '--sql', ''), 1, 'VALIDATION_FAILED');
  // Past the API's 64 KiB body limit (below MAX_SQL_LENGTH): the API's code comes through.
  const big = join(homes, 'big.sql');
  writeFileSync(big, `SELECT '${'x'.repeat(70_000)}'`);
  assertFailure(t, await alice.run('query', 'propose', id, '--sql-file', big), 1, 'PAYLOAD_TOO_LARGE');
  // Far past any limit: refused before the file is read.
  const huge = join(homes, 'huge.sql');
  writeFileSync(huge, 'x'.repeat(300_001));
  assertFailure(t, await alice.run('query', 'propose', id, '--sql-file', huge), 1, 'VALIDATION_FAILED');
  assertFailure(t, await alice.run('query', 'propose', id, '--sql-file', join(homes, 'missing.sql')), 1, 'ENOENT');
  assertFailure(t, await alice.run('query', 'propose', id, '--sql', SQL, '--recipient', EVE), 1, 'NOT_A_RECIPIENT');
  assertFailure(t, await alice.run('query', 'propose', id, '--sql', SQL, '--recipient', 'not-an-email'), 1, 'VALIDATION_FAILED');
  t.deepEqual((await as(ALICE).listQueries(id)).queries, []);
});

test('cli query: someone outside the session gets SESSION_NOT_FOUND for every command', async (t) => {
  const alice = await cli(ALICE);
  const eve = await cli(EVE);
  const id = await session();
  const query = json(await alice.run('query', 'propose', id, '--sql', SQL, '--json'));
  for (const args of [
    ['propose', id, '--sql', SQL],
    ['list', id],
    ['show', id, query.id],
    ['show', id, query.id, '--wait', '--timeout', '1'],
    ['approve', id, query.id],
    ['reject', id, query.id],
    ['cancel', id, query.id],
  ]) {
    assertFailure(t, await eve.run('query', ...args), 1, 'SESSION_NOT_FOUND');
  }
  t.is((await as(ALICE).getQuery(id, query.id)).status, 'PENDING_APPROVAL');
});

test('cli query: an unknown query is QUERY_NOT_FOUND; a malformed id is VALIDATION_FAILED', async (t) => {
  const alice = await cli(ALICE);
  const id = await session();
  assertFailure(t, await alice.run('query', 'show', id, UNKNOWN_QUERY), 1, 'QUERY_NOT_FOUND');
  assertFailure(t, await alice.run('query', 'approve', id, UNKNOWN_QUERY), 1, 'QUERY_NOT_FOUND');
  assertFailure(t, await alice.run('query', 'show', id, '..'), 1, 'VALIDATION_FAILED');
});

test('cli query list: a table and --json, newest first, filtered by --status', async (t) => {
  const alice = await cli(ALICE);
  const id = await session();
  t.is((await alice.run('query', 'list', id)).stdout, 'no queries\n');
  const first = json(await alice.run('query', 'propose', id, '--sql', 'SELECT 1', '--json'));
  const second = json(await alice.run('query', 'propose', id, '--sql', 'SELECT 2', '--json'));
  await alice.run('query', 'cancel', id, first.id);

  const table = await alice.run('query', 'list', id);
  t.is(table.code, 0, table.stderr);
  t.regex(table.stdout, /^ID\s+STATUS\s+CREATED\s+PROPOSER\s+ERROR\s+SQL$/m);
  const lines = table.stdout.trim().split('\n').slice(1);
  t.is(lines.length, 2);
  t.regex(lines[0]!, new RegExp(`^${second.id}\\s+PENDING_APPROVAL .*${ALICE}\\s+-\\s+SELECT 2$`));
  t.regex(lines[1]!, new RegExp(`^${first.id}\\s+CANCELLED `));

  t.deepEqual(
    json(await alice.run('query', 'list', id, '--json')).queries.map((q: any) => q.id),
    [second.id, first.id],
  );
  t.deepEqual(
    json(await alice.run('query', 'list', id, '--status', 'CANCELLED', '--json')).queries.map((q: any) => q.id),
    [first.id],
  );
});

test('cli query show --wait: a query that stays pending times out with WAIT_TIMEOUT, exit 5', async (t) => {
  const alice = await cli(ALICE);
  const id = await session();
  const query = json(await alice.run('query', 'propose', id, '--sql', SQL, '--json'));
  const started = Date.now();
  const res = await alice.run('query', 'show', id, query.id, '--wait', '--timeout', '1');
  t.is(res.code, 5, res.stderr);
  t.regex(res.stderr, new RegExp(`^error: WAIT_TIMEOUT: .*still PENDING_APPROVAL after 1 s \\(waiting for ${BOB}: `, 'm'));
  // Progress went to stderr; stdout holds nothing, as for any failure.
  t.regex(res.stderr, new RegExp(`^query ${query.id}: PENDING_APPROVAL$`, 'm'));
  t.is(res.stdout, '');
  t.true(Date.now() - started >= 1000);
});

const usageErrors: Array<[string, string[]]> = [
  ['propose without SQL', ['propose', 's1']],
  ['propose with --sql and --sql-file', ['propose', 's1', '--sql', SQL, '--sql-file', 'f']],
  ['propose without a session', ['propose', '--sql', SQL]],
  ['show without a query', ['show', 's1']],
  ['show with --timeout but no --wait', ['show', 's1', UNKNOWN_QUERY, '--timeout', '5']],
  ['show with a bad --timeout', ['show', 's1', UNKNOWN_QUERY, '--wait', '--timeout', '0']],
  ['show with a non-numeric --timeout', ['show', 's1', UNKNOWN_QUERY, '--wait', '--timeout', '1m']],
  ['list with a bad --status', ['list', 's1', '--status', 'DONE']],
  ['approve with an extra argument', ['approve', 's1', UNKNOWN_QUERY, 'x']],
  ['an unknown subcommand', ['run', 's1']],
  ['no subcommand', []],
];
for (const [name, args] of usageErrors) {
  test(`cli query: usage error (${name}) exits 2 with a usage line`, async (t) => {
    const res = await runCli(['query', ...args], { CLEANROOM_API: stack.apiUrl, CLEANROOM_HOME: tempHome(homes) });
    assertFailure(t, res, 2, 'USAGE');
    t.regex(res.stderr, /^usage: cleanroom query /m);
  });
}

test('cli query --help: the group and every command', async (t) => {
  const home = tempHome(homes);
  for (const args of [['query', '--help'], ...['propose', 'list', 'show', 'approve', 'reject', 'cancel'].map((c) => ['query', c, '--help'])]) {
    const res = await runCli(args, { CLEANROOM_API: stack.apiUrl, CLEANROOM_HOME: home });
    t.is(res.code, 0, args.join(' '));
    t.regex(res.stdout, /^usage: cleanroom query /, args.join(' '));
  }
});
