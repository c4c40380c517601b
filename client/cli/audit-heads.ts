import { chmod, mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as v from 'valibot';
import type { AuditHead } from '../../protocol/audit.ts';
import { CleanroomError } from '../../protocol/errors.ts';
import { SessionIdSchema } from '../../protocol/session.ts';
import { CliError } from './errors.ts';
import { writePrivateFile } from './files.ts';

const HeadFileSchema = v.object({
  api: v.pipe(v.string(), v.url()),
  session_id: SessionIdSchema,
  seq: v.pipe(v.number(), v.integer(), v.minValue(1)),
  hash: v.pipe(v.string(), v.regex(/^[0-9a-f]{64}$/)),
});

/** Where the last audit head seen for a session is kept: `<home>/audit/<session id>.json`. */
export function auditHeadPath(home: string, sessionId: string): string {
  // The id becomes a file name: `..` or a slash must never get this far.
  if (!v.is(SessionIdSchema, sessionId)) throw new CleanroomError('VALIDATION_FAILED', 'not a valid session id');
  return join(home, 'audit', `${sessionId}.json`);
}

/**
 * The head last seen for the session, or null when none was kept. Kept by session id alone, not
 * by API URL: the same session reached under another URL must still hold what was seen.
 */
export async function readAuditHead(home: string, sessionId: string): Promise<AuditHead | null> {
  const path = auditHeadPath(home, sessionId);
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
  const parsed = v.safeParse(HeadFileSchema, value);
  if (!parsed.success || parsed.output.session_id !== sessionId) {
    throw new CliError('AUDIT_HEAD_INVALID', `${path} is damaged: delete it to start trusting the audit log afresh`);
  }
  return { seq: parsed.output.seq, hash: parsed.output.hash };
}

/** Keeps `head` as the last one seen, with the API it came from (the directory 0700, the file 0600). */
export async function writeAuditHead(home: string, api: string, sessionId: string, head: AuditHead): Promise<void> {
  const created = await mkdir(home, { recursive: true, mode: 0o700 });
  if (created !== undefined) await chmod(home, 0o700);
  await mkdir(join(home, 'audit'), { recursive: true, mode: 0o700 });
  await writePrivateFile(auditHeadPath(home, sessionId), `${JSON.stringify({ api, session_id: sessionId, seq: head.seq, hash: head.hash }, null, 2)}\n`);
}
