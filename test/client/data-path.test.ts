import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DuckDBInstance, JsonDuckDBValueConverter } from '@duckdb/node-api';
import test, { type ExecutionContext } from 'ava';
import { startDataStack, type DataStack } from './data-stack.ts';
import { runCli, tempHome, tempRoot, type CliResult } from './local-stack.ts';

// End to end through the CLI as a user runs it: two parties, each encrypts and uploads its own
// file after verifying the worker, a joined query runs in the worker, both decrypt the result.

const ALICE = 'alice@example.com';
const BOB = 'bob@example.com';
const OTHER_DIGEST = `sha256:${'cd'.repeat(32)}`;
const SQL = `SELECT c.region, COUNT(DISTINCT c.id) AS customers, COUNT(*) AS purchases, SUM(p.amount) AS total
FROM customers c JOIN purchases p ON p.customer_id = c.id
GROUP BY c.region ORDER BY c.region`;

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

/** One person with their own CLEANROOM_HOME; `env` adds to the CLI's environment. */
async function person(email: string) {
  const home = tempHome(homes);
  const run = (args: string[], env: Record<string, string> = {}) => runCli(args, { CLEANROOM_API: stack.apiUrl, CLEANROOM_HOME: home, TEE_SERVICE_ENDPOINT: stack.workerUrl, ...env });
  const login = await run(['login', '--email', email]);
  if (login.code !== 0) throw new Error(`login failed: ${login.stderr}`);
  return { email, home, run };
}

const json = (res: CliResult): any => JSON.parse(res.stdout);

function ok(t: ExecutionContext, res: CliResult, what: string): CliResult {
  t.is(res.code, 0, `${what}: ${res.stderr}\n${stack.workerLog().slice(-2000)}`);
  return res;
}

function assertFailure(t: ExecutionContext, res: CliResult, code: string) {
  t.is(res.code, 1, res.stderr);
  t.regex(res.stderr, new RegExp(`^error: ${code}: `, 'm'));
  t.notRegex(res.stderr, /^\s+at /m);
}

/** Deterministic rows (mulberry32), so each run checks the same data. */
function files(dir: string) {
  let state = 42;
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let x = Math.imul(state ^ (state >>> 15), state | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return (x ^ (x >>> 14)) >>> 0;
  };
  const regions = ['north', 'south', 'east', 'west'];
  const customers = ['id,email_hash,region', ...Array.from({ length: 300 }, (_, i) => `${i + 1},h${next().toString(16)},${regions[next() % 4]}`)];
  // Quarters are exact in binary, so the sum is the same in any order.
  const purchases = ['customer_id,amount,day', ...Array.from({ length: 700 }, () => `${(next() % 400) + 1},${(next() % 40_000) / 4},2024-0${(next() % 9) + 1}-1${next() % 9}`)];
  const customersFile = join(dir, 'customers.csv');
  const purchasesFile = join(dir, 'purchases.csv');
  writeFileSync(customersFile, `${customers.join('\n')}\n`);
  writeFileSync(purchasesFile, `${purchases.join('\n')}\n`);
  return { customersFile, purchasesFile };
}

/** The query on the plaintext, with the values as the worker writes them; `amount` as registered. */
async function expected(customersFile: string, purchasesFile: string, amountType: string) {
  const instance = await DuckDBInstance.create(':memory:');
  const connection = await instance.connect();
  try {
    await connection.run(`CREATE TABLE customers AS SELECT * FROM read_csv('${customersFile}', header = true, columns = {'id': 'INTEGER', 'email_hash': 'VARCHAR', 'region': 'VARCHAR'})`);
    await connection.run(`CREATE TABLE purchases AS SELECT * FROM read_csv('${purchasesFile}', header = true, columns = {'customer_id': 'INTEGER', 'amount': '${amountType}', 'day': 'DATE'})`);
    const reader = await connection.runAndReadAll(SQL);
    return reader.convertRows(JsonDuckDBValueConverter);
  } finally {
    connection.closeSync();
    instance.closeSync();
  }
}

function datasetObjects(sessionId: string): string[] {
  const dir = join(stack.objectsDir, 'datasets', sessionId);
  return existsSync(dir) ? readdirSync(dir) : [];
}

