import { CleanroomError } from '../../protocol/errors.ts';
import { isAllowedFunction } from './policy-functions.ts';
import { EXPRESSION_BASE, EXPRESSION_FIELDS, MODIFIER_FIELDS, QUERY_NODE_BASE, QUERY_NODE_FIELDS, TABLE_REF_BASE, TABLE_REF_FIELDS } from './policy-shapes.ts';

/**
 * The pre-execution checker: a pure function over DuckDB's own parse tree (`json_serialize_sql`,
 * produced inside the query's disposable child before any data is loaded; see `engine.ts`).
 *
 * It admits exactly one read-only query: SELECT, VALUES, set operations (UNION/EXCEPT/INTERSECT)
 * and CTEs (recursive ones too), whose every FROM item is a subquery, a join, VALUES, or a base
 * table of the session (or a CTE in scope). It refuses table functions (`read_csv`, `range`,
 * `query`...), quoted file names in FROM (`'x.csv'` is a file read), qualified names
 * (`information_schema.tables`, `pg_catalog...`), catalog and setting functions, prepared
 * parameters, PIVOT/DESCRIBE/SHOW and, by default, every node or field it does not know: a new
 * DuckDB version that adds a field is refused until this file learns it.
 *
 * Statements DuckDB cannot serialize (COPY, ATTACH, SET, PRAGMA, INSTALL, CREATE...) arrive as
 * `{ error: true }` and are refused too.
 */

/** Nesting depth of the tree the walker follows before it refuses (parser-recursion bombs). */
export const MAX_TREE_DEPTH = 256;
/** Nodes visited before the walker refuses. */
export const MAX_TREE_NODES = 100_000;

/** What a passed query reads: the session tables it names, lowercase, sorted. */
export interface PolicyDecision {
  tables: string[];
}

type Node = Record<string, unknown>;

// Fixed messages: none quotes the SQL or names what it found (docs/architecture.md invariant 11).
const MESSAGE = {
  statement: 'only a single SELECT statement may run',
  table: "the query may read only its session's input tables",
  tableFunction: 'table functions and file or URL readers are not allowed',
  function: 'the query calls a function that is not allowed',
  construct: 'the query uses a construct that is not allowed',
  size: 'the query is too deeply nested or too large to check',
} as const;

function refuse(reason: keyof typeof MESSAGE): never {
  throw new CleanroomError('POLICY_VIOLATION', MESSAGE[reason]);
}

// Keys that mark a node able to read or compute something; none may hide inside plain data.
const ACTIVE_KEYS = ['class', 'node', 'function_name', 'table_name', 'subquery', 'from_table'];
// A name DuckDB and this checker read the same way: ASCII only, so case folding cannot differ.
const PLAIN_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * Checks a `json_serialize_sql` tree against the session's table names. Returns the tables the
 * query reads; throws `CleanroomError('POLICY_VIOLATION')` with a fixed message otherwise.
 */
export function checkQueryTree(tree: unknown, sessionTables: readonly string[]): PolicyDecision {
  const walker = new Walker(new Set(sessionTables.map((t) => t.toLowerCase())));
  const root = walker.object(tree, 0);
  if (root.error !== false) refuse('statement');
  walker.fields(root, ['error', 'statements']);
  const statements = root.statements;
  if (!Array.isArray(statements) || statements.length !== 1) refuse('statement');
  walker.statement(statements[0], new Set(), 1);
  return { tables: [...walker.used].sort() };
}

class Walker {
  readonly sessionTables: ReadonlySet<string>;
  readonly used = new Set<string>();
  nodes = 0;

  constructor(sessionTables: ReadonlySet<string>) {
    this.sessionTables = sessionTables;
  }

  object(value: unknown, depth: number): Node {
    if (depth > MAX_TREE_DEPTH || ++this.nodes > MAX_TREE_NODES) refuse('size');
    if (value === null || typeof value !== 'object' || Array.isArray(value)) refuse('construct');
    return value as Node;
  }

