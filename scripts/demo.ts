import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DuckDBInstance, JsonDuckDBValueConverter } from '@duckdb/node-api';
import { main } from '../client/cli/main.ts';

/**
 * `npm run demo`: the confidential data path end to end against the running embedded stack
 * (`npm start`: API on :3000, worker on :8080; CLEANROOM_API and TEE_SERVICE_ENDPOINT override).
 * Two parties, each with its own CLEANROOM_HOME, drive the real CLI in this process: alice owns a
 * session with bob, both register keys, each encrypts and uploads a CSV of its own after
 * verifying the worker, alice proposes a join-and-aggregate query, bob approves, both decrypt the
 * result. The demo then runs the same query on the plaintext with DuckDB here and exits 1 with a
 * diff unless the answers are equal.
 *
 * The embedded stack's worker has no TEE: its attestation comes from the dev attester, so every
 * command that trusts it needs --allow-insecure-dev and prints a warning saying nothing is attested.
 */

const API = process.env.CLEANROOM_API || 'http://localhost:3000';
const WORKER = process.env.TEE_SERVICE_ENDPOINT || 'http://localhost:8080';
const ALICE = 'alice@example.com';
const BOB = 'bob@example.com';
const ID_BASE = 7_000_000_000; // customer ids past 32 bits: BIGINT
const SQL = `SELECT c.region, COUNT(DISTINCT c.id) AS customers, SUM(p.amount) AS total_amount
FROM customers c JOIN purchases p ON p.customer_id = c.id
GROUP BY c.region
ORDER BY c.region`;

interface Party {
  name: string;
  email: string;
  home: string;
}

const work = mkdtempSync(join(tmpdir(), 'cleanroom-demo-'));

function say(text: string): void {
  process.stdout.write(`${text}\n`);
}

function indent(text: string): string {
  return text
    .trimEnd()
    .split('\n')
    .map((line) => `    ${line}`)
    .join('\n');
}

/** One CLI command as `party`, in this process; any failure ends the demo with the CLI's message. */
async function cli(party: Party, args: string[], options: { show?: boolean } = {}): Promise<string> {
  say(`\n[${party.name}] cleanroom ${args.map((a) => (/[\s\n]/.test(a) ? JSON.stringify(a) : a)).join(' ')}`);
  let stdout = '';
  let stderr = '';
  const env: Record<string, string | undefined> = {
    CLEANROOM_API: API,
    CLEANROOM_HOME: party.home,
    TEE_SERVICE_ENDPOINT: WORKER,
    CLEANROOM_WORKER_DIGESTS: process.env.CLEANROOM_WORKER_DIGESTS,
  };
  // Output is collected and shown after each command, so no progress line is drawn.
  const code = await main(args, env, { io: { stdout: (t) => void (stdout += t), stderr: (t) => void (stderr += t) }, stderrIsTty: false });
  if (stderr !== '') process.stderr.write(`${indent(stderr)}\n`);
  if (code !== 0) fail(`the command failed (exit ${code})`);
  if (options.show !== false && stdout !== '' && !args.includes('--json')) say(indent(stdout));
  return stdout;
}

function fail(message: string): never {
  process.stderr.write(`\ndemo FAILED: ${message}\n`);
  cleanUp();
  process.exit(1);
}

function cleanUp(): void {
  rmSync(work, { recursive: true, force: true });
}

/** A deterministic generator (mulberry32), so every run uploads the same data: 32-bit unsigned integers. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let x = Math.imul(state ^ (state >>> 15), state | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return (x ^ (x >>> 14)) >>> 0;
  };
}

/** alice's customers: 2,000 rows of (id BIGINT, email_hash VARCHAR, region VARCHAR). */
function customersCsv(): string {
  const next = random(20240601);
  const regions = ['north', 'south', 'east', 'west', 'central'];
  const lines = ['id,email_hash,region'];
  for (let i = 1; i <= 2000; i++) lines.push(`${ID_BASE + i},${next().toString(16).padStart(8, '0')}${next().toString(16).padStart(8, '0')},${regions[next() % regions.length]}`);
  return `${lines.join('\n')}\n`;
}

