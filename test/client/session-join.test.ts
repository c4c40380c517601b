import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { CleanroomApi } from '../../client/sdk/api-client.ts';
import { fakeServer, localStack, runCli, tempHome as homeUnder, tempRoot, type CliResult } from './local-stack.ts';

const ALICE = 'alice@example.com';
const BOB = 'bob@example.com';
const EVE = 'eve@example.com';

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

function user() {
  const home = homeUnder(homes);
  return { home, run: (...args: string[]) => runCli(args, { CLEANROOM_API: stack.apiUrl, CLEANROOM_HOME: home }) };
}

async function loggedIn(email: string, u = user()) {
  const res = await u.run('login', '--email', email);
  if (res.code !== 0) throw new Error(`login failed: ${res.stderr}`);
  return u;
}

const json = (res: CliResult): any => JSON.parse(res.stdout);

function assertFailure(t: ExecutionContext, res: CliResult, exitCode: number, code: string) {
  t.is(res.code, exitCode, res.stderr);
  t.regex(res.stderr, new RegExp(`^error: ${code}: `, 'm'));
  t.notRegex(res.stderr, /^\s+at /m);
}

async function sessionWith(...participants: string[]): Promise<string> {
  const { token } = await stack.devIdp.issue(ALICE);
  const api = new CleanroomApi({ baseUrl: stack.apiUrl, token: async () => token });
  return (await api.createSession({ name: 'join test', participant_emails: participants })).id;
}

async function participantKeys(sessionId: string, email: string) {
  const { token } = await stack.devIdp.issue(ALICE);
  const api = new CleanroomApi({ baseUrl: stack.apiUrl, token: async () => token });
  return (await api.getSession(sessionId)).participants.find((p) => p.email === email)?.keys ?? null;
}

test('session join: makes keys once in a 0700 keys/ dir as a 0600 file of private JWKs, registers their public halves; joining again re-registers the same keys', async (t) => {
  const id = await sessionWith(BOB);
  const alice = await loggedIn(ALICE);
  const first = await alice.run('session', 'join', id, '--json');
  t.is(first.code, 0, first.stderr);
  const joined = json(first);
  t.like(joined, { session_id: id, email: ALICE, created: true, keys_file: join(alice.home, 'keys', `${id}.json`) });

  t.is(statSync(join(alice.home, 'keys')).mode & 0o777, 0o700);
  t.is(statSync(joined.keys_file).mode & 0o777, 0o600);
  const stored = JSON.parse(readFileSync(joined.keys_file, 'utf8'));
  t.like(stored, { v: 1, api: stack.apiUrl, email: ALICE, session_id: id });
  t.is(typeof stored.signing_jwk.d, 'string');
  t.is(typeof stored.encryption_jwk.d, 'string');

  const registered = await participantKeys(id, ALICE);
  t.like(registered, { signing_kid: joined.signing_kid, encryption_kid: joined.encryption_kid });

  const again = await alice.run('session', 'join', id, '--json');
  t.is(again.code, 0, again.stderr);
  t.like(json(again), { created: false, signing_kid: joined.signing_kid, encryption_kid: joined.encryption_kid });
  t.deepEqual(JSON.parse(readFileSync(joined.keys_file, 'utf8')), stored, 'the key file is not rewritten');
  t.like(await participantKeys(id, ALICE), { signing_kid: joined.signing_kid });

  // Another participant gets keys of their own.
  const bob = await loggedIn(BOB);
  const bobJoined = await bob.run('session', 'join', id);
  t.is(bobJoined.code, 0, bobJoined.stderr);
  t.regex(bobJoined.stdout, /^participant\s+bob@example\.com$/m);
  const bobKeys = await participantKeys(id, BOB);
  t.truthy(bobKeys);
  t.not(bobKeys!.signing_kid, joined.signing_kid);
});

test('session join: a session the user is not in is SESSION_NOT_FOUND and no key is made', async (t) => {
  const id = await sessionWith(BOB);
  const eve = await loggedIn(EVE);
  assertFailure(t, await eve.run('session', 'join', id), 1, 'SESSION_NOT_FOUND');
  t.false(existsSync(join(eve.home, 'keys', `${id}.json`)));
  assertFailure(t, await eve.run('session', 'join', '../etc'), 1, 'VALIDATION_FAILED');
});

