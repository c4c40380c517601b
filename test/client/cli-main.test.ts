import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { main, type MainOptions } from '../../client/cli/main.ts';
import { COMMANDS } from '../../client/cli/commands/index.ts';
import { EXIT } from '../../client/cli/exit-codes.ts';
import { auditHeadPath } from '../../client/cli/audit-heads.ts';
import { CleanroomApi } from '../../client/sdk/api-client.ts';
import { nextAuditEntry } from '../../protocol/audit.ts';
import { registerTestKeys } from '../helpers/participant-keys.ts';
import { deadUrl, fakeServer, localStack, tempHome, tempRoot } from './local-stack.ts';

// The CLI through its composition root, in-process against the real embedded stack: exit codes,
// --version, help examples, and the participant and audit commands.

const ALICE = 'alice@example.com';
const BOB = 'bob@example.com';
const CAROL = 'carol@example.com';
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

interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `main` with captured output; `api` defaults to the stack's. */
async function run(home: string, args: string[], options: { api?: string; main?: MainOptions } = {}): Promise<Ran> {
  let stdout = '';
  let stderr = '';
  const code = await main(
    args,
    { CLEANROOM_API: options.api ?? stack.apiUrl, CLEANROOM_HOME: home },
    { io: { stdout: (s) => void (stdout += s), stderr: (s) => void (stderr += s) }, ...options.main },
  );
  return { code, stdout, stderr };
}

async function user(email: string) {
  const home = tempHome(homes);
  const login = await run(home, ['login', '--email', email]);
  if (login.code !== 0) throw new Error(`login failed: ${login.stderr}`);
  return { home, run: (...args: string[]) => run(home, args) };
}

function as(email: string): CleanroomApi {
  return new CleanroomApi({ baseUrl: stack.apiUrl, token: async () => (await stack.devIdp.issue(email)).token });
}

/** A session of alice's (with `participants`); alice registers keys, so she may receive results. */
async function session(name: string, options: { participants?: string[]; approval?: 'none' | 'all_participants' } = {}): Promise<string> {
  const created = await as(ALICE).createSession({ name, participant_emails: options.participants ?? [], approval_policy: options.approval ?? 'all_participants' });
  await registerTestKeys({ apiUrl: stack.apiUrl, idp: stack.devIdp, sessionId: created.id, email: ALICE });
  return created.id;
}

function failed(t: ExecutionContext, res: Ran, exitCode: number, code: string) {
  t.is(res.code, exitCode, res.stderr);
  t.regex(res.stderr, new RegExp(`^error: ${code}: `, 'm'));
  t.notRegex(res.stderr, /^\s+at /m);
}

// --- version, help -------------------------------------------------------------------------------

test('cli --version prints the package version and the Node running it, exit 0', async (t) => {
  const manifest = JSON.parse(readFileSync(join(import.meta.dirname, '../../package.json'), 'utf8'));
  for (const flag of ['--version', '-V']) {
    const res = await run(tempHome(homes), [flag]);
    t.is(res.code, EXIT.ok);
    t.is(res.stdout, `cleanroom ${manifest.version} (node ${process.versions.node})\n`);
    t.is(res.stderr, '');
  }
});

test('cli --help lists every command and the exit code table', async (t) => {
  const res = await run(tempHome(homes), ['--help']);
  t.is(res.code, 0);
  for (const command of COMMANDS) t.true(res.stdout.includes(`  ${command.path.join(' ')} `), command.path.join(' '));
  t.regex(res.stdout, /^Exit codes:$/m);
  for (const code of Object.values(EXIT)) t.regex(res.stdout, new RegExp(`^  ${code}  \\S`, 'm'));
});

test('cli: every command has an Examples block in its --help, each example a cleanroom command of its own', async (t) => {
  for (const command of COMMANDS) {
    const res = await run(tempHome(homes), [...command.path, '--help']);
    const name = command.path.join(' ');
    t.is(res.code, 0, name);
    const block = res.stdout.split('\nExamples:\n')[1];
    t.truthy(block, `${name} has examples`);
    const lines = block!.trimEnd().split('\n');
    t.true(lines.length >= 1, name);
    // Each example names this very command (`token` is shown inside the curl line that uses it).
    for (const line of lines) t.true(line.includes(`cleanroom ${name}`), `${name}: ${line}`);
  }
});