/** bob's purchases: 5,000 rows of (customer_id, amount, day); amounts have cents, so they are an exact DECIMAL; ids overlap alice's in part. */
function purchasesCsv(): string {
  const next = random(777);
  const lines = ['customer_id,amount,day'];
  for (let i = 0; i < 5000; i++) {
    // Ids 1..2600: about three in four are alice's customers. Amounts in quarters of a unit,
    // written with up to two decimals: the CLI declares them DECIMAL, and their sum is exact.
    const id = ID_BASE + (next() % 2600) + 1;
    const amount = (next() % 40_000) / 4;
    const day = new Date(Date.UTC(2024, 0, 1) + (next() % 366) * 86_400_000).toISOString().slice(0, 10);
    lines.push(`${id},${amount},${day}`);
  }
  return `${lines.join('\n')}\n`;
}

/** The query on the plaintext, here, with values written as the worker writes them; `types` as registered. */
async function plaintextAnswer(customers: string, purchases: string, types: Record<string, string>): Promise<unknown[][]> {
  const instance = await DuckDBInstance.create(':memory:');
  const connection = await instance.connect();
  try {
    const load = async (table: string, file: string, columns: string) => {
      const prepared = await connection.prepare(`CREATE TABLE ${table} AS SELECT * FROM read_csv($1, header = true, auto_detect = false, columns = ${columns})`);
      prepared.bindVarchar(1, file);
      await prepared.run();
    };
    const columns = (names: string[]) => `{${names.map((name) => `'${name}': '${types[name]}'`).join(', ')}}`;
    await load('customers', customers, columns(['id', 'email_hash', 'region']));
    await load('purchases', purchases, columns(['customer_id', 'amount', 'day']));
    return (await connection.runAndReadAll(SQL)).convertRows(JsonDuckDBValueConverter);
  } finally {
    connection.closeSync();
    instance.closeSync();
  }
}

function table(columns: string[], rows: unknown[][]): string {
  const cells = [columns, ...rows.map((r) => r.map((v) => (v === null ? 'NULL' : typeof v === 'object' ? JSON.stringify(v) : String(v as string | number | boolean))))];
  const widths = columns.map((_, i) => Math.max(...cells.map((r) => r[i]!.length)));
  const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(cells[0]!), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.slice(1).map(line)].join('\n');
}

async function checkStack(): Promise<void> {
  for (const [name, url] of [
    ['API', `${API}/api/tee/health`],
    ['worker', `${WORKER}/health`],
  ] as const) {
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(5000) });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
    } catch (error) {
      fail(`the ${name} does not answer at ${url} (${error instanceof Error ? error.message : String(error)}): start the stack with \`npm start\` first`);
    }
  }
}

