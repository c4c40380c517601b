import test from 'ava';
import type { DuckDBConnection } from '@duckdb/node-api';
import { CleanroomError } from '../../../protocol/errors.ts';
import { openLockedDatabase, serializeSql } from '../../../enclave-worker/executor/engine.ts';
import { checkQueryTree, MAX_TREE_DEPTH } from '../../../enclave-worker/executor/policy.ts';
import { isAllowedFunction } from '../../../enclave-worker/executor/policy-functions.ts';

// Parse trees come from the same locked-down DuckDB a context uses, in this process.
let connection: DuckDBConnection;
test.before(async () => {
  connection = await openLockedDatabase({ threads: 1, memoryLimitMb: 64 });
});

const SESSION_TABLES = ['orders', 'customers'];

async function check(sql: string) {
  return checkQueryTree(JSON.parse(await serializeSql(connection, sql)), SESSION_TABLES);
}

const allowed: Array<[string, string, string[]]> = [
  ['a plain select', 'SELECT id, amount FROM orders WHERE amount > 10', ['orders']],
  ['a join with aggregates', 'SELECT c.region, count(*), sum(o.amount) FROM orders o JOIN customers c ON o.cid = c.id GROUP BY c.region HAVING count(*) > 1 ORDER BY 1', ['customers', 'orders']],
  ['FROM-first syntax', 'FROM orders SELECT id', ['orders']],
  ['a constant select', 'SELECT 1 + 1', []],
  ['VALUES', 'VALUES (1, 2), (3, 4)', []],
  ['UNION of selects', 'SELECT id FROM orders UNION ALL SELECT id FROM customers', ['customers', 'orders']],
  ['EXCEPT and INTERSECT', 'SELECT id FROM orders EXCEPT SELECT id FROM customers INTERSECT SELECT 1', ['customers', 'orders']],
  ['a CTE over a session table', 'WITH big AS (SELECT * FROM orders WHERE amount > 100) SELECT count(*) FROM big', ['orders']],
  ['a CTE that uses an earlier CTE', 'WITH a AS (SELECT id FROM orders), b AS (SELECT id FROM a) SELECT * FROM b', ['orders']],
  ['a recursive CTE', 'WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT * FROM r', []],
  ['scalar, IN and EXISTS subqueries', 'SELECT (SELECT max(amount) FROM orders), id IN (SELECT cid FROM orders), EXISTS (FROM customers) FROM customers', ['customers', 'orders']],
  ['a lateral subquery', 'SELECT * FROM orders o, LATERAL (SELECT o.amount * 2 AS d) x', ['orders']],
  ['window functions', 'SELECT id, row_number() OVER (PARTITION BY cid ORDER BY amount DESC), lag(amount, 1, 0) OVER w FROM orders WINDOW w AS (ORDER BY id) QUALIFY true', ['orders']],
  ['CASE, BETWEEN, casts, LIKE', "SELECT CASE WHEN amount BETWEEN 1 AND 5 THEN 'low' ELSE 'high' END, TRY_CAST(id AS VARCHAR), id::DOUBLE, 'x' LIKE 'x%' FROM orders", ['orders']],
  ['star with EXCLUDE and REPLACE', 'SELECT * EXCLUDE (cid) REPLACE (amount * 2 AS amount) FROM orders', ['orders']],
  ['lambdas and list functions', 'SELECT list_transform([1, 2], x -> x + 1), list_filter([1, 2], lambda x: x > 1)', []],
  ['DISTINCT ON, LIMIT and OFFSET', 'SELECT DISTINCT ON (cid) cid, amount FROM orders ORDER BY cid, amount DESC LIMIT 10 OFFSET 2', ['orders']],
  ['aggregate FILTER and ordered aggregate', "SELECT count(*) FILTER (WHERE amount > 1), string_agg(CAST(id AS VARCHAR), ',' ORDER BY id) FROM orders", ['orders']],
  ['GROUPING SETS and ROLLUP', 'SELECT cid, sum(amount) FROM orders GROUP BY ROLLUP (cid)', ['orders']],
  ['a quoted identifier of a session table, any case', 'SELECT * FROM "Orders"', ['orders']],
  ['struct, list and map literals', "SELECT {'a': 1}, [1, 2][1], MAP {'k': 1}", []],
  ['USING and NATURAL joins', 'SELECT * FROM orders JOIN customers USING (id) NATURAL JOIN orders o2', ['customers', 'orders']],
  ['unnest of a list in the select list', 'SELECT unnest([1, 2, 3])', []],
  ['sampling', 'SELECT * FROM orders USING SAMPLE 10%', ['orders']],
  ['COLUMNS expression', "SELECT COLUMNS('am.*') FROM orders", ['orders']],
];

