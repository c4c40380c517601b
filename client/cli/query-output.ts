import type { QueryView } from '../sdk/schemas.ts';
import { safe } from './output.ts';

const LABEL = 19;
const SQL_PREVIEW = 60;

/** A query as labelled lines: status, approvals, timings, error code, then its SQL. */
export function formatQuery(query: QueryView): string {
  const decided = new Map(query.decisions.map((d) => [d.email, d.decision === 'approve' ? 'approved' : 'rejected']));
  const approvals = query.required_approvers.map((email) => `${email} (${decided.get(email) ?? 'pending'})`);
  const rows: Array<[string, string]> = [
    ['id', query.id],
    ['session', query.session_id],
    ['status', query.status],
    ['proposer', query.proposer],
    ['recipients', query.recipients.join(', ')],
    ['approvals', approvals.join(', ')],
    ['created', query.created_at],
  ];
  const timings: Array<[string, string | null]> = [
    ['approved', query.approved_at],
    ['queued', query.queued_at],
    ['started', query.started_at],
    ['finished', query.finished_at],
  ];
  for (const [label, at] of timings) if (at !== null) rows.push([label, at]);
  if (query.attempt > 1) rows.push(['attempt', String(query.attempt)]);
  const took = elapsed(query);
  if (took !== null) rows.push(['elapsed', took]);
  if (query.stats !== null) rows.push(['result size', `${query.stats.bytes} bytes`]);
  if (query.error_code !== null) rows.push(['error', query.error_code]);
  const lines = rows.map(([label, value]) => `${label.padEnd(LABEL)}${safe(value)}`);
  // Continuation lines of the SQL are indented under the first, each made safe on its own.
  const sql = query.sql.split(/\r?\n/).map((line, i) => `${(i === 0 ? 'sql' : '').padEnd(LABEL)}${safe(line)}`);
  return `${[...lines, ...sql].join('\n')}\n`;
}

/** Queries as a table, one per line, with the SQL's first line shortened. */
export function formatQueryTable(queries: readonly QueryView[]): string {
  if (queries.length === 0) return 'no queries\n';
  const rows = [['ID', 'STATUS', 'CREATED', 'PROPOSER', 'ERROR', 'SQL'], ...queries.map((q) => [q.id, q.status, q.created_at, q.proposer, q.error_code ?? '-', preview(q.sql)].map(safe))];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return `${rows.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ')).join('\n')}\n`;
}

/** Run time: the worker's (coarse) figure when reported, else start to finish. */
function elapsed(query: QueryView): string | null {
  if (query.stats !== null) return `${(query.stats.elapsed_ms / 1000).toFixed(1)} s`;
  if (query.started_at === null || query.finished_at === null) return null;
  const ms = Date.parse(query.finished_at) - Date.parse(query.started_at);
  return Number.isFinite(ms) && ms >= 0 ? `${(ms / 1000).toFixed(1)} s` : null;
}

function preview(sql: string): string {
  const line = sql.trim().replace(/\s+/g, ' ');
  return line.length > SQL_PREVIEW ? `${line.slice(0, SQL_PREVIEW - 3)}...` : line;
}
