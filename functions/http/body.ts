import * as v from 'valibot';
import { CleanroomError } from '../../protocol/errors.ts';
import { LIMITS } from '../../protocol/session.ts';
import { readCappedBytes, utf8OrUndefined } from '../../runtime/read-body.ts';

/** The first validation issue as `path: message`, enough for a developer to fix the request. */
export function describeIssues(issues: readonly v.BaseIssue<unknown>[]): string {
  const issue = issues[0];
  if (!issue) return 'invalid request';
  const path = issue.path?.map((p) => String(p.key)).join('.');
  return path ? `${path}: ${issue.message}` : issue.message;
}

/** Parses `value` with `schema` or throws `VALIDATION_FAILED`. */
export function parseWith<S extends v.GenericSchema>(schema: S, value: unknown): v.InferOutput<S> {
  const result = v.safeParse(schema, value);
  if (!result.success) throw new CleanroomError('VALIDATION_FAILED', describeIssues(result.issues));
  return result.output;
}

/**
 * Reads a JSON body within the size limit and validates it. 415 without a JSON content type,
 * 413 over the limit, 400 for malformed JSON or a body the schema refuses.
 */
export async function readJson<S extends v.GenericSchema>(request: Request, schema: S): Promise<v.InferOutput<S>> {
  const type = request.headers.get('content-type') ?? '';
  if (!/^application\/json\s*(;|$)/i.test(type)) {
    throw new CleanroomError('UNSUPPORTED_MEDIA_TYPE', 'send the body as application/json');
  }
  const text = await readText(request, LIMITS.bodyMaxBytes);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new CleanroomError('MALFORMED_JSON', 'the body is not valid JSON');
  }
  return parseWith(schema, value);
}

/** The body as UTF-8 text, refusing (without reading on) anything over `maxBytes`. */
export async function readText(request: Request, maxBytes: number): Promise<string> {
  const text = utf8OrUndefined(await readCappedBytes(request, maxBytes));
  if (text === undefined) throw new CleanroomError('MALFORMED_JSON', 'the body is not valid UTF-8');
  return text;
}
