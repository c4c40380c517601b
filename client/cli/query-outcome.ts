import { waitForQuery } from '../sdk/query-wait.ts';
import type { QueryView } from '../sdk/schemas.ts';
import type { CliContext } from './command.ts';
import { CliError } from './errors.ts';
import { EXIT } from './exit-codes.ts';
import { printJson, safe } from './output.ts';
import { formatQuery } from './query-output.ts';

/** What to do next for a FAILED query's error code (fixed codes only: no engine text exists here). */
const FAILED_NEXT_STEP: Record<string, string> = {
  POLICY_VIOLATION: "the worker's policy refused the SQL: change the query and propose it again",
  QUERY_TIMEOUT: 'the query ran past its time limit: make it cheaper (filter or aggregate earlier) and propose it again',
  QUERY_MEMORY_LIMIT: 'the query needed more memory than its limit: aggregate earlier or read fewer columns',
  RESULT_TOO_LARGE: 'the result is over its row or size limit: aggregate more or add a LIMIT',
  QUERY_FAILED: 'the SQL did not run (a wrong table, column, type or function): compare it with the tables `cleanroom dataset list` shows',
  TASK_EXPIRED: 'the worker never ran it in time: propose it again',
  SESSION_KEY_UNAVAILABLE: "the worker could not use the session's key: try again later",
};

/** What to do next for an input the worker could not load. */
const DATASET_NEXT_STEP = 'an input dataset could not be loaded as registered: its owner uploads it again under a new table name (`cleanroom dataset list` shows the owners)';

/**
 * Waits for a query to reach a final status, printing each status change on stderr (unless
 * `json`), then the query on stdout. A query that did not succeed is still printed, then
 * reported as a CliError with exit code 3; one that is not final in time exits 5 (WAIT_TIMEOUT).
 */
export async function waitAndShow(ctx: CliContext, sessionId: string, queryId: string, options: { json: boolean | undefined; timeoutSeconds: number }): Promise<void> {
  const waited = await waitForQuery(ctx.api, sessionId, queryId, {
    timeoutMs: options.timeoutSeconds * 1000,
    // Progress goes to stderr, so stdout holds only the final answer.
    ...(options.json ? {} : { onStatus: (q: QueryView) => ctx.io.stderr(`query ${safe(q.id)}: ${q.status}\n`) }),
  });
  if (!waited.done) {
    throw new CliError('WAIT_TIMEOUT', `query ${queryId} is still ${waited.query.status} after ${options.timeoutSeconds} s${pendingHint(waited.query)}`, { exitCode: EXIT.waitTimeout });
  }
  const query = waited.query;
  if (options.json) printJson(ctx.io, query);
  else ctx.io.stdout(formatQuery(query));
  const unsuccessful = outcome(query);
  if (unsuccessful !== null) throw unsuccessful;
}

/** The error for a final status other than SUCCEEDED, or null. */
export function outcome(query: QueryView): CliError | null {
  const id = safe(query.id);
  const exitCode = EXIT.queryUnsuccessful;
  switch (query.status) {
    case 'SUCCEEDED':
      return null;
    case 'FAILED': {
      const code = safe(query.error_code ?? 'QUERY_FAILED');
      const next = FAILED_NEXT_STEP[code] ?? (code.startsWith('DATASET_') ? DATASET_NEXT_STEP : 'see the error code in docs/data-path.md');
      return new CliError('QUERY_FAILED', `query ${id} FAILED with ${code}: ${next}`, { exitCode });
    }
    case 'REJECTED': {
      const by = query.decisions.filter((d) => d.decision === 'reject').map((d) => safe(d.email));
      return new CliError('QUERY_REJECTED', `query ${id} was rejected${by.length > 0 ? ` by ${by.join(', ')}` : ''}: agree on a changed query with them and propose it again`, { exitCode });
    }
    case 'CANCELLED':
      return new CliError('QUERY_CANCELLED', `query ${id} was cancelled (by its proposer, the session owner, or because the session closed)`, { exitCode });
    case 'EXPIRED':
      return new CliError('QUERY_EXPIRED', `query ${id} expired before every approval arrived: propose it again and ask the approvers to run \`cleanroom query approve\``, {
        exitCode,
      });
    default:
      throw new TypeError(`not a final status: ${query.status}`);
  }
}

/** For a query still waiting for approvals: who has not decided, and the command they run. */
function pendingHint(query: QueryView): string {
  if (query.status !== 'PENDING_APPROVAL') return '';
  const decided = new Set(query.decisions.map((d) => d.email));
  const pending = query.required_approvers.filter((email) => !decided.has(email)).map(safe);
  if (pending.length === 0) return '';
  return ` (waiting for ${pending.join(', ')}: they run \`cleanroom query approve ${safe(query.session_id)} ${safe(query.id)}\`)`;
}