// --- exit codes ----------------------------------------------------------------------------------

test('cli exit codes: a refusal of the API is 1, a usage mistake 2', async (t) => {
  const eve = await user(EVE);
  const { id } = await as(ALICE).createSession({ name: 'private' });
  failed(t, await eve.run('session', 'show', id), EXIT.refused, 'SESSION_NOT_FOUND');
  failed(t, await eve.run('session', 'show'), EXIT.usage, 'USAGE');
  failed(t, await run(tempHome(homes), ['session', 'list'], { api: 'http://api.example.com' }), EXIT.usage, 'CONFIG_INVALID');
});

test('cli exit codes: nothing listening is 4 (API_UNREACHABLE), and so is a 5xx answer of the API', async (t) => {
  failed(t, await run(tempHome(homes), ['login', '--email', ALICE], { api: await deadUrl() }), EXIT.unavailable, 'API_UNREACHABLE');

  const body = JSON.stringify({ error: { code: 'STORE_UNAVAILABLE', message: 'the store is not answering' } });
  const server = await fakeServer((_req, res) => res.writeHead(503, { 'content-type': 'application/json', 'retry-after': '7' }).end(body));
  t.teardown(() => server.close());
  const { token } = await stack.devIdp.issue(ALICE);
  const home = tempHome(homes);
  // A token stored for the fake API (login --token checks it with one call, which answers 503).
  failed(t, await run(home, ['login', '--token', token], { api: server.url }), EXIT.unavailable, 'STORE_UNAVAILABLE');
  const res = await run(home, ['login', '--token', token], { api: server.url });
  t.regex(res.stderr, /\(retry in 7 s\)/);
});

test('cli exit codes: show --wait on a REJECTED query prints it and exits 3 with QUERY_REJECTED naming who rejected', async (t) => {
  const alice = await user(ALICE);
  const id = await session('reject', { participants: [BOB] });
  const query = await as(ALICE).proposeQuery(id, { sql: 'SELECT 1' });
  await as(BOB).rejectQuery(id, query.id);
  const res = await alice.run('query', 'show', id, query.id, '--wait', '--json');
  failed(t, res, EXIT.queryUnsuccessful, 'QUERY_REJECTED');
  t.regex(res.stderr, new RegExp(`rejected by ${BOB}`));
  t.is(JSON.parse(res.stdout).status, 'REJECTED');
});

test('cli exit codes: show --wait on a CANCELLED query exits 3 with QUERY_CANCELLED', async (t) => {
  const alice = await user(ALICE);
  const id = await session('cancel', { participants: [BOB] });
  const query = await as(ALICE).proposeQuery(id, { sql: 'SELECT 1' });
  await as(ALICE).cancelQuery(id, query.id);
  const res = await alice.run('query', 'show', id, query.id, '--wait');
  failed(t, res, EXIT.queryUnsuccessful, 'QUERY_CANCELLED');
  t.regex(res.stdout, /^status\s+CANCELLED$/m);
});

test('cli exit codes: propose --wait that runs out of time exits 5, naming the approver who has not decided and their command', async (t) => {
  const alice = await user(ALICE);
  const id = await session('pending', { participants: [BOB] });
  const res = await alice.run('query', 'propose', id, '--sql', 'SELECT 1', '--wait', '--timeout', '1');
  failed(t, res, EXIT.waitTimeout, 'WAIT_TIMEOUT');
  const [query] = (await as(ALICE).listQueries(id)).queries;
  t.is(query!.status, 'PENDING_APPROVAL', 'the query was proposed');
  t.true(res.stderr.includes(`waiting for ${BOB}: they run \`cleanroom query approve ${id} ${query!.id}\``), res.stderr);
  t.is(res.stdout, '');
});

