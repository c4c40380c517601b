import { readFile, stat } from 'node:fs/promises';
import { CleanroomError } from '../../../protocol/errors.ts';
import { QUERY_STATUSES } from '../../../protocol/query.ts';
import { MAX_SQL_LENGTH } from '../../../protocol/task.ts';
import type { QueryView } from '../../sdk/schemas.ts';
import { JSON_OPTION, oneOf, parseCommandArgs, type Command } from '../command.ts';
import { UsageError } from '../errors.ts';
import { printJson, type Io } from '../output.ts';
import { waitAndShow } from '../query-outcome.ts';
import { formatQuery, formatQueryTable } from '../query-output.ts';

const DEFAULT_WAIT_SECONDS = 300;
const MAX_WAIT_SECONDS = 86_400;

/** `cleanroom query propose SESSION --sql SQL | --sql-file FILE`. */
export const queryPropose: Command = {
  path: ['query', 'propose'],
  usage: 'cleanroom query propose SESSION (--sql SQL | --sql-file FILE) [--recipient EMAIL ...] [--wait [--timeout SECONDS]] [--json]',
  summary: 'Propose a query in a session (it runs once the approval policy is met)',
  options: [
    ['--sql SQL', 'the query text'],
    ['--sql-file FILE', 'read the query text from FILE instead'],
    ['--recipient EMAIL', 'who may read the result (a participant); repeat for more; default: you'],
    ['--wait', 'then wait as `query show --wait` does (exit 3 if it does not succeed)'],
    ['--timeout SECONDS', `with --wait: give up after SECONDS (default ${DEFAULT_WAIT_SECONDS}); exit 5 with WAIT_TIMEOUT`],
    ['--json', 'print the query as JSON'],
  ],
  async run(ctx, argv) {
    const { values, positionals } = parseCommandArgs(
      this,
      argv,
      { ...JSON_OPTION, ...WAIT_OPTIONS, sql: { type: 'string' }, 'sql-file': { type: 'string' }, recipient: { type: 'string', multiple: true } },
      ['SESSION'],
    );
    if ((values.sql === undefined) === (values['sql-file'] === undefined)) {
      throw new UsageError('give exactly one of --sql and --sql-file', this.usage);
    }
    const timeoutSeconds = waitTimeout(this, values);
    const sql = values.sql ?? (await readSqlFile(values['sql-file']!));
    const query = await ctx.api.proposeQuery(positionals[0]!, {
      sql,
      ...(values.recipient !== undefined ? { recipients: values.recipient } : {}),
    });
    if (timeoutSeconds === null) show(ctx.io, values.json, query);
    else await waitAndShow(ctx, query.session_id, query.id, { json: values.json, timeoutSeconds });
  },
};

/** `cleanroom query list SESSION`. */
export const queryList: Command = {
  path: ['query', 'list'],
  usage: `cleanroom query list SESSION [--status STATUS] [--json]`,
  summary: "List a session's queries, newest first (all pages)",
  options: [
    ['--status STATUS', `only queries in STATUS: ${QUERY_STATUSES.join(', ')}`],
    ['--json', 'print {queries: [...]} as JSON'],
  ],
  async run(ctx, argv) {
    const { values, positionals } = parseCommandArgs(this, argv, { ...JSON_OPTION, status: { type: 'string' } }, ['SESSION']);
    const status = oneOf(this, values.status, QUERY_STATUSES, '--status');
    const queries: QueryView[] = [];
    for await (const query of ctx.api.iterateQueries(positionals[0]!, { ...(status !== undefined ? { status } : {}), limit: 200 })) {
      queries.push(query);
    }
    if (values.json) printJson(ctx.io, { queries });
    else ctx.io.stdout(formatQueryTable(queries));
  },
};