  fields(node: Node, known: readonly string[], more: readonly string[] = []): void {
    for (const key of Object.keys(node)) if (!known.includes(key) && !more.includes(key)) refuse('construct');
  }

  list(value: unknown): unknown[] {
    if (!Array.isArray(value)) refuse('construct');
    return value;
  }

  /** Values, names, type descriptions: data only, no node that could read or compute. */
  data(value: unknown, depth: number): void {
    if (depth > MAX_TREE_DEPTH || ++this.nodes > MAX_TREE_NODES) refuse('size');
    if (value === null || typeof value !== 'object') return;
    if (Array.isArray(value)) {
      for (const item of value) this.data(item, depth + 1);
      return;
    }
    for (const [key, item] of Object.entries(value)) {
      if (ACTIVE_KEYS.includes(key)) refuse('construct');
      this.data(item, depth + 1);
    }
  }

  /** `{ node, named_param_map }`: a SELECT statement (top level, subquery or CTE body). */
  statement(value: unknown, scope: ReadonlySet<string>, depth: number): void {
    const statement = this.object(value, depth);
    this.fields(statement, ['node', 'named_param_map']);
    // Named parameters would be bound by someone; a query here binds nothing.
    if (this.list(statement.named_param_map).length !== 0) refuse('construct');
    this.queryNode(statement.node, scope, depth + 1);
  }

  queryNode(value: unknown, outer: ReadonlySet<string>, depth: number): void {
    const node = this.object(value, depth);
    const type = String(node.type);
    const known = QUERY_NODE_FIELDS[type];
    if (known === undefined) refuse('construct');
    this.fields(node, QUERY_NODE_BASE, known);
    const scope = this.ctes(node.cte_map, outer, depth + 1);
    for (const modifier of this.list(node.modifiers)) this.modifier(modifier, scope, depth + 1);
    if (type === 'SELECT_NODE') {
      for (const e of this.list(node.select_list)) this.expression(e, scope, depth + 1);
      this.tableRef(node.from_table, scope, depth + 1);
      this.optionalExpression(node.where_clause, scope, depth + 1);
      for (const e of this.list(node.group_expressions)) this.expression(e, scope, depth + 1);
      this.data(node.group_sets, depth + 1);
      if (typeof node.aggregate_handling !== 'string') refuse('construct');
      this.optionalExpression(node.having, scope, depth + 1);
      this.data(node.sample, depth + 1);
      this.optionalExpression(node.qualify, scope, depth + 1);
    } else if (type === 'SET_OPERATION_NODE') {
      this.data([node.setop_type, node.setop_all], depth + 1);
      this.queryNode(node.left, scope, depth + 1);
      this.queryNode(node.right, scope, depth + 1);
    } else {
      // RECURSIVE_CTE_NODE: its own name is in scope on both sides.
      const name = this.name(node.cte_name, 'construct');
      const inner = new Set(scope).add(name);
      this.data([node.union_all, node.aliases], depth + 1);
      for (const e of this.list(node.key_targets)) this.expression(e, inner, depth + 1);
      this.queryNode(node.left, inner, depth + 1);
      this.queryNode(node.right, inner, depth + 1);
    }
  }

  /** `WITH` definitions: each name is visible to later definitions, itself (recursion) and the body. */
  ctes(value: unknown, outer: ReadonlySet<string>, depth: number): ReadonlySet<string> {
    const cteMap = this.object(value, depth);
    this.fields(cteMap, ['map']);
    const entries = this.list(cteMap.map);
    if (entries.length === 0) return outer;
    const scope = new Set(outer);
    for (const entryValue of entries) {
      const entry = this.object(entryValue, depth + 1);
      this.fields(entry, ['key', 'value']);
      scope.add(this.name(entry.key, 'construct'));
      const cte = this.object(entry.value, depth + 2);
      this.fields(cte, ['aliases', 'query', 'materialized', 'key_targets']);
      this.data([cte.aliases, cte.materialized], depth + 3);
      for (const e of this.list(cte.key_targets)) this.expression(e, scope, depth + 3);
      this.statement(cte.query, scope, depth + 3);
    }
    return scope;
  }

