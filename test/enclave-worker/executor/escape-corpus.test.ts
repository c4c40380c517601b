import test from 'ava';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ExecuteOutcome } from '../../../enclave-worker/executor/executor.ts';
import { A_SECRET, B_SECRET, fixtureExecutor, request, writeFixtures } from './harness.ts';

/**
 * Escape attempts from session A, each through the whole executor (a real child per attempt).
 * Every attempt must be refused before execution (POLICY_VIOLATION) or contained (a fixed code, or
 * a result), and no output may carry session B's data, a file's content or a data value quoted by
 * an error. After the whole corpus the executor still serves a normal query.
 */

const fixtures = writeFixtures();
const scratch = mkdtempSync(join(tmpdir(), 'executor-escape-'));
const CANARY = `CANARY-${crypto.randomUUID()}`;
const canaryFile = join(scratch, 'canary.csv');
writeFileSync(canaryFile, `x\n${CANARY}\n`);
const leakFile = join(scratch, 'leak.csv');
const bFixture = join(fixtures.directory, 'session-b', 'b_vault.csv');
// The time limit is short so the endless query does not burn CPU other test files need.
const { executor, sink } = fixtureExecutor(fixtures.directory, { pool: { perSessionRunning: 2 }, limits: { timeoutMs: 2500 } });

