/**
 * Why a request got no usable answer from the API, the worker or an upload URL (as opposed to an
 * error code of theirs).
 */
export type TransportErrorCode = 'API_UNREACHABLE' | 'API_TIMEOUT' | 'WORKER_UNREACHABLE' | 'WORKER_TIMEOUT' | 'UPLOAD_UNREACHABLE' | 'UNEXPECTED_RESPONSE';

/**
 * The request never produced an API answer: nothing listens at the URL, the API did not answer
 * in time, or something other than the API answered. API error bodies become `CleanroomError`
 * instead, so callers can tell "the API said no" from "the API was not there".
 */
export class TransportError extends Error {
  readonly code: TransportErrorCode;
  /** The URL the request went to (never carries a token). */
  readonly url: string;
  /** The HTTP status, when an answer arrived but was not the API's. */
  readonly status: number | undefined;

  constructor(code: TransportErrorCode, url: string, message: string, options?: { cause?: unknown; status?: number }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'TransportError';
    this.code = code;
    this.url = url;
    this.status = options?.status;
  }
}
