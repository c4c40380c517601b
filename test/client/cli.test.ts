import { mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import test from 'ava';
import { CleanroomApi } from '../../client/sdk/api-client.ts';
import { deadUrl, fakeServer, localStack, runCli, tempHome as homeUnder, tempRoot, type CliResult } from './local-stack.ts';

const ALICE = 'alice@example.com';
const BOB = 'bob@example.com';
const CAROL = 'carol@example.com';
const EVE = 'eve@example.com';

let stack: Awaited<ReturnType<typeof localStack>>;
let homes: string;
const tempHome = () => homeUnder(homes);
test.before(async () => {
  homes = tempRoot();
  stack = await localStack();
});
test.after.always(async () => {
  await stack?.stop();
  if (homes) rmSync(homes, { recursive: true, force: true });
});

/** A user of the CLI: one CLEANROOM_HOME against the stack. */
function user() {
  const home = tempHome();
  return {
    home,
    run: (...args: string[]) => runCli(args, { CLEANROOM_API: stack.apiUrl, CLEANROOM_HOME: home }),
  };
}

async function loggedIn(email: string) {
  const u = user();
  const res = await u.run('login', '--email', email);
  if (res.code !== 0) throw new Error(`login failed: ${res.stderr}`);
  return u;
}

function json(res: CliResult): any {
  return JSON.parse(res.stdout);
}

/** An expected failure: one `error: CODE: ...` line, no stack trace. */
function assertFailure(t: import('ava').ExecutionContext, res: CliResult, exitCode: number, code: string) {
  t.is(res.code, exitCode, res.stderr);
  t.regex(res.stderr, new RegExp(`^error: ${code}: `, 'm'));
  t.notRegex(res.stderr, /^\s+at /m);
  t.is(res.stdout, '');
}

test('cli: login, create with two participants and flags, list --json, show, close, then show reports CLOSED', async (t) => {
  // An owner of its own: tests run concurrently and the list below must hold this session only.
  const owner = 'flow@example.com';
  const alice = user();
  const login = await alice.run('login', '--email', 'Flow@Example.com', '--json');
  t.is(login.code, 0, login.stderr);
  t.like(json(login), { api: stack.apiUrl, email: owner });
  t.true(Date.parse(json(login).expires_at) > Date.now());

  const created = await alice.run('session', 'create', '--name', 'ad overlap', '--participant', BOB, '--participant', CAROL, '--no-cross-party-joins', '--approval', 'dataset_owners', '--json');
  t.is(created.code, 0, created.stderr);
  const session = json(created);
  t.is(session.status, 'ACTIVE');
  t.is(session.owner_email, owner);
  t.deepEqual(
    session.participants.map((p: any) => p.email),
    [owner, BOB, CAROL],
  );
  t.deepEqual(session.config, { allow_cross_party_joins: false, approval_policy: 'dataset_owners' });

  const listed = await alice.run('session', 'list', '--json');
  t.is(listed.code, 0, listed.stderr);
  t.deepEqual(
    json(listed).sessions.map((s: any) => s.id),
    [session.id],
  );

  const shown = await alice.run('session', 'show', session.id);
  t.is(shown.code, 0, shown.stderr);
  t.regex(shown.stdout, new RegExp(`^id\\s+${session.id}$`, 'm'));
  t.regex(shown.stdout, /^status\s+ACTIVE$/m);

  const closed = await alice.run('session', 'close', session.id, '--json');
  t.is(closed.code, 0, closed.stderr);
  t.is(json(closed).status, 'CLOSED');

  const after = await alice.run('session', 'show', session.id, '--json');
  t.is(json(after).status, 'CLOSED');
  t.truthy(json(after).closed_at);
  t.deepEqual(json(await alice.run('session', 'list', '--status', 'ACTIVE', '--json')).sessions, []);
  t.is(json(await alice.run('session', 'list', '--status', 'CLOSED', '--json')).sessions.length, 1);
});

test('cli: human output of create and list names the session', async (t) => {
  const alice = await loggedIn('human@example.com');
  const created = await alice.run('session', 'create', '--name', 'human view', '--cross-party-joins', '--approval', 'none');
  t.is(created.code, 0, created.stderr);
  t.regex(created.stdout, /^name\s+human view$/m);
  t.regex(created.stdout, /^cross-party joins\s+allowed$/m);
  t.regex(created.stdout, /^approval\s+none$/m);
  const listed = await alice.run('session', 'list');
  t.regex(listed.stdout, /^ID\s+STATUS\s+CREATED\s+OWNER\s+NAME$/m);
  t.regex(listed.stdout, /ACTIVE .*human@example\.com\s+human view$/m);
});

test('cli: a user outside the session cannot see it: SESSION_NOT_FOUND, exit 1', async (t) => {
  const alice = await loggedIn(ALICE);
  const eve = await loggedIn(EVE);
  const { id } = json(await alice.run('session', 'create', '--name', 'private', '--participant', BOB, '--json'));
  assertFailure(t, await eve.run('session', 'show', id), 1, 'SESSION_NOT_FOUND');
  assertFailure(t, await eve.run('session', 'close', id), 1, 'SESSION_NOT_FOUND');
  t.false(json(await eve.run('session', 'list', '--json')).sessions.some((s: any) => s.id === id));
});

test('cli: a participant who is not the owner cannot close: NOT_SESSION_OWNER, exit 1', async (t) => {
  const alice = await loggedIn(ALICE);
  const bob = await loggedIn(BOB);
  const { id } = json(await alice.run('session', 'create', '--name', 'shared', '--participant', BOB, '--json'));
  t.is(json(await bob.run('session', 'show', id, '--json')).id, id);
  assertFailure(t, await bob.run('session', 'close', id), 1, 'NOT_SESSION_OWNER');
  t.is(json(await alice.run('session', 'show', id, '--json')).status, 'ACTIVE');
});

test('cli: invalid emails are refused by the API: VALIDATION_FAILED, exit 1', async (t) => {
  const alice = await loggedIn(ALICE);
  assertFailure(t, await alice.run('session', 'create', '--name', 'x', '--participant', 'not-an-email'), 1, 'VALIDATION_FAILED');
  assertFailure(t, await user().run('login', '--email', 'not-an-email'), 1, 'VALIDATION_FAILED');
});

const usageErrors: Array<[string, string[]]> = [
  ['no command', []],
  ['unknown command', ['sessions', 'list']],
  ['unknown subcommand', ['session', 'delete', 'x']],
  ['group without subcommand', ['session']],
  ['unknown flag', ['session', 'list', '--all']],
  ['missing --name', ['session', 'create', '--participant', BOB]],
  ['--name without a value', ['session', 'create', '--name']],
  ['bad --approval', ['session', 'create', '--name', 'n', '--approval', 'anyone']],
  ['bad --status', ['session', 'list', '--status', 'OPEN']],
  ['missing ID', ['session', 'show']],
  ['extra argument', ['session', 'close', 'a', 'b']],
  ['login without --email or --token', ['login']],
  ['login with both', ['login', '--email', ALICE, '--token', 'x']],
  ['token with an argument', ['token', 'x']],
];
for (const [name, args] of usageErrors) {
  test(`cli: usage error (${name}) exits 2 with a usage line`, async (t) => {
    const res = await user().run(...args);
    assertFailure(t, res, 2, 'USAGE');
    t.regex(res.stderr, /^usage: cleanroom /m);
  });
}

test('cli: --help prints usage on stdout and exits 0 for the CLI, a group and each command', async (t) => {
  const u = user();
  for (const args of [
    ['--help'],
    ['help'],
    ['session', '--help'],
    ['login', '--help'],
    ['token', '-h'],
    ['session', 'create', '--help'],
    ['session', 'list', '--help'],
    ['session', 'show', '--help'],
    ['session', 'close', '--help'],
  ]) {
    const res = await u.run(...args);
    t.is(res.code, 0, args.join(' '));
    t.regex(res.stdout, /^usage: cleanroom /, args.join(' '));
    t.is(res.stderr, '');
  }
});

test('cli: API not running: API_UNREACHABLE naming the URL, exit 4 (no answer, not a refusal)', async (t) => {
  const url = await deadUrl();
  const res = await runCli(['login', '--email', ALICE], { CLEANROOM_API: url, CLEANROOM_HOME: tempHome() });
  assertFailure(t, res, 4, 'API_UNREACHABLE');
  t.true(res.stderr.includes(`cannot reach the API at ${url}`));
});

test('cli: an insecure or malformed CLEANROOM_API is a configuration error, exit 2', async (t) => {
  for (const api of ['http://api.example.com', 'not a url', 'ftp://localhost']) {
    assertFailure(t, await runCli(['session', 'list'], { CLEANROOM_API: api, CLEANROOM_HOME: tempHome() }), 2, 'CONFIG_INVALID');
  }
});

test('cli: credentials are stored in a 0700 directory as a 0600 file holding {api, email, id_token, expires_at}', async (t) => {
  const alice = await loggedIn(ALICE);
  t.is(statSync(alice.home).mode & 0o777, 0o700);
  const file = join(alice.home, 'credentials.json');
  t.is(statSync(file).mode & 0o777, 0o600);
  const stored = JSON.parse(readFileSync(file, 'utf8'));
  t.deepEqual(Object.keys(stored).sort(), ['api', 'email', 'expires_at', 'id_token']);
  t.like(stored, { api: stack.apiUrl, email: ALICE });
});

test('cli: not logged in: NOT_LOGGED_IN, exit 1', async (t) => {
  assertFailure(t, await user().run('session', 'list'), 1, 'NOT_LOGGED_IN');
  assertFailure(t, await user().run('token'), 1, 'NOT_LOGGED_IN');
});

test('cli: token prints the stored bearer token, which the API accepts', async (t) => {
  const alice = await loggedIn(ALICE);
  const res = await alice.run('token');
  t.is(res.code, 0, res.stderr);
  const token = res.stdout.trim();
  const api = new CleanroomApi({ baseUrl: stack.apiUrl, token: async () => token });
  t.true(Array.isArray((await api.listSessions()).sessions));
  t.like(json(await alice.run('token', '--json')), { id_token: token, email: ALICE });
});

test('cli: an expired dev token is re-issued silently for the stored email', async (t) => {
  const alice = await loggedIn(ALICE);
  const file = join(alice.home, 'credentials.json');
  const stale = { ...JSON.parse(readFileSync(file, 'utf8')), expires_at: new Date(Date.now() - 1000).toISOString() };
  writeFileSync(file, JSON.stringify(stale), { mode: 0o600 });
  const res = await alice.run('token', '--json');
  t.is(res.code, 0, res.stderr);
  t.is(res.stderr, '');
  t.true(Date.parse(json(res).expires_at) > Date.now());
  t.is(json(res).email, ALICE);
  t.is(JSON.parse(readFileSync(file, 'utf8')).id_token, json(res).id_token);
  t.is((await alice.run('session', 'list', '--json')).code, 0);
});

test('cli: login --token stores a token the API accepts; a refused token is not stored', async (t) => {
  const { token } = await stack.devIdp.issue('tokenuser@example.com');
  const u = user();
  const ok = await u.run('login', '--token', token, '--json');
  t.is(ok.code, 0, ok.stderr);
  t.is(json(ok).email, 'tokenuser@example.com');
  t.is((await u.run('token')).stdout.trim(), token);

  const other = user();
  assertFailure(t, await other.run('login', '--token', `${token.slice(0, -4)}AAAA`), 1, 'UNAUTHENTICATED');
  assertFailure(t, await other.run('token'), 1, 'NOT_LOGGED_IN');
});

test('cli: against an API without the dev identity provider, login --email says sign-in is unsupported and an expired token needs a new login', async (t) => {
  const notFound = JSON.stringify({ error: { code: 'ROUTE_NOT_FOUND', message: 'no route' } });
  const server = await fakeServer((_req, res) => res.writeHead(404, { 'content-type': 'application/json' }).end(notFound));
  t.teardown(() => server.close());
  const home = tempHome();
  assertFailure(t, await runCli(['login', '--email', ALICE], { CLEANROOM_API: server.url, CLEANROOM_HOME: home }), 1, 'SIGN_IN_UNSUPPORTED');

  mkdirSync(home, { recursive: true, mode: 0o700 });
  const expired = { api: server.url, email: ALICE, id_token: 'a.b.c', expires_at: new Date(Date.now() - 1000).toISOString() };
  writeFileSync(join(home, 'credentials.json'), JSON.stringify(expired), { mode: 0o600 });
  assertFailure(t, await runCli(['token'], { CLEANROOM_API: server.url, CLEANROOM_HOME: home }), 1, 'TOKEN_EXPIRED');
});

test('cli: credentials for another API are not used', async (t) => {
  const alice = await loggedIn(ALICE);
  const res = await runCli(['session', 'list'], { CLEANROOM_API: await deadUrl(), CLEANROOM_HOME: alice.home });
  assertFailure(t, res, 1, 'NOT_LOGGED_IN');
});

test('cli: session list follows every page', async (t) => {
  const email = 'many@example.com';
  const { token } = await stack.devIdp.issue(email);
  const api = new CleanroomApi({ baseUrl: stack.apiUrl, token: async () => token });
  // More than one page of the CLI's page size (200).
  for (let i = 0; i < 205; i++) await api.createSession({ name: `s${i}` });
  const u = await loggedIn(email);
  const res = await u.run('session', 'list', '--json');
  t.is(res.code, 0, res.stderr);
  const names = json(res).sessions.map((s: any) => s.name);
  t.is(names.length, 205);
  t.is(new Set(names).size, 205);
});

test('cli: logout forgets the credentials', async (t) => {
  const alice = await loggedIn(ALICE);
  t.deepEqual(json(await alice.run('logout', '--json')), { logged_out: true });
  assertFailure(t, await alice.run('session', 'list'), 1, 'NOT_LOGGED_IN');
  t.deepEqual(json(await alice.run('logout', '--json')), { logged_out: false });
});

test('cli: a CLEANROOM_HOME that cannot be created is reported without a stack, exit 1', async (t) => {
  const file = join(homes, 'a-file');
  writeFileSync(file, '');
  const res = await runCli(['login', '--email', ALICE], { CLEANROOM_API: stack.apiUrl, CLEANROOM_HOME: join(file, 'home') });
  assertFailure(t, res, 1, 'ENOTDIR');
});