type Expect = 'refused' | 'contained';
const corpus: Array<[string, string, Expect]> = [
  // another session's tables
  ['B table by name', 'SELECT * FROM b_vault', 'refused'],
  ['B table quoted, other case', 'SELECT * FROM "B_VAULT"', 'refused'],
  ['B table in a UNION', 'SELECT id, name FROM people UNION ALL SELECT id, secret FROM b_vault', 'refused'],
  ['B table in a scalar subquery', "SELECT (SELECT string_agg(secret, ',') FROM b_vault)", 'refused'],
  ['B table behind a CTE named like an A table', 'WITH people AS (SELECT * FROM b_vault) SELECT * FROM people', 'refused'],
  ['B table catalog-qualified', 'SELECT * FROM memory.main.b_vault', 'refused'],
  ['B table with a zero-width space', 'SELECT * FROM "b_vault\u200b"', 'refused'],
  ['a string literal that reads like a UNION of B', "SELECT name FROM people WHERE name = 'x'' UNION SELECT secret FROM b_vault --'", 'contained'],
  ['B fixture file by path', `SELECT * FROM '${bFixture}'`, 'refused'],
  ['B fixture file through read_csv_auto', `SELECT * FROM read_csv_auto('${bFixture}')`, 'refused'],
  // files
  ['read_csv of /etc/passwd', "SELECT * FROM read_csv('/etc/passwd')", 'refused'],
  ['/etc/passwd as a FROM string', "SELECT * FROM '/etc/passwd'", 'refused'],
  ['read_text', "SELECT * FROM read_text('/etc/passwd')", 'refused'],
  ['read_blob', "SELECT * FROM read_blob('/etc/shadow')", 'refused'],
  ['read_parquet', "SELECT * FROM read_parquet('/tmp/x.parquet')", 'refused'],
  ['read_json', "SELECT * FROM read_json('/etc/hosts')", 'refused'],
  ['glob', "SELECT * FROM glob('/*')", 'refused'],
  ['a canary file', `SELECT * FROM read_text('${canaryFile}')`, 'refused'],
  ['a file read joined laterally', "SELECT * FROM people, LATERAL read_csv('/etc/passwd')", 'refused'],
  ['a file read hidden in a CTE', "WITH x AS (FROM '/etc/passwd') SELECT * FROM x", 'refused'],
  // URLs
  ['an https read', "SELECT * FROM read_csv('https://example.com/x.csv')", 'refused'],
  ['the metadata server', "SELECT * FROM 'http://169.254.169.254/computeMetadata/v1/'", 'refused'],
  // statements other than one SELECT
  ['COPY TO', `COPY people TO '${leakFile}'`, 'refused'],
  ['COPY FROM', "COPY people FROM '/etc/passwd'", 'refused'],
  ['ATTACH', `ATTACH '${join(scratch, 'other.duckdb')}' AS o`, 'refused'],
  ['INSTALL', 'INSTALL httpfs', 'refused'],
  ['LOAD', 'LOAD httpfs', 'refused'],
  ['SET external access on', 'SET enable_external_access = true', 'refused'],
  ['RESET the lock', 'RESET lock_configuration', 'refused'],
  ['PRAGMA', 'PRAGMA database_list', 'refused'],
  ['CREATE TABLE AS', 'CREATE TABLE leak AS SELECT * FROM people', 'refused'],
  ['INSERT', "INSERT INTO people VALUES (1, 'x', 'y', 1)", 'refused'],
  ['UPDATE', "UPDATE people SET name = 'x'", 'refused'],
  ['DELETE', 'DELETE FROM people', 'refused'],
  ['DROP', 'DROP TABLE people', 'refused'],
  ['CREATE MACRO over a file', "CREATE MACRO leak() AS TABLE SELECT * FROM read_csv('/etc/passwd')", 'refused'],
  ['EXPORT DATABASE', `EXPORT DATABASE '${join(scratch, 'export')}'`, 'refused'],
  ['CALL', 'CALL pragma_version()', 'refused'],
  ['two statements', 'SELECT 1; SELECT * FROM b_vault', 'refused'],
  ['a statement after a line comment', `SELECT 1 -- harmless\n; COPY people TO '${leakFile}'`, 'refused'],
  ['a statement between block comments', "SELECT /* ; */ 1; /* */ ATTACH ':memory:' AS m", 'refused'],
  // SQL run from strings, metadata and settings
  ['query()', "SELECT * FROM query('SELECT * FROM b_vault')", 'refused'],
  ['query_table()', "SELECT * FROM query_table('b_vault')", 'refused'],
  ['json_serialize_plan of a file read', "SELECT json_serialize_plan('SELECT * FROM read_csv(''/etc/passwd'')')", 'refused'],
  ['duckdb_settings()', 'SELECT * FROM duckdb_settings()', 'refused'],
  ['duckdb_tables()', 'SELECT * FROM duckdb_tables()', 'refused'],
  ['information_schema', 'SELECT * FROM information_schema.tables', 'refused'],
  ['getenv', "SELECT getenv('HOME')", 'refused'],
  ['current_setting', "SELECT current_setting('enable_external_access')", 'refused'],
  ['error() carrying a value', 'SELECT error(secret_col) FROM people', 'refused'],
  // size, depth and resource bombs
  ['SQL over the length limit', `SELECT 1${' '.repeat(100_001)}`, 'refused'],
  ['very long SQL', `SELECT ${'1+'.repeat(30_000)}1`, 'contained'],
  ['deep parentheses', `SELECT ${'('.repeat(5000)}1${')'.repeat(5000)}`, 'contained'],
  ['deep NOT chain', `SELECT ${'NOT '.repeat(20_000)}true`, 'contained'],
  ['a cartesian memory bomb', 'SELECT count(DISTINCT a.secret_col || b.secret_col || c.secret_col) FROM people a, people b, people c', 'contained'],
  ['an infinite recursive CTE', 'WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r', 'contained'],
  ['range(1e12) as a table', 'SELECT * FROM range(1000000000000)', 'refused'],
  ['range(1e12) unnested', 'SELECT unnest(range(1000000000000))', 'contained'],
  ['a million rows', 'SELECT unnest(range(1000000))', 'contained'],
  ["repeat('x', 1e9)", "SELECT repeat('x', 1000000000)", 'contained'],
  // errors that would quote a data value
  ['a cast error on a secret column', 'SELECT CAST(secret_col AS INTEGER) FROM people', 'contained'],
  ['a date cast error on a secret column', 'SELECT secret_col::DATE FROM people', 'contained'],
];

