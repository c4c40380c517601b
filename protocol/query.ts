import * as v from 'valibot';
import { EmailSchema } from './session.ts';
import { MAX_SQL_LENGTH } from './task.ts';

export const QUERY_STATUSES = ['PENDING_APPROVAL', 'APPROVED', 'QUEUED', 'RUNNING', 'SUCCEEDED', 'FAILED', 'REJECTED', 'CANCELLED', 'EXPIRED'] as const;
export type QueryStatus = (typeof QUERY_STATUSES)[number];

/** `POST /api/tee/sessions/:id/queries`. */
export const ProposeQueryRequestSchema = v.strictObject({
  sql: v.pipe(v.string('sql must be a string'), v.minLength(1, 'sql must not be empty'), v.maxLength(MAX_SQL_LENGTH, `sql must be at most ${MAX_SQL_LENGTH} characters`)),
  /** Who may read the result; defaults to the proposer. Each must be a session participant. */
  recipients: v.optional(v.pipe(v.array(EmailSchema), v.minLength(1), v.maxLength(50))),
});
export type ProposeQueryRequest = v.InferOutput<typeof ProposeQueryRequestSchema>;

/**
 * What the worker reports about an execution, by an authenticated call to the control plane's
 * internal target (`POST /internal/v1/queries/:query_id/events`). Codes only, never engine text.
 */
export const QueryEventSchema = v.strictObject({
  session_id: v.pipe(v.string(), v.minLength(1), v.maxLength(128)),
  query_id: v.pipe(v.string(), v.uuid()),
  /** The task's `jti`: events of a superseded attempt are ignored. */
  task_id: v.pipe(v.string(), v.uuid()),
  event: v.picklist(['RUNNING', 'SUCCEEDED', 'FAILED']),
  at: v.pipe(v.string(), v.isoTimestamp()),
  error_code: v.optional(v.pipe(v.string(), v.regex(/^[A-Z_]{1,64}$/))),
  /** Coarse figures only: no row count, which belongs inside the sealed result (docs/architecture.md §2). */
  stats: v.optional(
    v.strictObject({
      bytes: v.pipe(v.number(), v.integer(), v.minValue(0)),
      elapsed_ms: v.pipe(v.number(), v.minValue(0)),
    }),
  ),
  /** Where the sealed result object was written (`object:<key>`). */
  result_ref: v.optional(v.pipe(v.string(), v.maxLength(512))),
});
export type QueryEvent = v.InferOutput<typeof QueryEventSchema>;
