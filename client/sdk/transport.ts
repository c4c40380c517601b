import * as v from 'valibot';
import { CleanroomError, isErrorCode } from '../../protocol/errors.ts';
import { TransportError } from './errors.ts';
import { ErrorEnvelopeSchema } from './schemas.ts';

/** The `fetch` a client uses; injectable for tests and for runtimes that wrap it. */
export type FetchLike = (input: string, init: RequestInit) => Promise<Response>;

/** A `FetchLike` in the shape of the global `fetch`, for jose's and the verifier's key fetching. */
export function asGlobalFetch(fetchFn: FetchLike): typeof fetch {
  return ((input: string | URL | Request, init?: RequestInit) => fetchFn(input instanceof Request ? input.url : String(input), init ?? {})) as typeof fetch;
}

/** One JSON request to the API. */
export interface JsonRequest<S extends v.GenericSchema> {
  fetch: FetchLike;
  baseUrl: string;
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  /** Path and query, starting with `/`. */
  path: string;
  /** A bearer ID token; omitted for public routes. */
  token?: string;
  body?: unknown;
  timeoutMs: number;
  /** The shape of a successful answer. */
  schema: S;
  /** Who is asked, for the transport errors' codes and messages (default `api`). */
  peer?: Peer;
}

/** The two services a client talks to. */
export type Peer = 'api' | 'worker';

const PEERS = {
  api: { name: 'the API', short: 'API', unreachable: 'API_UNREACHABLE', timeout: 'API_TIMEOUT', hint: 'is `npm start` running?' },
  worker: { name: 'the worker', short: 'worker', unreachable: 'WORKER_UNREACHABLE', timeout: 'WORKER_TIMEOUT', hint: 'is it running, and is this its URL?' },
} as const;

/**
 * Sends one request and returns the validated answer. Throws `CleanroomError` with the peer's
 * code for an error body, and `TransportError` when no answer of the peer arrived (refused
 * connection, timeout, a body that is not the peer's).
 */
export async function requestJson<S extends v.GenericSchema>(request: JsonRequest<S>): Promise<v.InferOutput<S>> {
  const url = `${request.baseUrl}${request.path}`;
  const headers: Record<string, string> = { accept: 'application/json' };
  if (request.token !== undefined) headers.authorization = `Bearer ${request.token}`;
  if (request.body !== undefined) headers['content-type'] = 'application/json';
  let status: number;
  let retryAfter: string | null;
  let text: string;
  try {
    // One signal covers the headers and the body: a server that stalls mid-body also times out.
    const response = await request.fetch(url, {
      method: request.method,
      headers,
      ...(request.body !== undefined ? { body: JSON.stringify(request.body) } : {}),
      signal: AbortSignal.timeout(request.timeoutMs),
      // A redirect is not the API's answer; following it could carry the token elsewhere.
      redirect: 'manual',
    });
    status = response.status;
    retryAfter = response.headers.get('retry-after');
    text = await response.text();
  } catch (error) {
    throw toTransportError(error, request.peer ?? 'api', request.baseUrl, url, request.timeoutMs);
  }
  const body = parseJson(text);
  if (status < 200 || status > 299) throw toApiError(body, status, url, retryAfter);
  const result = v.safeParse(request.schema, body);
  if (!result.success) {
    const { short } = PEERS[request.peer ?? 'api'];
    throw new TransportError('UNEXPECTED_RESPONSE', url, `unexpected answer from ${url}: the body is not the ${short}'s`, {
      status,
    });
  }
  return result.output;
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function toApiError(body: unknown, status: number, url: string, retryAfter: string | null): Error {
  const envelope = v.safeParse(ErrorEnvelopeSchema, body);
  if (envelope.success && isErrorCode(envelope.output.error.code)) {
    const seconds = retryAfter !== null && /^\d{1,6}$/.test(retryAfter) ? Number(retryAfter) : undefined;
    return new CleanroomError(envelope.output.error.code, envelope.output.error.message, seconds !== undefined ? { retryAfter: seconds } : {});
  }
  // A proxy's HTML page, another service, or a code newer than this client.
  const detail = envelope.success ? `: ${envelope.output.error.code}: ${envelope.output.error.message}` : '';
  return new TransportError('UNEXPECTED_RESPONSE', url, `unexpected answer from ${url}: HTTP ${status}${detail}`, {
    status,
  });
}

function toTransportError(error: unknown, peer: Peer, baseUrl: string, url: string, timeoutMs: number): Error {
  const { name, unreachable, timeout, hint } = PEERS[peer];
  if (error instanceof DOMException && error.name === 'TimeoutError') {
    return new TransportError(timeout, url, `${name} at ${baseUrl} did not answer within ${timeoutMs / 1000} s`, { cause: error });
  }
  if (error instanceof DOMException && error.name === 'AbortError') return error;
  // fetch reports refused connections, DNS failures and resets as a TypeError (cause: the socket error).
  return new TransportError(unreachable, url, `cannot reach ${name} at ${baseUrl}: ${hint}`, { cause: error });
}
