import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { EXIT } from '../../client/cli/exit-codes.ts';
import { main } from '../../client/cli/main.ts';
import { CleanroomApi } from '../../client/sdk/api-client.ts';
import { uploadDataset } from '../../client/sdk/dataset-upload.ts';
import { fetchSessionKey } from '../../client/sdk/session-key.ts';
import { startDataStack, type DataStack } from './data-stack.ts';
import { tempHome, tempRoot } from './local-stack.ts';

// The CLI in-process against the embedded stack with the real worker as a child process: waited
// queries and their exit codes, CSV dialects and exact decimals end to end, the table-name check
// before encrypting, and upload progress on a terminal.

const ALICE = 'alice@example.com';
/**
 * `--timeout` for waits that must end in a final status: these tests are about how a query ends
 * and what the CLI then says, not about how fast it runs on a loaded machine.
 */
const UNTIL_FINAL = '86400';
const BOB = 'bob@example.com';

let stack: DataStack;
let homes: string;
test.before(async () => {
  homes = tempRoot();
  stack = await startDataStack();
});
test.after.always(async () => {
  await stack?.close();
  if (homes) rmSync(homes, { recursive: true, force: true });
});

interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

/** A user with a home of their own, logged in; `tty` says whether their stderr is a terminal. */
async function user(email: string) {
  const home = tempHome(homes);
  const run = async (args: string[], options: { tty?: boolean } = {}): Promise<Ran> => {
    let stdout = '';
    let stderr = '';
    const code = await main(
      args,
      { CLEANROOM_API: stack.apiUrl, CLEANROOM_HOME: home, TEE_SERVICE_ENDPOINT: stack.workerUrl, CLEANROOM_ALLOW_INSECURE_DEV_ATTESTATION: '1' },
      { io: { stdout: (s) => void (stdout += s), stderr: (s) => void (stderr += s) }, stderrIsTty: options.tty ?? false },
    );
    return { code, stdout, stderr };
  };
  const login = await run(['login', '--email', email]);
  if (login.code !== 0) throw new Error(`login failed: ${login.stderr}`);
  return { email, home, run };
}

function ok(t: ExecutionContext, res: Ran, what: string): Ran {
  t.is(res.code, 0, `${what}: ${res.stderr}\n${stack.workerLog().slice(-2000)}`);
  return res;
}

function failed(t: ExecutionContext, res: Ran, exitCode: number, code: string) {
  t.is(res.code, exitCode, res.stderr);
  t.regex(res.stderr, new RegExp(`^error: ${code}: `, 'm'));
  t.notRegex(res.stderr, /^\s+at /m);
}

/** A session of `owner` that runs queries without approvals, joined by its owner. */
async function soloSession(owner: Awaited<ReturnType<typeof user>>, name: string): Promise<string> {
  const created = await owner.run(['session', 'create', '--name', name, '--approval', 'none', '--json']);
  if (created.code !== 0) throw new Error(`create failed: ${created.stderr}`);
  const id = JSON.parse(created.stdout).id as string;
  const joined = await owner.run(['session', 'join', id]);
  if (joined.code !== 0) throw new Error(`join failed: ${joined.stderr}`);
  return id;
}

function file(name: string, content: string): string {
  const path = join(mkdtempSync(join(homes, 'files-')), name);
  writeFileSync(path, content);
  return path;
}

function datasetObjects(sessionId: string): string[] {
  const dir = join(stack.objectsDir, 'datasets', sessionId);
  return existsSync(dir) ? readdirSync(dir) : [];
}

/** Proposes `sql`, waits for it and returns the decrypted rows. */
async function answer(t: ExecutionContext, who: Awaited<ReturnType<typeof user>>, sessionId: string, sql: string): Promise<unknown[][]> {
  const proposed = ok(t, await who.run(['query', 'propose', sessionId, '--sql', sql, '--wait', '--timeout', UNTIL_FINAL, '--json']), `propose ${sql}`);
  const query = JSON.parse(proposed.stdout);
  t.is(query.status, 'SUCCEEDED');
  return JSON.parse(ok(t, await who.run(['result', 'get', sessionId, query.id, '--json']), 'result').stdout).rows;
}