  modifier(value: unknown, scope: ReadonlySet<string>, depth: number): void {
    const modifier = this.object(value, depth);
    const known = MODIFIER_FIELDS[String(modifier.type)];
    if (known === undefined) refuse('construct');
    this.fields(modifier, ['type'], known);
    if (modifier.type === 'ORDER_MODIFIER') for (const order of this.list(modifier.orders)) this.order(order, scope, depth + 1);
    else if (modifier.type === 'DISTINCT_MODIFIER') for (const e of this.list(modifier.distinct_on_targets)) this.expression(e, scope, depth + 1);
    else {
      this.optionalExpression(modifier.limit, scope, depth + 1);
      this.optionalExpression(modifier.offset, scope, depth + 1);
    }
  }

  order(value: unknown, scope: ReadonlySet<string>, depth: number): void {
    const order = this.object(value, depth);
    this.fields(order, ['type', 'null_order', 'expression']);
    this.data([order.type, order.null_order], depth + 1);
    this.expression(order.expression, scope, depth + 1);
  }

  tableRef(value: unknown, scope: ReadonlySet<string>, depth: number): void {
    const ref = this.object(value, depth);
    const type = String(ref.type);
    if (type === 'TABLE_FUNCTION') refuse('tableFunction');
    const known = TABLE_REF_FIELDS[type];
    if (known === undefined) refuse('construct');
    this.fields(ref, TABLE_REF_BASE, known);
    this.data([ref.alias, ref.sample, ref.query_location], depth + 1);
    switch (type) {
      case 'BASE_TABLE': {
        // A qualified name reaches another schema or catalog (information_schema, pg_catalog, system).
        if (ref.schema_name !== '' || ref.catalog_name !== '') refuse('table');
        if (ref.at_clause !== null) refuse('construct');
        // A quoted path ('/etc/passwd', 'x.csv', 'https://...') fails PLAIN_NAME: files are never tables here.
        const name = this.name(ref.table_name, 'table');
        if (!scope.has(name)) {
          if (!this.sessionTables.has(name)) refuse('table');
          this.used.add(name);
        }
        this.data(ref.column_name_alias, depth + 1);
        return;
      }
      case 'SUBQUERY':
        this.data(ref.column_name_alias, depth + 1);
        this.statement(ref.subquery, scope, depth + 1);
        return;
      case 'JOIN':
        this.data([ref.join_type, ref.ref_type, ref.using_columns, ref.delim_flipped], depth + 1);
        this.tableRef(ref.left, scope, depth + 1);
        this.tableRef(ref.right, scope, depth + 1);
        this.optionalExpression(ref.condition, scope, depth + 1);
        for (const e of this.list(ref.duplicate_eliminated_columns)) this.expression(e, scope, depth + 1);
        return;
      case 'EXPRESSION_LIST':
        this.data([ref.expected_names, ref.expected_types], depth + 1);
        for (const row of this.list(ref.values)) for (const e of this.list(row)) this.expression(e, scope, depth + 1);
        return;
      default:
        return; // EMPTY
    }
  }

  optionalExpression(value: unknown, scope: ReadonlySet<string>, depth: number): void {
    if (value !== null && value !== undefined) this.expression(value, scope, depth);
  }

