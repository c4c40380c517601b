import { readFile, stat } from 'node:fs/promises';
import { CleanroomError } from '../../../protocol/errors.ts';
import { QUERY_STATUSES } from '../../../protocol/query.ts';
import { MAX_SQL_LENGTH } from '../../../protocol/task.ts';
import { waitForQuery } from '../../sdk/query-wait.ts';
import type { QueryView } from '../../sdk/schemas.ts';
import { JSON_OPTION, oneOf, parseCommandArgs, type Command } from '../command.ts';
import { CliError, UsageError } from '../errors.ts';
import { printJson, safe, type Io } from '../output.ts';
import { formatQuery, formatQueryTable } from '../query-output.ts';

const DEFAULT_WAIT_SECONDS = 300;
const MAX_WAIT_SECONDS = 86_400;

/** `cleanroom query propose SESSION --sql SQL | --sql-file FILE`. */
export const queryPropose: Command = {
  path: ['query', 'propose'],
  usage: 'cleanroom query propose SESSION (--sql SQL | --sql-file FILE) [--recipient EMAIL ...] [--json]',
  summary: 'Propose a query in a session (it runs once the approval policy is met)',
  options: [
    ['--sql SQL', 'the query text'],
    ['--sql-file FILE', 'read the query text from FILE instead'],
    ['--recipient EMAIL', 'who may read the result (a participant); repeat for more; default: you'],
    ['--json', 'print the query as JSON'],
  ],
  async run(ctx, argv) {
    const { values, positionals } = parseCommandArgs(this, argv, { ...JSON_OPTION, sql: { type: 'string' }, 'sql-file': { type: 'string' }, recipient: { type: 'string', multiple: true } }, [
      'SESSION',
    ]);
    if ((values.sql === undefined) === (values['sql-file'] === undefined)) {
      throw new UsageError('give exactly one of --sql and --sql-file', this.usage);
    }
    const sql = values.sql ?? (await readSqlFile(values['sql-file']!));
    const query = await ctx.api.proposeQuery(positionals[0]!, {
      sql,
      ...(values.recipient !== undefined ? { recipients: values.recipient } : {}),
    });
    show(ctx.io, values.json, query);
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
    ['--wait', 'poll until the query reaches a final status (SUCCEEDED, FAILED, REJECTED, CANCELLED, EXPIRED)'],
    ['--timeout SECONDS', `with --wait: give up after SECONDS (default ${DEFAULT_WAIT_SECONDS}); exit 1 with WAIT_TIMEOUT`],
    ['--json', 'print the query as JSON'],
  ],
  async run(ctx, argv) {
    const { values, positionals } = parseCommandArgs(this, argv, { ...JSON_OPTION, wait: { type: 'boolean' }, timeout: { type: 'string' } }, ['SESSION', 'QUERY']);
    const [sessionId, queryId] = positionals as [string, string];
    if (values.timeout !== undefined && !values.wait) throw new UsageError('--timeout needs --wait', this.usage);
    if (!values.wait) {
      show(ctx.io, values.json, await ctx.api.getQuery(sessionId, queryId));
      return;
    }
    const seconds = values.timeout === undefined ? DEFAULT_WAIT_SECONDS : waitSeconds(this, values.timeout);
    const waited = await waitForQuery(ctx.api, sessionId, queryId, {
      timeoutMs: seconds * 1000,
      // Progress goes to stderr, so stdout holds only the final answer.
      ...(values.json ? {} : { onStatus: (q: QueryView) => ctx.io.stderr(`query ${safe(q.id)}: ${q.status}\n`) }),
    });
    if (!waited.done) {
      throw new CliError('WAIT_TIMEOUT', `query ${queryId} is still ${waited.query.status} after ${seconds} s`);
    }
    show(ctx.io, values.json, waited.query);
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
