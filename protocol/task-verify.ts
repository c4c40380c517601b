import { compactVerify, createLocalJWKSet, decodeProtectedHeader, type JWK, type JWTVerifyGetKey } from 'jose';
import * as v from 'valibot';
import { CleanroomError } from './errors.ts';
import { SessionKeyRequestPayloadSchema, TASK_TYP, TaskPayloadSchema, assertTaskFresh, type SessionKeyRequestPayload, type TaskPayload } from './task.ts';

/**
 * The only protected header a task may carry. Strict: `crit`, `b64`, `jwk`, `jku`, `x5u` and any
 * other member are refused, so no header can change how the signature is checked.
 */
const TaskHeaderSchema = v.strictObject({
  alg: v.literal('ES256'),
  typ: v.literal(TASK_TYP),
  kid: v.pipe(v.string(), v.minLength(1), v.maxLength(128)),
});

/** Where the worker gets the control plane's keys and the time from. */
export interface VerifyTaskOptions {
  /** The control plane's public signing keys (looked up by `kid`), or a key resolver. */
  keys: JWK[] | JWTVerifyGetKey;
  /** Injectable time for the expiry check; defaults to now. */
  currentDate?: Date;
  /** Clock skew tolerated on `exp` and `iat`, in seconds (default 30). */
  skewSeconds?: number;
}

/**
 * Verifies a task JWS in a fixed order and returns its payload: compact structure
 * (`TASK_MALFORMED`), pinned header `alg: ES256` and `typ` (`TASK_SIGNATURE`), signature with
 * the key named by `kid` (`TASK_SIGNATURE`), payload schema (`TASK_MALFORMED`), then expiry
 * (`TASK_EXPIRED`). Nothing of the payload is read before its signature is checked.
 */
export function verifyTaskJws(jws: string, options: VerifyTaskOptions): Promise<TaskPayload> {
  return verifySignedPayload(jws, options, TaskPayloadSchema);
}

/** {@link verifyTaskJws} for a session key request (`kind: 'session_key'`), same order and codes. */
export function verifySessionKeyRequestJws(jws: string, options: VerifyTaskOptions): Promise<SessionKeyRequestPayload> {
  return verifySignedPayload(jws, options, SessionKeyRequestPayloadSchema);
}

type SignedPayloadSchema = typeof TaskPayloadSchema | typeof SessionKeyRequestPayloadSchema;

async function verifySignedPayload<S extends SignedPayloadSchema>(jws: string, options: VerifyTaskOptions, schema: S): Promise<v.InferOutput<S>> {
  if (!/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(jws)) {
    throw new CleanroomError('TASK_MALFORMED', 'the task is not a compact JWS');
  }
  let header: unknown;
  try {
    header = decodeProtectedHeader(jws);
  } catch (cause) {
    throw new CleanroomError('TASK_MALFORMED', 'the task header is not readable', { cause });
  }
  if (!v.is(TaskHeaderSchema, header)) throw new CleanroomError('TASK_SIGNATURE', 'the task header is not a task header');

  const keys = Array.isArray(options.keys) ? createLocalJWKSet({ keys: options.keys }) : options.keys;
  let payloadBytes: Uint8Array;
  try {
    // jose pins the algorithm again; an unknown kid fails here like a bad signature does.
    ({ payload: payloadBytes } = await compactVerify(jws, keys, { algorithms: ['ES256'] }));
  } catch (cause) {
    throw new CleanroomError('TASK_SIGNATURE', 'the task signature is not valid', { cause });
  }

  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(payloadBytes));
  } catch {
    // No cause: the parser's message would quote the payload.
    throw new CleanroomError('TASK_MALFORMED', 'the task payload is not JSON');
  }
  const result = v.safeParse(schema, parsed);
  if (!result.success) throw new CleanroomError('TASK_MALFORMED', 'the task payload does not match the schema');

  const now = Math.floor((options.currentDate ?? new Date()).getTime() / 1000);
  assertTaskFresh(result.output, now, options.skewSeconds);
  return result.output as v.InferOutput<S>;
}