test("session join: another identity's or a damaged key file is KEYS_INVALID and is left alone", async (t) => {
  const id = await sessionWith(BOB);
  const shared = await loggedIn(ALICE);
  t.is((await shared.run('session', 'join', id)).code, 0);
  const file = join(shared.home, 'keys', `${id}.json`);
  const before = readFileSync(file, 'utf8');
  await loggedIn(BOB, shared);
  assertFailure(t, await shared.run('session', 'join', id), 1, 'KEYS_INVALID');
  t.is(readFileSync(file, 'utf8'), before);

  const damaged = await loggedIn(ALICE);
  mkdirSync(join(damaged.home, 'keys'), { recursive: true, mode: 0o700 });
  writeFileSync(join(damaged.home, 'keys', `${id}.json`), '{"v":1}', { mode: 0o600 });
  assertFailure(t, await damaged.run('session', 'join', id), 1, 'KEYS_INVALID');
});

test('session join: without a dev identity provider the binding token cannot be had: SIGN_IN_UNSUPPORTED, no registration', async (t) => {
  const id = 'abc';
  let registered = false;
  const session = {
    id,
    name: 'n',
    owner_email: ALICE,
    participants: [{ email: ALICE, role: 'owner', added_at: 'x', keys: null }],
    config: { allow_cross_party_joins: false, approval_policy: 'all_participants' },
    status: 'ACTIVE',
    created_at: 'x',
    updated_at: 'x',
    closed_at: null,
  };
  const server = await fakeServer((req, res) => {
    if (req.method === 'GET' && req.url === `/api/tee/sessions/${id}`) return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(session));
    if (req.method === 'PUT') registered = true;
    res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { code: 'ROUTE_NOT_FOUND', message: 'no route' } }));
  });
  t.teardown(() => server.close());
  const home = homeUnder(homes);
  mkdirSync(home, { recursive: true, mode: 0o700 });
  const credentials = { api: server.url, email: ALICE, id_token: 'a.b.c', expires_at: new Date(Date.now() + 3_600_000).toISOString() };
  writeFileSync(join(home, 'credentials.json'), JSON.stringify(credentials), { mode: 0o600 });
  assertFailure(t, await runCli(['session', 'join', id], { CLEANROOM_API: server.url, CLEANROOM_HOME: home }), 1, 'SIGN_IN_UNSUPPORTED');
  t.false(registered);
});

test('result get before session join: KEYS_NOT_FOUND', async (t) => {
  const id = await sessionWith(BOB);
  const bob = await loggedIn(BOB);
  assertFailure(t, await bob.run('result', 'get', id, crypto.randomUUID()), 1, 'KEYS_NOT_FOUND');
});

const usageErrors: Array<[string, string[]]> = [
  ['upload without --table', ['dataset', 'upload', 's', 'f.csv']],
  ['upload with a bad table name', ['dataset', 'upload', 's', 'f.csv', '--table', 'Sales']],
  ['upload with a reserved table name', ['dataset', 'upload', 's', 'f.csv', '--table', 'duckdb_settings']],
  ['upload of an unknown extension', ['dataset', 'upload', 's', 'f.txt', '--table', 'sales']],
  ['upload with a bad --format', ['dataset', 'upload', 's', 'f.csv', '--table', 'sales', '--format', 'json']],
  ['upload with --rule (not supported yet)', ['dataset', 'upload', 's', 'f.csv', '--table', 'sales', '--rule', 'rule.json']],
  ['upload with a bad --expect-digest', ['dataset', 'upload', 's', 'f.csv', '--table', 'sales', '--expect-digest', 'sha256:12']],
  ['upload without FILE', ['dataset', 'upload', 's', '--table', 'sales']],
  ['list without SESSION', ['dataset', 'list']],
  ['result get without QUERY', ['result', 'get', 's']],
  ['join without ID', ['session', 'join']],
];
for (const [name, args] of usageErrors) {
  test(`cli: usage error (${name}) exits 2 with a usage line`, async (t) => {
    const res = await user().run(...args);
    assertFailure(t, res, 2, 'USAGE');
    t.regex(res.stderr, /^usage: cleanroom /m);
  });
}

test('cli: --help for the data path commands', async (t) => {
  const u = user();
  for (const args of [
    ['session', 'join', '--help'],
    ['dataset', '--help'],
    ['dataset', 'upload', '--help'],
    ['dataset', 'list', '--help'],
    ['result', 'get', '--help'],
  ]) {
    const res = await u.run(...args);
    t.is(res.code, 0, args.join(' '));
    t.regex(res.stdout, /^usage: cleanroom /, args.join(' '));
  }
  const upload = await u.run('dataset', 'upload', '--help');
  t.regex(upload.stdout, /--rule FILE\s+an analysis rule: NOT SUPPORTED YET/);
  t.regex(upload.stdout, /--allow-insecure-dev\s+WARNING/);
});

test('cli: uploading a file that is not there is ENOENT before anything is asked of the API', async (t) => {
  const alice = await loggedIn(ALICE);
  assertFailure(t, await alice.run('dataset', 'upload', 'abc', join(alice.home, 'missing.csv'), '--table', 'sales'), 1, 'ENOENT');
});