test('cli: propose --timeout without --wait is a usage error and proposes nothing', async (t) => {
  const alice = await user(ALICE);
  const session = await as(ALICE).createSession({ name: 'usage' });
  failed(t, await alice.run('query', 'propose', session.id, '--sql', 'SELECT 1', '--timeout', '5'), EXIT.usage, 'USAGE');
  t.deepEqual((await as(ALICE).listQueries(session.id)).queries, []);
});

// --- refusals name the next step -----------------------------------------------------------------

test('cli: a recipient who has not joined is RECIPIENT_KEY_MISSING, and the message names the command that fixes it', async (t) => {
  const alice = await user(ALICE);
  const { id } = await as(ALICE).createSession({ name: 'tour', approval_policy: 'none' });
  const res = await alice.run('query', 'propose', id, '--sql', 'SELECT 40 + 2 AS answer');
  failed(t, res, EXIT.refused, 'RECIPIENT_KEY_MISSING');
  t.true(res.stderr.includes(`cleanroom session join ${id}`), res.stderr);
  // A recipient other than the proposer: the message names them and the same command.
  await registerTestKeys({ apiUrl: stack.apiUrl, idp: stack.devIdp, sessionId: id, email: ALICE });
  await as(ALICE).addParticipant(id, BOB);
  const other = await alice.run('query', 'propose', id, '--sql', 'SELECT 1', '--recipient', BOB);
  failed(t, other, EXIT.refused, 'RECIPIENT_KEY_MISSING');
  t.true(other.stderr.includes(`${BOB} has not joined`) && other.stderr.includes(`cleanroom session join ${id}`), other.stderr);
});

test('api refusals with a next step name it: uploading without keys, a result not ready yet or never', async (t) => {
  const id = await session('next steps', { participants: [BOB] });
  const noKeys = await t.throwsAsync(as(BOB).createUpload(id, { dataset_id: crypto.randomUUID(), ciphertext_bytes: 100 }), { code: 'FORBIDDEN' });
  t.true(noKeys.message.includes(`cleanroom session join ${id}`), noKeys.message);
  const query = await as(ALICE).proposeQuery(id, { sql: 'SELECT 1' });
  const early = await t.throwsAsync(as(ALICE).getSealedResult(id, query.id), { code: 'RESULT_NOT_READY' });
  t.true(early.message.includes(`cleanroom query show ${id} ${query.id} --wait`), early.message);
  await as(ALICE).cancelQuery(id, query.id);
  const ended = await t.throwsAsync(as(ALICE).getSealedResult(id, query.id), { code: 'RESULT_NOT_READY' });
  t.regex(ended.message, /CANCELLED: it has no result/);
});

// --- participants ----------------------------------------------------------------------------------

test('cli participant add and remove: the owner changes who takes part; others are refused', async (t) => {
  const alice = await user(ALICE);
  const bob = await user(BOB);
  const session = await as(ALICE).createSession({ name: 'people', participant_emails: [BOB] });

  const added = await alice.run('participant', 'add', session.id, 'Carol@Example.com', '--json');
  t.is(added.code, 0, added.stderr);
  t.deepEqual(
    JSON.parse(added.stdout).participants.map((p: { email: string }) => p.email),
    [ALICE, BOB, CAROL],
  );
  const human = await alice.run('participant', 'add', session.id, 'dave@example.com');
  t.is(human.code, 0, human.stderr);
  t.regex(human.stdout, /^participants\s+.*dave@example\.com$/m);
  t.true(human.stderr.includes(`cleanroom session join ${session.id}`));

  failed(t, await alice.run('participant', 'add', session.id, CAROL), EXIT.refused, 'PARTICIPANT_EXISTS');
  const notOwner = await bob.run('participant', 'add', session.id, EVE);
  failed(t, notOwner, EXIT.refused, 'NOT_SESSION_OWNER');
  t.true(notOwner.stderr.includes(`ask ${ALICE}`), notOwner.stderr);
  failed(t, await alice.run('participant', 'add', session.id, 'not-an-email'), EXIT.refused, 'VALIDATION_FAILED');

  const removed = await alice.run('participant', 'remove', session.id, CAROL, '--json');
  t.is(removed.code, 0, removed.stderr);
  t.false(JSON.parse(removed.stdout).participants.some((p: { email: string }) => p.email === CAROL));
  const gone = await alice.run('participant', 'remove', session.id, CAROL);
  failed(t, gone, EXIT.refused, 'PARTICIPANT_NOT_FOUND');
  t.true(gone.stderr.includes(`cleanroom session show ${session.id}`), gone.stderr);
  failed(t, await alice.run('participant', 'remove', session.id, ALICE), EXIT.refused, 'OWNER_CANNOT_LEAVE');
  failed(t, await alice.run('participant', 'remove', session.id), EXIT.usage, 'USAGE');
  t.deepEqual(
    (await as(ALICE).getSession(session.id)).participants.map((p) => p.email),
    [ALICE, BOB, 'dave@example.com'],
  );
});

