import { CleanroomApi } from '../../sdk/api-client.ts';
import { requestDevToken } from '../../sdk/dev-idp.ts';
import { unverifiedClaims } from '../claims.ts';
import { JSON_OPTION, parseCommandArgs, type CliContext, type Command } from '../command.ts';
import { credentialsPath, removeCredentials, writeCredentials, type Credentials } from '../credentials.ts';
import { CliError, UsageError } from '../errors.ts';
import { currentCredentials } from '../identity.ts';
import { printJson } from '../output.ts';

/** `cleanroom login --email E | --token T`. */
export const login: Command = {
  path: ['login'],
  usage: 'cleanroom login (--email EMAIL | --token ID_TOKEN) [--json]',
  summary: 'Sign in: a dev token from the local stack for EMAIL, or store an ID token obtained elsewhere',
  options: [
    ['--email EMAIL', 'local stack only: get a token from its dev identity provider'],
    ['--token ID_TOKEN', 'store this ID token (checked with one API call first)'],
    ['--json', 'print the result as JSON'],
  ],
  async run(ctx, argv) {
    const { values } = parseCommandArgs(this, argv, { ...JSON_OPTION, email: { type: 'string' }, token: { type: 'string' } });
    if ((values.email === undefined) === (values.token === undefined)) {
      throw new UsageError('give exactly one of --email and --token', this.usage);
    }
    const credentials = values.email !== undefined ? await devLogin(ctx, values.email) : await tokenLogin(ctx, values.token!);
    await writeCredentials(ctx.config.home, credentials);
    const summary = { api: credentials.api, email: credentials.email, expires_at: credentials.expires_at };
    if (values.json) printJson(ctx.io, summary);
    else {
      const expiry = credentials.expires_at === null ? '' : ` (token expires ${credentials.expires_at})`;
      ctx.io.stdout(`logged in as ${credentials.email ?? 'an unknown identity'} at ${credentials.api}${expiry}\n`);
    }
  },
};

async function devLogin(ctx: CliContext, email: string): Promise<Credentials> {
  const issued = await requestDevToken({ baseUrl: ctx.config.api, email, fetch: ctx.fetch });
  if (issued === null) {
    throw new CliError(
      'SIGN_IN_UNSUPPORTED',
      `${ctx.config.api} is not a local stack (it has no dev identity provider); Google sign-in is not supported by this CLI yet: use \`cleanroom login --token "$(gcloud auth print-identity-token)"\``,
    );
  }
  return {
    api: ctx.config.api,
    email: unverifiedClaims(issued.id_token).email ?? email.toLowerCase(),
    id_token: issued.id_token,
    expires_at: issued.expires_at,
  };
}

async function tokenLogin(ctx: CliContext, token: string): Promise<Credentials> {
  // One cheap authenticated call: a token the API refuses is never stored.
  const probe = new CleanroomApi({ baseUrl: ctx.config.api, token: async () => token, fetch: ctx.fetch });
  await probe.listSessions({ limit: 1 });
  const claims = unverifiedClaims(token);
  return { api: ctx.config.api, email: claims.email, id_token: token, expires_at: claims.expires_at };
}

/** `cleanroom logout`. */
export const logout: Command = {
  path: ['logout'],
  usage: 'cleanroom logout [--json]',
  summary: 'Forget the stored credentials',
  options: [['--json', 'print the result as JSON']],
  async run(ctx, argv) {
    const { values } = parseCommandArgs(this, argv, { ...JSON_OPTION });
    const removed = await removeCredentials(ctx.config.home);
    if (values.json) printJson(ctx.io, { logged_out: removed });
    else ctx.io.stdout(removed ? `removed ${credentialsPath(ctx.config.home)}\n` : 'not logged in\n');
  },
};

/** `cleanroom token`: the bearer token, e.g. for `curl -H "Authorization: Bearer $(cleanroom token)"`. */
export const token: Command = {
  path: ['token'],
  usage: 'cleanroom token [--json]',
  summary: 'Print the current bearer ID token (re-issued if a local dev token expired)',
  options: [['--json', 'print {id_token, email, expires_at} as JSON']],
  async run(ctx, argv) {
    const { values } = parseCommandArgs(this, argv, { ...JSON_OPTION });
    const credentials = await currentCredentials({ api: ctx.config.api, home: ctx.config.home, fetch: ctx.fetch, now: ctx.now });
    if (values.json) {
      printJson(ctx.io, { id_token: credentials.id_token, email: credentials.email, expires_at: credentials.expires_at });
    } else ctx.io.stdout(`${credentials.id_token}\n`);
  },
};