test('data path: two parties upload, a joined query runs in the worker, both recipients decrypt the plaintext answer', async (t) => {
  const alice = await person(ALICE);
  const bob = await person(BOB);
  const created = ok(t, await alice.run(['session', 'create', '--name', 'overlap', '--participant', BOB, '--approval', 'all_participants', '--cross-party-joins', '--json']), 'create');
  const sessionId = json(created).id as string;
  ok(t, await alice.run(['session', 'join', sessionId]), 'alice join');
  ok(t, await bob.run(['session', 'join', sessionId]), 'bob join');

  const { customersFile, purchasesFile } = files(mkdtempSync(join(homes, 'files-')));
  const up1 = ok(t, await alice.run(['dataset', 'upload', sessionId, customersFile, '--table', 'customers', '--allow-insecure-dev', '--json']), 'alice upload');
  t.regex(up1.stderr, /INSECURE DEV ATTESTATION: NOTHING IS ATTESTED/);
  t.like(json(up1), { table: 'customers', owner_email: ALICE, row_count: 300, format: 'csv' });
  t.deepEqual(json(up1).schema, [
    { name: 'id', type: 'INTEGER' },
    { name: 'email_hash', type: 'VARCHAR' },
    { name: 'region', type: 'VARCHAR' },
  ]);
  const up2 = ok(t, await bob.run(['dataset', 'upload', sessionId, purchasesFile, '--table', 'purchases', '--allow-insecure-dev']), 'bob upload');
  t.regex(up2.stdout, /^rows\s+700$/m);
  t.regex(up2.stdout, /^sha256\s+[0-9a-f]{64}$/m);

  // The control plane's object store holds ciphertext only.
  const objects = datasetObjects(sessionId);
  t.is(objects.length, 2);
  for (const name of objects) {
    const bytes = readFileSync(join(stack.objectsDir, 'datasets', sessionId, name));
    t.false(bytes.includes(Buffer.from('north')), 'no plaintext value in the stored object');
  }

  const listed = json(ok(t, await bob.run(['dataset', 'list', sessionId, '--json']), 'list'));
  t.deepEqual(listed.datasets.map((d: any) => d.table).sort(), ['customers', 'purchases']);

  const proposed = json(ok(t, await alice.run(['query', 'propose', sessionId, '--sql', SQL, '--recipient', ALICE, '--recipient', BOB, '--json']), 'propose'));
  t.is(proposed.status, 'PENDING_APPROVAL');
  ok(t, await bob.run(['query', 'approve', sessionId, proposed.id]), 'approve');
  const done = json(ok(t, await alice.run(['query', 'show', sessionId, proposed.id, '--wait', '--timeout', '120', '--json']), 'wait'));
  t.is(done.status, 'SUCCEEDED', `${done.error_code}\n${stack.workerLog().slice(-3000)}`);

  // Amounts are written with at most two decimals: registered as an exact DECIMAL, summed exactly.
  const amountType = listed.datasets.find((d: any) => d.table === 'purchases').schema[1].type;
  t.regex(amountType, /^DECIMAL\(\d+,2\)$/);
  const want = await expected(customersFile, purchasesFile, amountType);
  t.is(want.length, 4, 'every region has matches');
  for (const who of [alice, bob]) {
    const got = json(ok(t, await who.run(['result', 'get', sessionId, proposed.id, '--allow-insecure-dev', '--json']), `${who.email} result`));
    t.deepEqual(
      got.columns.map((c: any) => c.name),
      ['region', 'customers', 'purchases', 'total'],
    );
    t.deepEqual(got.rows, want, `${who.email} sees the plaintext answer`);
    t.is(got.receipt.query_id, proposed.id);
    t.deepEqual(got.receipt.inputs.map((i: any) => i.dataset_id).sort(), objects.map((o) => o.replace(/\.crds$/, '')).sort());
  }
  const csv = ok(t, await bob.run(['result', 'get', sessionId, proposed.id, '--allow-insecure-dev']), 'csv');
  t.regex(csv.stdout, /^region,customers,purchases,total\r\n/);
  t.is(csv.stdout.trimEnd().split('\r\n').length, want.length + 1);
  t.regex(csv.stderr, /^receipt verified: /m);
  const out = join(bob.home, 'result.csv');
  ok(t, await bob.run(['result', 'get', sessionId, proposed.id, '--allow-insecure-dev', '--out', out]), 'out');
  t.is(readFileSync(out, 'utf8'), csv.stdout);
  t.is(statSync(out).mode & 0o777, 0o600);
});

