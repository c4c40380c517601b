import * as v from 'valibot';
import { CleanroomError } from './errors.ts';
import { TaskInputSchema, TaskRecipientKeySchema } from './dataset.ts';
import { EmailSchema, SessionIdSchema } from './session.ts';

/** The JWS `typ` of a task, so no other signed object of ours can pass as one. */
export const TASK_TYP = 'cleanroom-task+jws';
/** Issuer and audience of task payloads. */
export const TASK_ISSUER = 'cleanroom-control-plane';
export const TASK_AUDIENCE = 'cleanroom-worker';
/** SQL text bound at the edges; the worker's policy checker refuses much more. */
export const MAX_SQL_LENGTH = 100_000;

/**
 * A signed instruction to run one approved query. Its `exp` must outlast the queue's retry
 * window (docs/architecture.md invariant 10); `jti` is unique per enqueued attempt.
 */
export const TaskPayloadSchema = v.strictObject({
  v: v.literal(1),
  kind: v.literal('execute_query'),
  iss: v.literal(TASK_ISSUER),
  aud: v.literal(TASK_AUDIENCE),
  jti: v.pipe(v.string(), v.uuid()),
  iat: v.pipe(v.number(), v.integer()),
  exp: v.pipe(v.number(), v.integer()),
  session_id: SessionIdSchema,
  query_id: v.pipe(v.string(), v.uuid()),
  attempt: v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(1000)),
  sql: v.pipe(v.string(), v.minLength(1), v.maxLength(MAX_SQL_LENGTH)),
  recipients: v.pipe(v.array(EmailSchema), v.minLength(1), v.maxLength(50)),
  /**
   * The session's datasets the SQL may name (the control plane pre-filters by table name; the
   * worker still checks the parsed query against them). Absent in tasks queued before datasets.
   */
  inputs: v.optional(v.pipe(v.array(TaskInputSchema), v.maxLength(64))),
  /** Each recipient's registered encryption key; the worker seals the result to exactly these. */
  recipient_keys: v.optional(v.pipe(v.array(TaskRecipientKeySchema), v.maxLength(50))),
});
export type TaskPayload = v.InferOutput<typeof TaskPayloadSchema>;

/**
 * A signed request from the control plane for a session's key bundle (the worker creates the key
 * on first need). Same signer and `typ` as tasks; `kind` keeps it from passing as a query task.
 */
export const SessionKeyRequestPayloadSchema = v.strictObject({
  v: v.literal(1),
  kind: v.literal('session_key'),
  iss: v.literal(TASK_ISSUER),
  aud: v.literal(TASK_AUDIENCE),
  jti: v.pipe(v.string(), v.uuid()),
  iat: v.pipe(v.number(), v.integer()),
  exp: v.pipe(v.number(), v.integer()),
  session_id: SessionIdSchema,
  /** The participant's nonce, bound into the attestation the worker returns. */
  nonce: v.pipe(v.string(), v.regex(/^[A-Za-z0-9_-]{16,128}$/)),
});
export type SessionKeyRequestPayload = v.InferOutput<typeof SessionKeyRequestPayloadSchema>;

/**
 * The Cloud Tasks task name for a query attempt: `hash(query, attempt)` (docs/architecture.md §9), in
 * Cloud Tasks' alphabet, so the same attempt can never be enqueued twice.
 */
export async function taskName(queryId: string, attempt: number): Promise<string> {
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(`task/v1|${queryId}|${attempt}`));
  return `q-${Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, '0'))
    .join('')
    .slice(0, 40)}`;
}

/** Signs with the control plane's key: Cloud KMS in GCP, a local key file in the embedded stack. */
export interface TaskSigner {
  /** The key id (JWK thumbprint) verifiers look the public key up by. */
  readonly kid: string;
  /** ES256 signature (64 bytes, r||s) over the JWS signing input. */
  sign(signingInput: Uint8Array): Promise<Uint8Array>;
}

function b64url(bytes: Uint8Array): string {
  let binary = '';
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/** A compact JWS of the payload, signed by `signer`. The payload is validated first. */
export function signTask(payload: TaskPayload, signer: TaskSigner): Promise<string> {
  return signPayload(v.parse(TaskPayloadSchema, payload), signer);
}

/** A compact JWS of a session key request, signed like a task (validated first). */
export function signSessionKeyRequest(payload: SessionKeyRequestPayload, signer: TaskSigner): Promise<string> {
  return signPayload(v.parse(SessionKeyRequestPayloadSchema, payload), signer);
}

async function signPayload(checked: TaskPayload | SessionKeyRequestPayload, signer: TaskSigner): Promise<string> {
  const encoder = new TextEncoder();
  const header = b64url(encoder.encode(JSON.stringify({ alg: 'ES256', kid: signer.kid, typ: TASK_TYP })));
  const body = b64url(encoder.encode(JSON.stringify(checked)));
  const signature = await signer.sign(encoder.encode(`${header}.${body}`));
  if (signature.byteLength !== 64) throw new TypeError('TaskSigner must return a 64-byte r||s ES256 signature');
  return `${header}.${body}.${b64url(signature)}`;
}

/** Throws the task code for a payload that parses but must not run. */
export function assertTaskFresh(payload: Pick<TaskPayload, 'exp' | 'iat'>, nowSeconds: number, skewSeconds = 30): void {
  if (payload.exp <= nowSeconds - skewSeconds) throw new CleanroomError('TASK_EXPIRED', 'the task has expired');
  if (payload.iat > nowSeconds + skewSeconds) throw new CleanroomError('TASK_MALFORMED', 'the task was issued in the future');
  if (payload.exp <= payload.iat) throw new CleanroomError('TASK_MALFORMED', 'the task expires before it was issued');
}