  expression(value: unknown, scope: ReadonlySet<string>, depth: number): void {
    const e = this.object(value, depth);
    const cls = String(e.class);
    const known = EXPRESSION_FIELDS[cls];
    // PARAMETER, DEFAULT and anything unknown end here.
    if (known === undefined) refuse('construct');
    this.fields(e, EXPRESSION_BASE, known);
    this.data([e.type, e.alias, e.query_location], depth + 1);
    const next = depth + 1;
    const each = (list: unknown): void => {
      for (const child of this.list(list)) this.expression(child, scope, next);
    };
    switch (cls) {
      case 'CONSTANT':
        this.data(e.value, next);
        return;
      case 'COLUMN_REF':
      case 'POSITIONAL_REFERENCE':
        this.data([e.column_names, e.index], next);
        return;
      case 'FUNCTION':
        this.callee(e);
        // Exporting an aggregate's internal state is not a query result.
        if (e.export_state !== false) refuse('construct');
        this.data([e.distinct, e.is_operator], next);
        each(e.children);
        this.optionalExpression(e.filter, scope, next);
        this.modifier(e.order_bys, scope, next);
        return;
      case 'WINDOW':
        this.callee(e);
        this.data([e.start, e.end, e.ignore_nulls, e.exclude_clause, e.distinct], next);
        each(e.children);
        each(e.partitions);
        for (const order of this.list(e.orders)) this.order(order, scope, next);
        for (const order of this.list(e.arg_orders)) this.order(order, scope, next);
        for (const key of ['start_expr', 'end_expr', 'offset_expr', 'default_expr', 'filter_expr']) this.optionalExpression(e[key], scope, next);
        return;
      case 'STAR':
        this.data([e.relation_name, e.exclude_list, e.qualified_exclude_list, e.rename_list, e.columns], next);
        for (const entryValue of this.list(e.replace_list)) {
          const entry = this.object(entryValue, next);
          this.fields(entry, ['key', 'value']);
          this.data(entry.key, next + 1);
          this.expression(entry.value, scope, next + 1);
        }
        this.optionalExpression(e.expr, scope, next);
        return;
      case 'CAST':
        this.type(e.cast_type, next);
        this.data(e.try_cast, next);
        this.expression(e.child, scope, next);
        return;
      case 'COMPARISON':
        this.expression(e.left, scope, next);
        this.expression(e.right, scope, next);
        return;
      case 'CONJUNCTION':
      case 'OPERATOR':
        each(e.children);
        return;
      case 'CASE':
        for (const checkValue of this.list(e.case_checks)) {
          const check = this.object(checkValue, next);
          this.fields(check, ['when_expr', 'then_expr']);
          this.expression(check.when_expr, scope, next + 1);
          this.expression(check.then_expr, scope, next + 1);
        }
        this.expression(e.else_expr, scope, next);
        return;
      case 'BETWEEN':
        this.expression(e.input, scope, next);
        this.expression(e.lower, scope, next);
        this.expression(e.upper, scope, next);
        return;
      case 'SUBQUERY':
        this.data([e.subquery_type, e.comparison_type], next);
        this.optionalExpression(e.child, scope, next);
        this.statement(e.subquery, scope, next);
        return;
      case 'LAMBDA':
        this.expression(e.lhs, scope, next);
        this.expression(e.expr, scope, next);
        return;
      default: // COLLATE
        this.data(e.collation, next);
        this.expression(e.child, scope, next);
    }
  }

  /**
   * A function or window call: not denied, and in the default schema (`main`, which the parser
   * itself writes for list, struct and map literals) of the default catalog; `pg_catalog.f()` or
   * `system.main.f()` are refused.
   */
  callee(e: Node): void {
    if ((e.schema !== '' && e.schema !== 'main') || e.catalog !== '') refuse('function');
    if (typeof e.function_name !== 'string' || !isAllowedFunction(e.function_name)) refuse('function');
  }

  /** A type in a cast or VALUES list: data only, and no user type from another catalog or schema. */
  type(value: unknown, depth: number): void {
    this.data(value, depth);
    const seen: unknown[] = [value];
    while (seen.length > 0) {
      const item = seen.pop();
      if (item === null || typeof item !== 'object') continue;
      const node = item as Node;
      if (node.type === 'UNBOUND_TYPE_INFO' && ((node.catalog ?? '') !== '' || (node.schema ?? '') !== '')) refuse('construct');
      seen.push(...Object.values(node));
    }
  }

  name(value: unknown, reason: 'table' | 'construct'): string {
    if (typeof value !== 'string' || !PLAIN_NAME.test(value)) refuse(reason);
    return value.toLowerCase();
  }
}
