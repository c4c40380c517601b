import { chmod, link, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as v from 'valibot';
import { CleanroomError } from '../../protocol/errors.ts';
import { SessionIdSchema } from '../../protocol/session.ts';
import type { ParticipantKeys } from '../sdk/participant-keys.ts';
import { CliError } from './errors.ts';

const Coordinate = v.pipe(v.string(), v.regex(/^[A-Za-z0-9_-]{43}$/));
const PrivateJwkSchema = v.object({ kty: v.literal('EC'), crv: v.literal('P-256'), x: Coordinate, y: Coordinate, d: Coordinate });

const KeyFileSchema = v.object({
  v: v.literal(1),
  api: v.pipe(v.string(), v.url()),
  email: v.pipe(v.string(), v.maxLength(254)),
  session_id: SessionIdSchema,
  created_at: v.pipe(v.string(), v.isoTimestamp()),
  signing_jwk: PrivateJwkSchema,
  encryption_jwk: PrivateJwkSchema,
});

/** A participant's private keys for one session, as stored under `CLEANROOM_HOME/keys/`. */
export type KeyFile = v.InferOutput<typeof KeyFileSchema>;

/** Where a session's keys live: `<home>/keys/<session id>.json`. */
export function keyFilePath(home: string, sessionId: string): string {
  // The id becomes a file name: `..` or a slash must never get this far.
  if (!v.is(SessionIdSchema, sessionId)) throw new CleanroomError('VALIDATION_FAILED', 'not a valid session id');
  return join(home, 'keys', `${sessionId}.json`);
}

/** The stored keys of a session, or null when this home has none. */
export async function readKeyFile(home: string, sessionId: string): Promise<KeyFile | null> {
  const path = keyFilePath(home, sessionId);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    value = undefined;
  }
  const parsed = v.safeParse(KeyFileSchema, value);
  if (!parsed.success || parsed.output.session_id !== sessionId) {
    throw new CliError('KEYS_INVALID', `${path} is damaged: it holds no keys for session ${sessionId}`);
  }
  return parsed.output;
}

/**
 * Stores a session's keys readable by the user alone: `keys/` 0700 and the file 0600, written
 * under a temporary name and linked into place, so a crash never leaves half a key and an
 * existing file is never replaced (EEXIST: a concurrent join won, use its keys).
 */
export async function createKeyFile(home: string, file: KeyFile): Promise<void> {
  const created = await mkdir(home, { recursive: true, mode: 0o700 });
  // Only a home this call created is tightened: CLEANROOM_HOME may point at a shared one.
  if (created !== undefined) await chmod(home, 0o700);
  const dir = join(home, 'keys');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  // keys/ is the CLI's own: whatever made it, it holds private keys.
  await chmod(dir, 0o700);
  const path = keyFilePath(home, file.session_id);
  const temp = `${path}.${process.pid}.${Date.now()}.tmp`;
  try {
    await writeFile(temp, `${JSON.stringify(file, null, 2)}\n`, { mode: 0o600, flag: 'wx' });
    await chmod(temp, 0o600);
    await link(temp, path);
  } finally {
    await rm(temp, { force: true });
  }
}

/** The key pairs of a stored file, for the SDK. */
export function participantKeysOf(file: KeyFile): ParticipantKeys {
  return { signing: { ...file.signing_jwk }, encryption: { ...file.encryption_jwk } };
}

/**
 * The keys this user holds for a session at this API, or a CliError saying how to get them:
 * KEYS_NOT_FOUND before `session join`, KEYS_INVALID for another user's or another API's keys.
 */
export async function requireKeys(home: string, sessionId: string, who: { api: string; email: string | null }): Promise<KeyFile> {
  const file = await readKeyFile(home, sessionId);
  if (file === null) {
    throw new CliError('KEYS_NOT_FOUND', `no keys for session ${sessionId} in ${join(home, 'keys')}: run \`cleanroom session join ${sessionId}\` first`);
  }
  assertOwnKeys(file, home, who);
  return file;
}

/** Refuses a key file made for another identity or another API (the same home reused). */
export function assertOwnKeys(file: KeyFile, home: string, who: { api: string; email: string | null }): void {
  if (file.email !== who.email || file.api !== who.api) {
    throw new CliError(
      'KEYS_INVALID',
      `${keyFilePath(home, file.session_id)} holds the keys of ${file.email} at ${file.api}, not of ${who.email ?? 'the logged-in identity'} at ${who.api}: use another CLEANROOM_HOME`,
    );
  }
}