const FIXED_CODES = ['POLICY_VIOLATION', 'QUERY_FAILED', 'QUERY_TIMEOUT', 'QUERY_MEMORY_LIMIT', 'RESULT_TOO_LARGE'];
// What must never appear in any output of an attempt.
const FORBIDDEN = [B_SECRET, 'root:x:0:0', CANARY];

const outcomes = new Map<string, ExecuteOutcome>();
test.before(async () => {
  await Promise.all(
    corpus.map(async ([name, sql], i) => {
      outcomes.set(name, await executor.execute(request('session-a', `escape-${i}`, sql)));
    }),
  );
});

test.after.always(async () => {
  await executor.close();
  fixtures.remove();
  rmSync(scratch, { recursive: true, force: true });
});

test('escape corpus: has at least 40 attempts', (t) => {
  t.true(corpus.length >= 40);
  t.is(new Set(corpus.map(([name]) => name)).size, corpus.length);
});

corpus.forEach(([name, sql, expect], i) => {
  test(`escape corpus: ${name} is ${expect}`, (t) => {
    const outcome = outcomes.get(name)!;
    const rows = sink.read('session-a', `escape-${i}`);
    const output = JSON.stringify({ outcome, rows });
    for (const marker of FORBIDDEN) t.false(output.includes(marker), `output carries ${marker}`);
    if (expect === 'refused') {
      t.deepEqual(outcome, { status: 'FAILED', code: 'POLICY_VIOLATION' });
      return;
    }
    if (outcome.status === 'FAILED') {
      t.true(FIXED_CODES.includes(outcome.code), outcome.code);
      // A failure says nothing but its code: no value of A's own data either.
      t.false(JSON.stringify(outcome).includes(A_SECRET));
    } else {
      t.is(outcome.status, 'SUCCEEDED', sql.slice(0, 80));
    }
  });
});

test('escape corpus: bombs and tricks end as expected', (t) => {
  t.deepEqual(outcomes.get('a cartesian memory bomb'), { status: 'FAILED', code: 'QUERY_MEMORY_LIMIT' });
  t.deepEqual(outcomes.get('an infinite recursive CTE'), { status: 'FAILED', code: 'QUERY_TIMEOUT' });
  t.deepEqual(outcomes.get('a million rows'), { status: 'FAILED', code: 'RESULT_TOO_LARGE' });
  t.deepEqual(outcomes.get('a cast error on a secret column'), { status: 'FAILED', code: 'QUERY_FAILED' });
  // The parser, not a pattern, decides: the "UNION" is inside a string literal, so it is a harmless filter.
  t.like(outcomes.get('a string literal that reads like a UNION of B'), { status: 'SUCCEEDED', result: { rows: 0 } });
  // A gigabyte string is stopped by the resident-memory watchdog, or by the clock when page
  // faults are slow (a loaded VM): either way it is stopped.
  const huge = outcomes.get("repeat('x', 1e9)");
  t.true(huge?.status === 'FAILED' && ['QUERY_MEMORY_LIMIT', 'QUERY_TIMEOUT'].includes(huge.code), JSON.stringify(huge));
});

test('escape corpus: no attempt wrote a file', (t) => {
  t.false(existsSync(leakFile));
  t.false(existsSync(join(scratch, 'other.duckdb')));
  t.false(existsSync(join(scratch, 'export')));
});

test('escape corpus: afterwards the executor still serves a normal query', async (t) => {
  const outcome = await executor.execute(request('session-a', 'after-corpus', 'SELECT count(*) AS n, max(amount) AS top FROM orders'));
  t.like(outcome, { status: 'SUCCEEDED', result: { rows: 1 } });
  t.deepEqual(sink.read('session-a', 'after-corpus')?.rows, [['3', '250']]);
  const b = await executor.execute(request('session-b', 'b-own', 'SELECT count(*) FROM b_vault'));
  t.like(b, { status: 'SUCCEEDED' });
});
