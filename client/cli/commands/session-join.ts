import { requestDevToken } from '../../sdk/dev-idp.ts';
import { generateParticipantKeys, registerParticipantKeys, type ParticipantKeys } from '../../sdk/participant-keys.ts';
import { JSON_OPTION, parseCommandArgs, type CliContext, type Command } from '../command.ts';
import { CliError } from '../errors.ts';
import { currentCredentials } from '../identity.ts';
import { assertOwnKeys, createKeyFile, keyFilePath, participantKeysOf, readKeyFile } from '../key-store.ts';
import { printJson, safe } from '../output.ts';

/** `cleanroom session join ID`: this user's keys for the session, made once and registered. */
export const sessionJoin: Command = {
  path: ['session', 'join'],
  usage: 'cleanroom session join ID [--json]',
  summary: 'Make your signing and encryption keys for a session (once) and register their public halves',
  options: [['--json', 'print {session_id, email, signing_kid, encryption_kid, keys_file, created} as JSON']],
  async run(ctx, argv) {
    const { values, positionals } = parseCommandArgs(this, argv, { ...JSON_OPTION }, ['ID']);
    const sessionId = positionals[0]!;
    const credentials = await currentCredentials({ api: ctx.config.api, home: ctx.config.home, fetch: ctx.fetch, now: ctx.now });
    if (credentials.email === null) {
      throw new CliError('NOT_LOGGED_IN', 'the stored token names no email: run `cleanroom login` again');
    }
    // SESSION_NOT_FOUND before any key is made for a session that is not there (or not ours).
    await ctx.api.getSession(sessionId);
    const { keys, created } = await sessionKeys(ctx, sessionId, credentials.email);
    const { participant, binding } = await registerParticipantKeys({
      api: ctx.api,
      sessionId,
      keys,
      bindingToken: (nonce) => bindingToken(ctx, credentials.email!, nonce),
    });
    const path = keyFilePath(ctx.config.home, sessionId);
    if (values.json) {
      printJson(ctx.io, {
        session_id: sessionId,
        email: participant.email,
        signing_kid: binding.signing_kid,
        encryption_kid: binding.encryption_kid,
        keys_file: path,
        created,
      });
      return;
    }
    const rows: Array<[string, string]> = [
      ['session', sessionId],
      ['participant', participant.email],
      ['signing key', binding.signing_kid],
      ['encryption key', binding.encryption_kid],
      ['keys', `${path} (${created ? 'new' : 'existing, registered again'}; private: keep it safe)`],
    ];
    ctx.io.stdout(`${rows.map(([label, value]) => `${label.padEnd(19)}${safe(value)}`).join('\n')}\n`);
  },
};

/** The stored keys of this session, or new ones stored before they are registered anywhere. */
async function sessionKeys(ctx: CliContext, sessionId: string, email: string): Promise<{ keys: ParticipantKeys; created: boolean }> {
  const who = { api: ctx.config.api, email };
  const existing = await readKeyFile(ctx.config.home, sessionId);
  if (existing !== null) {
    assertOwnKeys(existing, ctx.config.home, who);
    return { keys: participantKeysOf(existing), created: false };
  }
  const keys = await generateParticipantKeys();
  const file = {
    v: 1 as const,
    api: ctx.config.api,
    email,
    session_id: sessionId,
    created_at: ctx.now().toISOString(),
    signing_jwk: privateJwk(keys.signing),
    encryption_jwk: privateJwk(keys.encryption),
  };
  try {
    await createKeyFile(ctx.config.home, file);
  } catch (error) {
    // A concurrent join stored its keys first: use those, so only one pair is ever registered.
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    const winner = await readKeyFile(ctx.config.home, sessionId);
    if (winner === null) throw error;
    assertOwnKeys(winner, ctx.config.home, who);
    return { keys: participantKeysOf(winner), created: false };
  }
  return { keys, created: true };
}

function privateJwk(jwk: ParticipantKeys['signing']) {
  return { kty: 'EC' as const, crv: 'P-256' as const, x: jwk.x!, y: jwk.y!, d: jwk.d! };
}

/**
 * An ID token whose nonce binds the keys. The local stack's dev identity provider issues one; in
 * GCP it would come from Google sign-in with that nonce, which this CLI does not do yet.
 */
async function bindingToken(ctx: CliContext, email: string, nonce: string): Promise<string> {
  const issued = await requestDevToken({ baseUrl: ctx.config.api, email, nonce, fetch: ctx.fetch });
  if (issued === null) {
    throw new CliError(
      'SIGN_IN_UNSUPPORTED',
      `${ctx.config.api} is not a local stack: registering keys needs an ID token carrying the key-binding nonce, which only Google sign-in can issue, and this CLI cannot sign in with Google yet`,
    );
  }
  return issued.id_token;
}