/** `cleanroom query show SESSION QUERY [--wait]`. */
export const queryShow: Command = {
  path: ['query', 'show'],
  usage: 'cleanroom query show SESSION QUERY [--wait [--timeout SECONDS]] [--json]',
  summary: 'Show a query: status, approvals, timings and error code',
  options: [
    ['--wait', 'poll until the query reaches a final status; exit 0 if it SUCCEEDED, 3 if FAILED, REJECTED, CANCELLED or EXPIRED'],
    ['--timeout SECONDS', `with --wait: give up after SECONDS (default ${DEFAULT_WAIT_SECONDS}); exit 5 with WAIT_TIMEOUT`],
    ['--json', 'print the query as JSON'],
  ],
  async run(ctx, argv) {
    const { values, positionals } = parseCommandArgs(this, argv, { ...JSON_OPTION, ...WAIT_OPTIONS }, ['SESSION', 'QUERY']);
    const [sessionId, queryId] = positionals as [string, string];
    const timeoutSeconds = waitTimeout(this, values);
    if (timeoutSeconds === null) show(ctx.io, values.json, await ctx.api.getQuery(sessionId, queryId));
    else await waitAndShow(ctx, sessionId, queryId, { json: values.json, timeoutSeconds });
  },
};

/** `cleanroom query approve|reject|cancel SESSION QUERY`: one decision, the query after it. */
function decision(word: 'approve' | 'reject' | 'cancel', summary: string): Command {
  return {
    path: ['query', word],
    usage: `cleanroom query ${word} SESSION QUERY [--json]`,
    summary,
    options: [['--json', 'print the query as JSON']],
    async run(ctx, argv) {
      const { values, positionals } = parseCommandArgs(this, argv, { ...JSON_OPTION }, ['SESSION', 'QUERY']);
      const [sessionId, queryId] = positionals as [string, string];
      const api = ctx.api;
      const query = word === 'approve' ? await api.approveQuery(sessionId, queryId) : word === 'reject' ? await api.rejectQuery(sessionId, queryId) : await api.cancelQuery(sessionId, queryId);
      show(ctx.io, values.json, query);
    },
  };
}

export const queryApprove = decision('approve', 'Approve a query you are a required approver of (the last approval queues it)');
export const queryReject = decision('reject', 'Reject a query you are a required approver of (final)');
export const queryCancel = decision('cancel', 'Cancel a query that has not started (proposer or session owner)');

/** The SQL in a file; one far beyond the API's limit is refused before it is read into memory. */
async function readSqlFile(path: string): Promise<string> {
  // UTF-8 needs at most 3 bytes per UTF-16 code unit.
  if ((await stat(path)).size > MAX_SQL_LENGTH * 3) {
    throw new CleanroomError('VALIDATION_FAILED', `sql must be at most ${MAX_SQL_LENGTH} characters`);
  }
  return readFile(path, 'utf8');
}

const WAIT_OPTIONS = { wait: { type: 'boolean' }, timeout: { type: 'string' } } as const;

/** Seconds to wait with `--wait` (null without it); `--timeout` alone is a usage error. */
function waitTimeout(command: Pick<Command, 'usage'>, values: { wait?: boolean; timeout?: string }): number | null {
  if (values.timeout !== undefined && !values.wait) throw new UsageError('--timeout needs --wait', command.usage);
  if (!values.wait) return null;
  return values.timeout === undefined ? DEFAULT_WAIT_SECONDS : waitSeconds(command, values.timeout);
}

function waitSeconds(command: Pick<Command, 'usage'>, raw: string): number {
  const seconds = /^\d{1,6}$/.test(raw) ? Number(raw) : Number.NaN;
  if (!(seconds >= 1 && seconds <= MAX_WAIT_SECONDS)) {
    throw new UsageError(`--timeout must be a whole number of seconds, 1-${MAX_WAIT_SECONDS}`, command.usage);
  }
  return seconds;
}

function show(io: Io, json: boolean | undefined, query: QueryView): void {
  if (json) printJson(io, query);
  else io.stdout(formatQuery(query));
}