for (const [name, sql, tables] of allowed) {
  test(`policy: ${name} is allowed and reads ${tables.join(', ') || 'no table'}`, async (t) => {
    t.deepEqual((await check(sql)).tables, tables);
  });
}

const refused: Array<[string, string]> = [
  ['a table of another session', 'SELECT * FROM secrets'],
  ['a qualified table', 'SELECT * FROM main.orders'],
  ['a catalog-qualified table', 'SELECT * FROM memory.main.orders'],
  ['information_schema', 'SELECT * FROM information_schema.tables'],
  ['pg_catalog', 'SELECT * FROM pg_catalog.pg_class'],
  ['a system view by its bare name', 'SELECT * FROM duckdb_tables'],
  ['a quoted file path in FROM', "SELECT * FROM '/etc/passwd'"],
  ['a CSV file name in FROM', "SELECT * FROM 'orders.csv'"],
  ['a URL in FROM', "SELECT * FROM 'https://example.com/x.parquet'"],
  ['read_csv', "SELECT * FROM read_csv('/etc/passwd')"],
  ['read_parquet', "SELECT * FROM read_parquet('x.parquet')"],
  ['read_json', "SELECT * FROM read_json('x.json')"],
  ['read_text', "SELECT * FROM read_text('/etc/passwd')"],
  ['glob', "SELECT * FROM glob('/*')"],
  ['range as a table function', 'SELECT * FROM range(10)'],
  ['query()', "SELECT * FROM query('SELECT 1')"],
  ['query_table()', "SELECT * FROM query_table('orders')"],
  ['duckdb_settings()', 'SELECT * FROM duckdb_settings()'],
  ['pragma_table_info()', "SELECT * FROM pragma_table_info('orders')"],
  ['two statements', 'SELECT 1; SELECT 2'],
  ['a statement hidden after a comment', 'SELECT 1 /* x */; DROP TABLE orders'],
  ['COPY', "COPY orders TO '/tmp/x.csv'"],
  ['ATTACH', "ATTACH ':memory:' AS other"],
  ['INSTALL', 'INSTALL httpfs'],
  ['LOAD', 'LOAD httpfs'],
  ['SET', 'SET enable_external_access = true'],
  ['RESET', 'RESET lock_configuration'],
  ['PRAGMA', 'PRAGMA version'],
  ['CREATE TABLE AS', 'CREATE TABLE x AS SELECT 1'],
  ['INSERT', 'INSERT INTO orders VALUES (1)'],
  ['UPDATE', 'UPDATE orders SET amount = 0'],
  ['DELETE', 'DELETE FROM orders'],
  ['DROP', 'DROP TABLE orders'],
  ['CREATE MACRO', 'CREATE MACRO m(x) AS x'],
  ['CALL', 'CALL duckdb_settings()'],
  ['EXPORT DATABASE', "EXPORT DATABASE '/tmp/out'"],
  ['EXPLAIN', 'EXPLAIN SELECT 1'],
  ['DESCRIBE', 'DESCRIBE orders'],
  ['SHOW TABLES', 'SHOW TABLES'],
  ['SUMMARIZE', 'SUMMARIZE orders'],
  ['PIVOT (runs DDL underneath)', 'PIVOT orders ON cid USING sum(amount)'],
  ['a prepared parameter', 'SELECT * FROM orders WHERE id = $1'],
  ['a positional parameter', 'SELECT * FROM orders WHERE id = ?'],
  ['current_setting', "SELECT current_setting('memory_limit')"],
  ['getvariable', "SELECT getvariable('x')"],
  ['getenv', "SELECT getenv('HOME')"],
  ['error()', "SELECT error('x')"],
  ['json_serialize_plan (binds, and binding opens files)', "SELECT json_serialize_plan('SELECT 1')"],
  ['a pg_ function', 'SELECT pg_typeof(1)'],
  ['a duckdb_ function in an expression', 'SELECT (SELECT count(*) FROM duckdb_functions())'],
  ['a function of another schema', 'SELECT pg_catalog.abs(1)'],
  ['a catalog-qualified function', 'SELECT system.main.abs(1)'],
  ['a window function that is denied', 'SELECT current_query() OVER ()'],
  ['time travel', 'SELECT * FROM orders AT (VERSION => 1)'],
  ['a denied function inside a lambda', "SELECT list_transform([1], x -> current_setting('threads'))"],
  ['a file read inside a CTE', "WITH x AS (SELECT * FROM read_csv('/etc/passwd')) SELECT * FROM x"],
  ['a file read inside a scalar subquery', "SELECT (SELECT count(*) FROM '/etc/passwd')"],
  ['a file read in the right side of a UNION', "SELECT 1 UNION SELECT * FROM read_text('/etc/hosts')"],
  ['a CTE name that is a path', 'WITH "a.csv" AS (SELECT 1) SELECT * FROM "a.csv"'],
  ['a non-ASCII name that lowercases to a session table', 'SELECT * FROM "ORDERſ"'],
  ['a parse error', 'SELEC 1'],
];