// --- audit -------------------------------------------------------------------------------------------

test('cli audit: prints every entry of the chain, verified, and --json carries entries and head', async (t) => {
  const alice = await user(ALICE);
  const id = await session('audited', { participants: [BOB] });
  await as(ALICE).addParticipant(id, CAROL);
  await as(ALICE).removeParticipant(id, CAROL);
  const query = await as(ALICE).proposeQuery(id, { sql: 'SELECT 1' });
  await as(ALICE).cancelQuery(id, query.id);

  const res = await alice.run('audit', id);
  t.is(res.code, 0, res.stderr);
  t.regex(res.stdout, /^SEQ\s+AT\s+ACTOR\s+ACTION\s+DETAILS$/m);
  const actions = res.stdout
    .split('\n')
    .slice(1, -2)
    .map((line) => line.split(/\s+/)[3]);
  t.deepEqual(actions, ['session.created', 'participant.keys_registered', 'participant.added', 'participant.removed', 'query.proposed', 'query.cancelled']);
  t.regex(res.stdout, /^chain verified: 6 entries, head 6 [0-9a-f]{64}$/m);

  const json = JSON.parse((await alice.run('audit', id, '--json')).stdout);
  t.is(json.verified, true);
  t.is(json.entries.length, 6);
  t.deepEqual(json.head, { seq: 6, hash: json.entries[5].hash });
});

test('cli audit: more entries than one page are all read and verified', async (t) => {
  const alice = await user(ALICE);
  const session = await as(ALICE).createSession({ name: 'long log' });
  // More than one page of 200: each add and remove is an entry.
  for (let i = 0; i < 103; i++) {
    await as(ALICE).addParticipant(session.id, BOB);
    await as(ALICE).removeParticipant(session.id, BOB);
  }
  const json = JSON.parse((await alice.run('audit', session.id, '--json')).stdout);
  t.is(json.entries.length, 207);
  t.deepEqual(
    json.entries.map((e: { seq: number }) => e.seq),
    Array.from({ length: 207 }, (_, i) => i + 1),
  );
  t.is(json.head.seq, 207);
});

/** A proxy to the real API that passes `transform` the audit answers' JSON. */
async function auditProxy(t: ExecutionContext, transform: (page: any) => unknown) {
  const server = await fakeServer((req, res) => {
    void (async () => {
      const upstream = await fetch(`${stack.apiUrl}${req.url}`, { method: req.method, headers: { authorization: req.headers.authorization ?? '' } });
      let text = await upstream.text();
      if (/\/audit(\?|$)/.test(req.url ?? '') && upstream.ok) text = JSON.stringify(await transform(JSON.parse(text)));
      res.writeHead(upstream.status, { 'content-type': 'application/json' }).end(text);
    })();
  });
  t.teardown(() => server.close());
  return server.url;
}

