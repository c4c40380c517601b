import * as v from 'valibot';
import { CleanroomError } from '../../protocol/errors.ts';
import { SessionIdSchema } from '../../protocol/session.ts';

/** The `:id` path parameter; a malformed id cannot exist, so it is simply not found. */
export function sessionIdParam(params: Record<string, string>): string {
  const result = v.safeParse(SessionIdSchema, params.id);
  if (!result.success) throw new CleanroomError('SESSION_NOT_FOUND', 'session not found');
  return result.output;
}
