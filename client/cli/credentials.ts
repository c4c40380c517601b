import { chmod, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as v from 'valibot';
import { CliError } from './errors.ts';

const FILE = 'credentials.json';

const CredentialsSchema = v.object({
  api: v.pipe(v.string(), v.url()),
  email: v.nullable(v.pipe(v.string(), v.maxLength(254))),
  id_token: v.pipe(v.string(), v.minLength(1), v.maxLength(8192)),
  expires_at: v.nullable(v.pipe(v.string(), v.isoTimestamp())),
});

/** What `login` stores: one identity for one API. */
export type Credentials = v.InferOutput<typeof CredentialsSchema>;

/** The credentials file inside `home`. */
export function credentialsPath(home: string): string {
  return join(home, FILE);
}

/** The stored credentials, or null when nobody logged in. */
export async function readCredentials(home: string): Promise<Credentials | null> {
  let text: string;
  try {
    text = await readFile(credentialsPath(home), 'utf8');
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
  const result = v.safeParse(CredentialsSchema, value);
  if (!result.success) {
    throw new CliError('CREDENTIALS_INVALID', `${credentialsPath(home)} is damaged: run \`cleanroom login\` again`);
  }
  return result.output;
}

/**
 * Stores credentials readable by the user alone: the directory 0700 (when this creates it), the
 * file 0600, written to a temporary name and renamed so a crash never leaves half a token.
 */
export async function writeCredentials(home: string, credentials: Credentials): Promise<void> {
  const created = await mkdir(home, { recursive: true, mode: 0o700 });
  // Only a directory this call created is tightened: CLEANROOM_HOME may point at a shared one.
  if (created !== undefined) await chmod(home, 0o700);
  const path = credentialsPath(home);
  const temp = `${path}.${process.pid}.tmp`;
  try {
    await writeFile(temp, `${JSON.stringify(credentials, null, 2)}\n`, { mode: 0o600, flag: 'w' });
    await chmod(temp, 0o600);
    await rename(temp, path);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
}

/** Forgets the stored credentials; false when there were none. */
export async function removeCredentials(home: string): Promise<boolean> {
  try {
    await rm(credentialsPath(home));
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw error;
  }
}