test('cli audit: a tampered entry, a dropped entry or a head past the served entries is AUDIT_CHAIN_BROKEN, exit 1, nothing printed', async (t) => {
  const session = await as(ALICE).createSession({ name: 'tampered', participant_emails: [BOB] });
  await as(ALICE).addParticipant(session.id, CAROL);
  const { token } = await stack.devIdp.issue(ALICE);
  const cases: Array<[string, (page: any) => any]> = [
    ['a changed detail', (page) => ({ ...page, entries: page.entries.map((e: any) => (e.seq === 2 ? { ...e, details: { ...e.details, email: EVE } } : e)) })],
    ['a dropped middle entry', (page) => ({ ...page, entries: page.entries.filter((e: any) => e.seq !== 1) })],
    ['the last entry withheld', (page) => ({ ...page, entries: page.entries.slice(0, -1) })],
  ];
  for (const [name, transform] of cases) {
    const api = await auditProxy(t, transform);
    const home = tempHome(homes);
    t.is((await run(home, ['login', '--token', token], { api })).code, 0);
    const res = await run(home, ['audit', session.id], { api });
    failed(t, res, EXIT.refused, 'AUDIT_CHAIN_BROKEN');
    t.is(res.stdout, '', name);
  }
});

/** The same chain with entry `seq` onwards changed by `change` and re-hashed: consistent in itself. */
async function rechained(page: any, from: number, change: (entry: any) => any): Promise<any> {
  const entries: any[] = [];
  let head: { seq: number; hash: string } | null = null;
  for (const entry of page.entries) {
    if (entry.seq < from) {
      entries.push(entry);
      head = { seq: entry.seq, hash: entry.hash };
      continue;
    }
    const { session_id, at, actor, action, details } = change(entry);
    const next = await nextAuditEntry(head, { session_id, at, actor, action, details });
    entries.push(next);
    head = { seq: next.seq, hash: next.hash };
  }
  return { ...page, entries, head };
}

test('cli audit: a chain rewritten or cut after this CLI saw its head is refused, though it is consistent in itself', async (t) => {
  const alice = await user(ALICE);
  const session = await as(ALICE).createSession({ name: 'rewritten' });
  await as(ALICE).addParticipant(session.id, BOB);
  t.is((await alice.run('audit', session.id)).code, 0);
  t.like(JSON.parse(readFileSync(auditHeadPath(alice.home, session.id), 'utf8')), { session_id: session.id, seq: 2 });

  // Still on the chain after more entries: accepted, and the new head is kept.
  await as(ALICE).addParticipant(session.id, CAROL);
  const grown = await alice.run('audit', session.id);
  t.is(grown.code, 0, grown.stderr);
  t.regex(grown.stdout, /still holds entry 2 seen before/);
  t.is(JSON.parse(readFileSync(auditHeadPath(alice.home, session.id), 'utf8')).seq, 3);

  // The API serves a history where bob was never added, re-hashed so every link holds.
  const { token } = await stack.devIdp.issue(ALICE);
  const rewritten = await auditProxy(t, (page) => rechained(page, 2, (e) => (e.seq === 2 ? { ...e, details: { ...e.details, email: EVE } } : e)));
  t.is((await run(alice.home, ['login', '--token', token], { api: rewritten })).code, 0);
  const refused = await run(alice.home, ['audit', session.id], { api: rewritten });
  failed(t, refused, EXIT.refused, 'AUDIT_CHAIN_BROKEN');
  t.is(refused.stdout, '');
  t.regex(refused.stderr, /entry 3 is the head this CLI saw before/);

  // A history cut back to its first entry (consistent, head included) is refused too.
  const cut = await auditProxy(t, (page) => ({ ...page, entries: page.entries.slice(0, 1), head: { seq: 1, hash: page.entries[0].hash }, next_after_seq: null }));
  t.is((await run(alice.home, ['login', '--token', token], { api: cut })).code, 0);
  failed(t, await run(alice.home, ['audit', session.id], { api: cut }), EXIT.refused, 'AUDIT_CHAIN_BROKEN');

  // A home that never saw this session's log accepts the rewritten one: the check is only as good as what was seen.
  const fresh = tempHome(homes);
  t.is((await run(fresh, ['login', '--token', token], { api: rewritten })).code, 0);
  t.is((await run(fresh, ['audit', session.id], { api: rewritten })).code, EXIT.ok);
});

test('cli audit: someone outside the session gets SESSION_NOT_FOUND', async (t) => {
  const eve = await user(EVE);
  const session = await as(ALICE).createSession({ name: 'closed to eve' });
  failed(t, await eve.run('audit', session.id), EXIT.refused, 'SESSION_NOT_FOUND');
});
