import { APPROVAL_POLICIES, SESSION_STATUSES, type SessionView } from '../../../protocol/session.ts';
import { JSON_OPTION, oneOf, parseCommandArgs, required, type Command } from '../command.ts';
import { formatSession, formatSessionTable, printJson } from '../output.ts';

/** `cleanroom session create`. */
export const sessionCreate: Command = {
  path: ['session', 'create'],
  usage: 'cleanroom session create --name NAME [--participant EMAIL ...] [--cross-party-joins | --no-cross-party-joins] [--approval none|dataset_owners|all_participants] [--json]',
  summary: 'Create a session you own',
  options: [
    ['--name NAME', 'the session name (required)'],
    ['--participant EMAIL', 'invite a participant; repeat for more'],
    ['--cross-party-joins', 'WARNING: allow queries to join data of different parties (default: not allowed)'],
    ['--no-cross-party-joins', 'refuse joins across parties (the default)'],
    ['--approval POLICY', 'who approves a query: none, dataset_owners or all_participants (default)'],
    ['--json', 'print the session as JSON'],
  ],
  async run(ctx, argv) {
    const { values } = parseCommandArgs(this, argv, {
      ...JSON_OPTION,
      name: { type: 'string' },
      participant: { type: 'string', multiple: true },
      'cross-party-joins': { type: 'boolean' },
      approval: { type: 'string' },
    });
    const approval = oneOf(this, values.approval, APPROVAL_POLICIES, '--approval');
    const session = await ctx.api.createSession({
      name: required(this, values.name, '--name'),
      ...(values.participant !== undefined ? { participant_emails: values.participant } : {}),
      ...(values['cross-party-joins'] !== undefined ? { allow_cross_party_joins: values['cross-party-joins'] } : {}),
      ...(approval !== undefined ? { approval_policy: approval } : {}),
    });
    show(ctx.io, values.json, session);
  },
};

/** `cleanroom session list`. */
export const sessionList: Command = {
  path: ['session', 'list'],
  usage: 'cleanroom session list [--status ACTIVE|CLOSED] [--json]',
  summary: 'List the sessions you take part in, newest first (all pages)',
  options: [
    ['--status STATUS', 'only ACTIVE or only CLOSED sessions'],
    ['--json', 'print {sessions: [...]} as JSON'],
  ],
  async run(ctx, argv) {
    const { values } = parseCommandArgs(this, argv, { ...JSON_OPTION, status: { type: 'string' } });
    const status = oneOf(this, values.status, SESSION_STATUSES, '--status');
    const sessions: SessionView[] = [];
    for await (const session of ctx.api.iterateSessions({ ...(status !== undefined ? { status } : {}), limit: 200 })) {
      sessions.push(session);
    }
    if (values.json) printJson(ctx.io, { sessions });
    else ctx.io.stdout(formatSessionTable(sessions));
  },
};

/** `cleanroom session show ID`. */
export const sessionShow: Command = {
  path: ['session', 'show'],
  usage: 'cleanroom session show ID [--json]',
  summary: 'Show one session',
  options: [['--json', 'print the session as JSON']],
  async run(ctx, argv) {
    const { values, positionals } = parseCommandArgs(this, argv, { ...JSON_OPTION }, ['ID']);
    show(ctx.io, values.json, await ctx.api.getSession(positionals[0]!));
  },
};

/** `cleanroom session close ID`. */
export const sessionClose: Command = {
  path: ['session', 'close'],
  usage: 'cleanroom session close ID [--json]',
  summary: 'Close a session you own (closing a closed session changes nothing)',
  options: [['--json', 'print the closed session as JSON']],
  async run(ctx, argv) {
    const { values, positionals } = parseCommandArgs(this, argv, { ...JSON_OPTION }, ['ID']);
    show(ctx.io, values.json, await ctx.api.closeSession(positionals[0]!));
  },
};

function show(io: Parameters<typeof printJson>[0], json: boolean | undefined, session: SessionView): void {
  if (json) printJson(io, session);
  else io.stdout(formatSession(session));
}