test('cli: propose --wait exits 0 when the query SUCCEEDED and 3 with QUERY_FAILED and the fixed code when it FAILED', async (t) => {
  const alice = await user(ALICE);
  const id = await soloSession(alice, 'waits');
  const good = ok(t, await alice.run(['query', 'propose', id, '--sql', 'SELECT 40 + 2 AS answer', '--wait', '--timeout', UNTIL_FINAL]), 'good');
  t.regex(good.stdout, /^status\s+SUCCEEDED$/m);
  t.regex(good.stderr, /: SUCCEEDED$/m);

  // A table function the worker's policy refuses: the query FAILS with POLICY_VIOLATION.
  const bad = await alice.run(['query', 'propose', id, '--sql', "SELECT * FROM read_csv('/etc/passwd')", '--wait', '--timeout', UNTIL_FINAL, '--json']);
  failed(t, bad, EXIT.queryUnsuccessful, 'QUERY_FAILED');
  t.regex(bad.stderr, /FAILED with POLICY_VIOLATION: /);
  t.like(JSON.parse(bad.stdout), { status: 'FAILED', error_code: 'POLICY_VIOLATION' });
  // show --wait on the finished query says the same.
  failed(t, await alice.run(['query', 'show', id, JSON.parse(bad.stdout).id, '--wait']), EXIT.queryUnsuccessful, 'QUERY_FAILED');
});

