import * as v from 'valibot';
import { CleanroomError } from '../../protocol/errors.ts';
import type { SessionCursor } from '../core/ports.ts';

const CursorSchema = v.strictObject({
  c: v.pipe(v.string(), v.isoTimestamp()),
  i: v.pipe(v.string(), v.regex(/^[A-Za-z0-9_-]{1,128}$/)),
});

/** An opaque page token: base64url JSON of the last item's sort key. */
export function encodeCursor(cursor: SessionCursor): string {
  return Buffer.from(JSON.stringify({ c: cursor.created_at, i: cursor.id })).toString('base64url');
}

export function decodeCursor(token: string): SessionCursor {
  try {
    const parsed = v.parse(CursorSchema, JSON.parse(Buffer.from(token, 'base64url').toString('utf8')));
    return { created_at: parsed.c, id: parsed.i };
  } catch {
    throw new CleanroomError('INVALID_CURSOR', 'the cursor is not one this API issued');
  }
}
