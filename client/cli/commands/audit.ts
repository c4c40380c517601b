import type { AuditEntry } from '../../../protocol/audit.ts';
import { readAuditLog, type AuditLogProblem } from '../../sdk/audit-log.ts';
import { readAuditHead, writeAuditHead } from '../audit-heads.ts';
import { JSON_OPTION, parseCommandArgs, type Command } from '../command.ts';
import { CliError } from '../errors.ts';
import { printJson, safe } from '../output.ts';

const PROBLEMS: Record<AuditLogProblem, string> = {
  broken_link: 'does not follow the entry before it (sequence, previous hash or its own hash)',
  head_mismatch: 'is the head the API reports, but the entries it served do not end in it (entries are missing)',
  rewritten: 'is the head this CLI saw before, and the chain no longer holds it: the log was rewritten or cut since',
};

/** `cleanroom audit SESSION`: the session's audit log, its hash chain verified here. */
export const audit: Command = {
  path: ['audit'],
  usage: 'cleanroom audit SESSION [--json]',
  summary: "Print a session's audit log after verifying its hash chain here (and that it still holds the head you saw last)",
  options: [['--json', 'print {session_id, verified, head, entries} as JSON']],
  async run(ctx, argv) {
    const { values, positionals } = parseCommandArgs(this, argv, { ...JSON_OPTION }, ['SESSION']);
    const sessionId = positionals[0]!;
    const remembered = await readAuditHead(ctx.config.home, sessionId);
    const log = await readAuditLog(ctx.api, sessionId, { remembered });
    if (!log.ok) {
      throw new CliError(
        'AUDIT_CHAIN_BROKEN',
        `the audit log of session ${sessionId} is not intact: entry ${log.seq} ${PROBLEMS[log.problem]}; do not trust this session's record, tell its participants`,
      );
    }
    if (log.head !== null) await writeAuditHead(ctx.config.home, ctx.config.api, sessionId, log.head);
    if (values.json) {
      printJson(ctx.io, { session_id: sessionId, verified: true, head: log.head, entries: log.entries });
      return;
    }
    ctx.io.stdout(formatAuditTable(log.entries));
    const head = log.head === null ? 'empty' : `head ${log.head.seq} ${log.head.hash}`;
    ctx.io.stdout(`chain verified: ${log.entries.length} entries, ${head}${remembered === null ? '' : ` (still holds entry ${remembered.seq} seen before)`}\n`);
  },
};

/** Entries as a table, one per line, oldest first. */
export function formatAuditTable(entries: readonly AuditEntry[]): string {
  if (entries.length === 0) return 'no entries\n';
  const rows = [
    ['SEQ', 'AT', 'ACTOR', 'ACTION', 'DETAILS'],
    ...entries.map((e) =>
      [
        String(e.seq),
        e.at,
        e.actor,
        e.action,
        Object.entries(e.details)
          .map(([key, value]) => `${key}=${String(value)}`)
          .join(' '),
      ].map(safe),
    ),
  ];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return `${rows.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ')).join('\n')}\n`;
}