test('cli: a semicolon CSV and a tab CSV are described by DuckDB, uploaded and queried correctly; money sums exactly', async (t) => {
  const alice = await user(ALICE);
  const id = await soloSession(alice, 'dialects');
  const semicolons = file('prices.csv', 'item;price;note\nwidget;12.50;"cheap; cheerful"\ngadget;0.10;x\ngizmo;0.20;y\n');
  const up = ok(t, await alice.run(['dataset', 'upload', id, semicolons, '--table', 'prices', '--json']), 'semicolon upload');
  const dataset = JSON.parse(up.stdout);
  t.deepEqual(dataset.csv, { delimiter: ';', quote: '"', escape: '"', header: true });
  t.deepEqual(dataset.schema, [
    { name: 'item', type: 'VARCHAR' },
    { name: 'price', type: 'DECIMAL(4,2)' },
    { name: 'note', type: 'VARCHAR' },
  ]);
  const tabs = file('orders.tsv', 'item\tqty\tday\nwidget\t3\t2024-03-01\ngadget\t10\t2024-03-02\n');
  const human = ok(t, await alice.run(['dataset', 'upload', id, tabs, '--table', 'orders', '--format', 'csv']), 'tab upload');
  t.regex(human.stdout, /^format\s+csv \(tab-separated, quotes " \(doubled\), header row\)$/m);

  // 0.10 + 0.20 is 0.30000000000000004 in DOUBLE; the DECIMAL sum is exact, as text.
  t.deepEqual(await answer(t, alice, id, "SELECT sum(price) AS total, sum(price) FILTER (WHERE item <> 'widget') AS small FROM prices"), [['12.80', '0.30']]);
  t.deepEqual(await answer(t, alice, id, 'SELECT o.item, o.qty * p.price AS cost, p.note FROM orders o JOIN prices p ON p.item = o.item ORDER BY o.item'), [
    ['gadget', '1.00', 'x'],
    ['widget', '37.50', 'cheap; cheerful'],
  ]);
});

test('cli: a table name already in the session is refused before anything is encrypted or uploaded', async (t) => {
  const alice = await user(ALICE);
  const bob = await user(BOB);
  const id = JSON.parse(ok(t, await alice.run(['session', 'create', '--name', 'clash', '--participant', BOB, '--json']), 'create').stdout).id as string;
  ok(t, await alice.run(['session', 'join', id]), 'alice join');
  ok(t, await bob.run(['session', 'join', id]), 'bob join');
  const csv = file('customers.csv', 'id,name\n1,a\n2,b\n');
  ok(t, await alice.run(['dataset', 'upload', id, csv, '--table', 'customers']), 'first upload');
  t.is(datasetObjects(id).length, 1);

  const res = await bob.run(['dataset', 'upload', id, csv, '--table', 'customers']);
  failed(t, res, EXIT.refused, 'TABLE_NAME_TAKEN');
  t.true(res.stderr.includes('pick another --table'), res.stderr);
  t.true(res.stderr.includes(ALICE), 'names the owner of the table');
  // Refused before the worker was asked for a key or a byte was encrypted: no second object.
  t.notRegex(res.stderr, /session key .* verified/);
  t.is(datasetObjects(id).length, 1);
});

test('cli: a file registered with another dialect than it is written in fails at the worker with its DATASET_* code', async (t) => {
  const alice = await user(ALICE);
  const id = await soloSession(alice, 'lying dialect');
  // The SDK with a describe function that declares semicolons for a comma file.
  const api = new CleanroomApi({ baseUrl: stack.apiUrl, token: async () => (await stack.api.devIdp.issue(ALICE)).token });
  const sessionKey = await fetchSessionKey({
    api,
    sessionId: id,
    attestation: { workerUrl: stack.workerUrl, allowedImageDigests: [], allowInsecureDev: true, acceptDevClaimedDigest: true },
  });
  const bytes = new TextEncoder().encode('a,b\n1,x\n2,y\n');
  await uploadDataset({
    api,
    sessionId: id,
    table: 'lying',
    format: 'csv',
    openFile: () => new Blob([bytes]).stream(),
    describe: async (stream) => {
      await stream.cancel();
      return {
        schema: [
          { name: 'a', type: 'INTEGER' },
          { name: 'b', type: 'VARCHAR' },
        ],
        rowCount: 2,
        bytes: bytes.byteLength,
        csv: { delimiter: ';', quote: '"', escape: '"', header: true },
      };
    },
    sessionKey,
    ownerEmail: ALICE,
  });
  const res = await alice.run(['query', 'propose', id, '--sql', 'SELECT count(*) FROM lying', '--wait', '--timeout', UNTIL_FINAL, '--json']);
  failed(t, res, EXIT.queryUnsuccessful, 'QUERY_FAILED');
  t.like(JSON.parse(res.stdout), { status: 'FAILED', error_code: 'DATASET_MALFORMED' });
  t.regex(res.stderr, /its owner uploads it again/);
});

test('cli: upload progress is drawn in place on a terminal, and never without one or with --json', async (t) => {
  const alice = await user(ALICE);
  const id = await soloSession(alice, 'progress');
  const rows = Array.from({ length: 60_000 }, (_, i) => `${i},name ${i},${(i % 1000) / 4}`);
  const csv = file('big.csv', `id,name,score\n${rows.join('\n')}\n`);

  const tty = ok(t, await alice.run(['dataset', 'upload', id, csv, '--table', 'big'], { tty: true }), 'tty upload');
  const drawn = tty.stderr.split('\r').slice(1);
  t.true(drawn.length >= 1, tty.stderr);
  for (const line of drawn) t.regex(line, /^uploading \d+(\.\d)? (B|KiB|MiB) \/ \d+(\.\d)? (B|KiB|MiB) {2}\d{1,3}% {2}/);
  // The last redraw is the whole file, then the line ends before the summary.
  t.regex(drawn.at(-1)!, /100% .*\u001b\[K\n$/);
  t.regex(tty.stdout, /^rows\s+60000$/m);

  const piped = ok(t, await alice.run(['dataset', 'upload', id, csv, '--table', 'big_piped']), 'piped upload');
  t.false(piped.stderr.includes('\r'));
  t.false(piped.stderr.includes('uploading'));
  const json = ok(t, await alice.run(['dataset', 'upload', id, csv, '--table', 'big_json', '--json'], { tty: true }), 'json upload');
  t.false(json.stderr.includes('uploading'));
  t.is(JSON.parse(json.stdout).row_count, 60_000);
});

test('cli: --delimiter and --header are CSV-only usage, checked before anything is sent', async (t) => {
  const alice = await user(ALICE);
  const id = await soloSession(alice, 'usage');
  const parquet = file('x.parquet', 'not really parquet');
  failed(t, await alice.run(['dataset', 'upload', id, parquet, '--table', 'x', '--delimiter', ';']), EXIT.usage, 'USAGE');
  failed(t, await alice.run(['dataset', 'upload', id, file('x.csv', 'a\n1\n'), '--table', 'x', '--delimiter', ':']), EXIT.usage, 'USAGE');
  t.deepEqual(datasetObjects(id), []);
});
