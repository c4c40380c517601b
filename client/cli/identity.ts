import { requestDevToken } from '../sdk/dev-idp.ts';
import type { FetchLike } from '../sdk/transport.ts';
import { readCredentials, writeCredentials, type Credentials } from './credentials.ts';
import { CliError } from './errors.ts';

/** What finding a current token needs. */
export interface IdentityDeps {
  api: string;
  home: string;
  fetch: FetchLike;
  now: () => Date;
}

/** A token this close to expiry is refreshed first, so it does not expire in flight. */
const EXPIRY_MARGIN_MS = 60_000;

/**
 * The stored credentials with a token still valid for a while. An expired dev token is
 * re-issued for the stored email when the API is a local stack; otherwise the user must log in
 * again.
 */
export async function currentCredentials(deps: IdentityDeps): Promise<Credentials> {
  const stored = await readCredentials(deps.home);
  if (stored === null) {
    throw new CliError('NOT_LOGGED_IN', 'not logged in: run `cleanroom login --email you@example.com`');
  }
  if (stored.api !== deps.api) {
    throw new CliError('NOT_LOGGED_IN', `logged in to ${stored.api}, not ${deps.api}: run \`cleanroom login\` again`);
  }
  if (stored.expires_at === null || Date.parse(stored.expires_at) - deps.now().getTime() > EXPIRY_MARGIN_MS) {
    return stored;
  }
  if (stored.email !== null) {
    const issued = await requestDevToken({ baseUrl: deps.api, email: stored.email, fetch: deps.fetch });
    if (issued !== null) {
      const refreshed: Credentials = { ...stored, id_token: issued.id_token, expires_at: issued.expires_at };
      await writeCredentials(deps.home, refreshed);
      return refreshed;
    }
  }
  const who = stored.email ?? 'the stored identity';
  throw new CliError('TOKEN_EXPIRED', `the token of ${who} expired at ${stored.expires_at}: run \`cleanroom login\` again`);
}
