import { CleanroomError, type ErrorCode } from '../../protocol/errors.ts';

/** Headers every API response carries: nothing is cached, nothing is sniffed or framed. */
const BASE_HEADERS: Record<string, string> = {
  'content-type': 'application/json; charset=utf-8',
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
};

export function json(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), { status, headers: { ...BASE_HEADERS, ...headers } });
}

/** A JSON document passed through byte for byte (a sealed result, a relayed bundle), with the API's headers. */
export function jsonBytes(body: Uint8Array, status = 200): Response {
  return new Response(body as Uint8Array<ArrayBuffer>, { status, headers: { ...BASE_HEADERS } });
}

/** The one error envelope `{"error":{"code","message"}}` with the status from the one table. */
export function errorResponse(error: CleanroomError, headers: Record<string, string> = {}): Response {
  const extra: Record<string, string> = error.retryAfter !== undefined ? { 'retry-after': String(error.retryAfter) } : {};
  return json(error.toBody(), error.status, { ...extra, ...headers });
}

export function errorOf(code: ErrorCode, message: string): Response {
  return errorResponse(new CleanroomError(code, message));
}