for (const [name, sql] of refused) {
  test(`policy: ${name} is refused with POLICY_VIOLATION`, async (t) => {
    const error = await t.throwsAsync(check(sql), { instanceOf: CleanroomError });
    t.is(error.code, 'POLICY_VIOLATION');
    // The message is fixed text: it never quotes the query.
    t.false(error.message.includes(sql));
  });
}

test('policy: a tree nested deeper than the walker follows is refused', (t) => {
  let node: unknown = { class: 'CONSTANT', type: 'VALUE_CONSTANT', alias: '', query_location: 0, value: 1 };
  for (let i = 0; i < MAX_TREE_DEPTH; i++) {
    node = { class: 'OPERATOR', type: 'OPERATOR_NOT', alias: '', query_location: 0, children: [node] };
  }
  const tree = {
    error: false,
    statements: [
      {
        node: {
          type: 'SELECT_NODE',
          modifiers: [],
          cte_map: { map: [] },
          select_list: [node],
          from_table: { type: 'EMPTY', alias: '', sample: null, query_location: 0 },
          where_clause: null,
          group_expressions: [],
          group_sets: [],
          aggregate_handling: 'STANDARD_HANDLING',
          having: null,
          sample: null,
          qualify: null,
        },
        named_param_map: [],
      },
    ],
  };
  t.is(t.throws(() => checkQueryTree(tree, []), { instanceOf: CleanroomError }).code, 'POLICY_VIOLATION');
});

test('policy: an unknown field anywhere is refused (default deny)', async (t) => {
  const tree = JSON.parse(await serializeSql(connection, 'SELECT id FROM orders')) as { statements: [{ node: Record<string, unknown> }] };
  t.notThrows(() => checkQueryTree(tree, SESSION_TABLES));
  tree.statements[0].node.future_field = null;
  t.is(t.throws(() => checkQueryTree(tree, SESSION_TABLES), { instanceOf: CleanroomError }).code, 'POLICY_VIOLATION');
});

test('policy: what is not a parse tree is refused', (t) => {
  for (const tree of [null, 'SELECT 1', [], { error: true }, { error: false, statements: [] }, { error: false, statements: [{}] }]) {
    t.is(t.throws(() => checkQueryTree(tree, SESSION_TABLES), { instanceOf: CleanroomError }).code, 'POLICY_VIOLATION');
  }
});

test('policy functions: denied by name and prefix in any case, ordinary ones allowed', (t) => {
  for (const name of ['error', 'CURRENT_SETTING', 'duckdb_tables', 'pragma_version', 'read_csv_auto', 'pg_sleep', 'has_table_privilege']) t.false(isAllowedFunction(name), name);
  for (const name of ['sum', 'count', 'upper', 'date_trunc', 'list_transform', '+', 'regexp_matches']) t.true(isAllowedFunction(name), name);
});