test('data path: a worker whose image digest is not allowed is refused before anything is uploaded', async (t) => {
  const alice = await person(ALICE);
  const sessionId = json(ok(t, await alice.run(['session', 'create', '--name', 'refused', '--participant', BOB, '--json']), 'create')).id as string;
  ok(t, await alice.run(['session', 'join', sessionId]), 'join');
  const { customersFile } = files(mkdtempSync(join(homes, 'files-')));
  const res = await alice.run(['dataset', 'upload', sessionId, customersFile, '--table', 'customers', '--allow-insecure-dev'], { CLEANROOM_WORKER_DIGESTS: OTHER_DIGEST });
  assertFailure(t, res, 'ATTESTATION_IMAGE_DIGEST');
  t.is(res.stdout, '');
  t.deepEqual(datasetObjects(sessionId), []);
  t.deepEqual(json(ok(t, await alice.run(['dataset', 'list', sessionId, '--json']), 'list')).datasets, []);
});

test('data path: without keys, or without the dev opt-in, nothing is uploaded', async (t) => {
  const alice = await person(ALICE);
  const sessionId = json(ok(t, await alice.run(['session', 'create', '--name', 'no opt-in', '--json']), 'create')).id as string;
  const { customersFile } = files(mkdtempSync(join(homes, 'files-')));
  assertFailure(t, await alice.run(['dataset', 'upload', sessionId, customersFile, '--table', 'customers', '--allow-insecure-dev']), 'KEYS_NOT_FOUND');
  ok(t, await alice.run(['session', 'join', sessionId]), 'join');
  const res = await alice.run(['dataset', 'upload', sessionId, customersFile, '--table', 'customers']);
  assertFailure(t, res, 'ATTESTATION_INSECURE_DEV');
  t.notRegex(res.stderr, /NOTHING IS ATTESTED/);
  t.deepEqual(datasetObjects(sessionId), []);
  // The environment opt-in works as the flag does.
  ok(t, await alice.run(['dataset', 'upload', sessionId, customersFile, '--table', 'customers'], { CLEANROOM_ALLOW_INSECURE_DEV_ATTESTATION: '1' }), 'env opt-in');
  t.is(datasetObjects(sessionId).length, 1);
});

test('data path: a Parquet upload is queried like a CSV one', async (t) => {
  const alice = await person(ALICE);
  const sessionId = json(ok(t, await alice.run(['session', 'create', '--name', 'parquet', '--approval', 'none', '--json']), 'create')).id as string;
  ok(t, await alice.run(['session', 'join', sessionId]), 'join');
  const file = join(mkdtempSync(join(homes, 'files-')), 'events.parquet');
  const instance = await DuckDBInstance.create(':memory:');
  const connection = await instance.connect();
  await connection.run(`COPY (SELECT i::BIGINT AS id, (i % 3)::SMALLINT AS kind, i / 8 AS score FROM range(500) t(i)) TO '${file}' (FORMAT parquet)`);
  connection.closeSync();
  instance.closeSync();
  const uploaded = json(ok(t, await alice.run(['dataset', 'upload', sessionId, file, '--table', 'events', '--allow-insecure-dev', '--json']), 'upload'));
  t.like(uploaded, { format: 'parquet', row_count: 500 });
  t.deepEqual(uploaded.schema, [
    { name: 'id', type: 'BIGINT' },
    { name: 'kind', type: 'INTEGER' },
    { name: 'score', type: 'DOUBLE' },
  ]);
  const sql = 'SELECT e.kind, COUNT(*) AS n, SUM(e.score) AS total FROM events e GROUP BY e.kind ORDER BY e.kind';
  const query = json(ok(t, await alice.run(['query', 'propose', sessionId, '--sql', sql, '--json']), 'propose'));
  const done = json(ok(t, await alice.run(['query', 'show', sessionId, query.id, '--wait', '--timeout', '120', '--json']), 'wait'));
  t.is(done.status, 'SUCCEEDED', `${done.error_code}\n${stack.workerLog().slice(-3000)}`);
  const got = json(ok(t, await alice.run(['result', 'get', sessionId, query.id, '--allow-insecure-dev', '--json']), 'result'));
  // kind k: the i < 500 with i % 3 = k; score = i / 8 (e.g. kind 0: 3 * (0 + ... + 166) / 8 = 5197.875).
  t.deepEqual(got.rows, [
    [0, '167', 5197.875],
    [1, '167', 5218.75],
    [2, '166', 5177.125],
  ]);
});
