/**
 * The shapes of DuckDB 1.5 parse-tree nodes (`json_serialize_sql`) the policy walker knows: for
 * each node kind, the fields it may carry. This is the file to update, after review, when a DuckDB
 * upgrade adds a field; until then the walker refuses the new shape (default deny).
 */

/** Fields every expression, FROM item and query node carries. */
export const EXPRESSION_BASE: readonly string[] = ['class', 'type', 'alias', 'query_location'];
export const TABLE_REF_BASE: readonly string[] = ['type', 'alias', 'sample', 'query_location'];
export const QUERY_NODE_BASE: readonly string[] = ['type', 'modifiers', 'cte_map'];

/** Known fields of each expression class; a field not listed refuses the query. */
export const EXPRESSION_FIELDS: Record<string, readonly string[]> = {
  CONSTANT: ['value'],
  COLUMN_REF: ['column_names'],
  FUNCTION: ['function_name', 'schema', 'catalog', 'children', 'filter', 'order_bys', 'distinct', 'is_operator', 'export_state'],
  WINDOW: [
    'function_name',
    'schema',
    'catalog',
    'children',
    'partitions',
    'orders',
    'start',
    'end',
    'start_expr',
    'end_expr',
    'offset_expr',
    'default_expr',
    'ignore_nulls',
    'filter_expr',
    'exclude_clause',
    'distinct',
    'arg_orders',
  ],
  STAR: ['relation_name', 'exclude_list', 'replace_list', 'columns', 'expr', 'qualified_exclude_list', 'rename_list'],
  CAST: ['child', 'cast_type', 'try_cast'],
  COMPARISON: ['left', 'right'],
  CONJUNCTION: ['children'],
  OPERATOR: ['children'],
  CASE: ['case_checks', 'else_expr'],
  BETWEEN: ['input', 'lower', 'upper'],
  SUBQUERY: ['subquery_type', 'subquery', 'child', 'comparison_type'],
  LAMBDA: ['lhs', 'expr'],
  COLLATE: ['child', 'collation'],
  POSITIONAL_REFERENCE: ['index'],
};

/** Known fields of each FROM item type; TABLE_FUNCTION, PIVOT, SHOW_REF and others are absent on purpose. */
export const TABLE_REF_FIELDS: Record<string, readonly string[]> = {
  BASE_TABLE: ['schema_name', 'table_name', 'column_name_alias', 'catalog_name', 'at_clause'],
  EMPTY: [],
  SUBQUERY: ['subquery', 'column_name_alias'],
  JOIN: ['left', 'right', 'condition', 'join_type', 'ref_type', 'using_columns', 'delim_flipped', 'duplicate_eliminated_columns'],
  EXPRESSION_LIST: ['expected_names', 'expected_types', 'values'],
};

/** Known fields of each query node type. */
export const QUERY_NODE_FIELDS: Record<string, readonly string[]> = {
  SELECT_NODE: ['select_list', 'from_table', 'where_clause', 'group_expressions', 'group_sets', 'aggregate_handling', 'having', 'sample', 'qualify'],
  SET_OPERATION_NODE: ['setop_type', 'left', 'right', 'setop_all'],
  RECURSIVE_CTE_NODE: ['cte_name', 'union_all', 'left', 'right', 'aliases', 'key_targets'],
};

/** Known fields of each result modifier. */
export const MODIFIER_FIELDS: Record<string, readonly string[]> = {
  ORDER_MODIFIER: ['orders'],
  LIMIT_MODIFIER: ['limit', 'offset'],
  LIMIT_PERCENT_MODIFIER: ['limit', 'offset'],
  DISTINCT_MODIFIER: ['distinct_on_targets'],
};