async function run(): Promise<void> {
  say(`Confidential data path demo against ${API} (worker ${WORKER})`);
  await checkStack();
  const alice: Party = { name: 'alice', email: ALICE, home: join(work, 'alice') };
  const bob: Party = { name: 'bob', email: BOB, home: join(work, 'bob') };

  say('\n== 1. Both parties sign in with the local dev identity provider');
  await cli(alice, ['login', '--email', ALICE]);
  await cli(bob, ['login', '--email', BOB]);

  say('\n== 2. alice creates a session with bob (every participant approves each query; joins across parties allowed)');
  const session = JSON.parse(await cli(alice, ['session', 'create', '--name', 'customer overlap demo', '--participant', BOB, '--approval', 'all_participants', '--cross-party-joins', '--json'])) as {
    id: string;
  };
  say(`    session ${session.id}`);

  say('\n== 3. Each joins: a signing and an encryption key pair, private halves kept in its CLEANROOM_HOME');
  await cli(alice, ['session', 'join', session.id]);
  await cli(bob, ['session', 'join', session.id]);

  say('\n== 4. Each writes its own CSV (plaintext stays on its machine)');
  const customers = join(work, 'alice-customers.csv');
  const purchases = join(work, 'bob-purchases.csv');
  writeFileSync(customers, customersCsv(), { mode: 0o600 });
  writeFileSync(purchases, purchasesCsv(), { mode: 0o600 });
  say(`    alice: ${customers} (2000 rows)\n    bob:   ${purchases} (5000 rows)`);

  say('\n== 5. Each verifies the worker through the session key bundle, encrypts locally and uploads ciphertext');
  await cli(alice, ['dataset', 'upload', session.id, customers, '--table', 'customers', '--allow-insecure-dev']);
  await cli(bob, ['dataset', 'upload', session.id, purchases, '--table', 'purchases', '--allow-insecure-dev']);

  say('\n== 6. What the control plane knows: metadata and ciphertext hashes, no rows');
  await cli(bob, ['dataset', 'list', session.id]);
  const listed = JSON.parse(await cli(bob, ['dataset', 'list', session.id, '--json'], { show: false })) as { datasets: { schema: { name: string; type: string }[] }[] };
  const types = Object.fromEntries(listed.datasets.flatMap((d) => d.schema.map((c) => [c.name, c.type])));

  say('\n== 7. alice proposes a join-and-aggregate query for both of them (proposing counts as her approval)');
  const query = JSON.parse(await cli(alice, ['query', 'propose', session.id, '--sql', SQL, '--recipient', ALICE, '--recipient', BOB, '--json'])) as {
    id: string;
    status: string;
  };
  say(`    query ${query.id}: ${query.status}`);

  say('\n== 8. bob approves; the query is queued to the worker');
  await cli(bob, ['query', 'approve', session.id, query.id], { show: false });

  say('\n== 9. Waiting for the worker to decrypt the inputs, run the query and seal the result');
  const done = JSON.parse(await cli(alice, ['query', 'show', session.id, query.id, '--wait', '--timeout', '180', '--json'])) as {
    status: string;
    error_code: string | null;
  };
  say(`    ${done.status}${done.error_code ? ` (${done.error_code})` : ''}`);
  if (done.status !== 'SUCCEEDED') fail(`the query ended ${done.status}${done.error_code ? ` with ${done.error_code}` : ''}`);

  say("\n== 10. Both fetch the sealed result, verify the worker's receipt and decrypt it locally");
  type Opened = { columns: { name: string }[]; rows: unknown[][]; receipt: { result_sha256: string } };
  const fromAlice = JSON.parse(await cli(alice, ['result', 'get', session.id, query.id, '--allow-insecure-dev', '--json'])) as Opened;
  const fromBob = JSON.parse(await cli(bob, ['result', 'get', session.id, query.id, '--allow-insecure-dev', '--json'])) as Opened;
  say(
    `\n${indent(
      table(
        fromAlice.columns.map((c) => c.name),
        fromAlice.rows,
      ),
    )}`,
  );

  say('\n== 11. Checking against the same query on the plaintext, computed here with DuckDB');
  const expected = await plaintextAnswer(customers, purchases, types);
  const problems: string[] = [];
  for (const [who, got] of [
    ['alice', fromAlice],
    ['bob', fromBob],
  ] as const) {
    if (JSON.stringify(got.rows) !== JSON.stringify(expected)) {
      problems.push(
        `${who} got:\n${indent(
          table(
            got.columns.map((c) => c.name),
            got.rows,
          ),
        )}`,
      );
    }
  }
  if (problems.length > 0) {
    fail(
      `the result differs from the plaintext computation.\nexpected:\n${indent(
        table(
          fromAlice.columns.map((c) => c.name),
          expected,
        ),
      )}\n${problems.join('\n')}`,
    );
  }
  say(`    equal: ${expected.length} groups, identical for alice and bob (result sha256 ${fromAlice.receipt.result_sha256})`);
  cleanUp();
  say('\ndemo OK');
}

await run().catch((error: unknown) => fail(error instanceof Error ? (error.stack ?? error.message) : String(error)));
