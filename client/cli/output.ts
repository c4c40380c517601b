import type { SessionView } from '../../protocol/session.ts';

/** Where a command writes; the composition root binds it to the process streams. */
export interface Io {
  stdout(text: string): void;
  stderr(text: string): void;
}

/** One JSON document per command on stdout, for scripts. */
export function printJson(io: Io, value: unknown): void {
  io.stdout(`${JSON.stringify(value, null, 2)}\n`);
}

/** Strips control characters so text from the API cannot drive the terminal. */
export function safe(text: string): string {
  return text.replace(/[\u0000-\u001f\u007f-\u009f]/g, '?');
}

/** A session as labelled lines. */
export function formatSession(session: SessionView): string {
  const participants = session.participants.map((p) => (p.role === 'owner' ? `${p.email} (owner)` : p.email));
  const rows: Array<[string, string]> = [
    ['id', session.id],
    ['name', session.name],
    ['status', session.status],
    ['owner', session.owner_email],
    ['participants', participants.join(', ')],
    ['cross-party joins', session.config.allow_cross_party_joins ? 'allowed' : 'not allowed'],
    ['approval', session.config.approval_policy],
    ['created', session.created_at],
  ];
  if (session.closed_at !== null) rows.push(['closed', session.closed_at]);
  return `${rows.map(([label, value]) => `${label.padEnd(19)}${safe(value)}`).join('\n')}\n`;
}

/** Sessions as a table, one per line. */
export function formatSessionTable(sessions: readonly SessionView[]): string {
  if (sessions.length === 0) return 'no sessions\n';
  const rows = [['ID', 'STATUS', 'CREATED', 'OWNER', 'NAME'], ...sessions.map((s) => [s.id, s.status, s.created_at, s.owner_email, s.name].map(safe))];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return `${rows.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ')).join('\n')}\n`;
}
