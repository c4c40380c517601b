import { JSON_OPTION, parseCommandArgs, type Command } from '../command.ts';
import { formatSession, printJson } from '../output.ts';

/** `cleanroom participant add|remove SESSION EMAIL`: the owner changes who takes part. */
function participantCommand(word: 'add' | 'remove', summary: string): Command {
  return {
    path: ['participant', word],
    usage: `cleanroom participant ${word} SESSION EMAIL [--json]`,
    summary,
    options: [['--json', 'print the session as JSON']],
    async run(ctx, argv) {
      const { values, positionals } = parseCommandArgs(this, argv, { ...JSON_OPTION }, ['SESSION', 'EMAIL']);
      const [sessionId, email] = positionals as [string, string];
      const session = word === 'add' ? await ctx.api.addParticipant(sessionId, email) : await ctx.api.removeParticipant(sessionId, email);
      if (values.json) printJson(ctx.io, session);
      else {
        ctx.io.stdout(formatSession(session));
        if (word === 'add') ctx.io.stderr(`next: ${email.toLowerCase()} runs \`cleanroom session join ${sessionId}\` to register their keys\n`);
      }
    },
  };
}

export const participantAdd = participantCommand('add', 'Add a participant to a session you own (they then run `session join`)');
export const participantRemove = participantCommand('remove', 'Remove a participant from a session you own');
