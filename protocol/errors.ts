/**
 * Stable error codes shared by the API, the worker and the clients. A code never changes meaning;
 * clients and tests match on codes, never on messages.
 */
export const ERROR_STATUS = {
  VALIDATION_FAILED: 400,
  MALFORMED_JSON: 400,
  INVALID_CURSOR: 400,
  UNAUTHENTICATED: 401,
  FORBIDDEN: 403,
  NOT_SESSION_OWNER: 403,
  SESSION_NOT_FOUND: 404,
  PARTICIPANT_NOT_FOUND: 404,
  ROUTE_NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  CONFLICT: 409,
  PARTICIPANT_EXISTS: 409,
  SESSION_CLOSED: 409,
  OWNER_CANNOT_LEAVE: 409,
  ENDPOINT_MOVED: 410,
  PAYLOAD_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  RATE_LIMITED: 429,
  QUERY_NOT_FOUND: 404,
  ILLEGAL_TRANSITION: 409,
  ALREADY_DECIDED: 409,
  NOT_A_RECIPIENT: 400,
  // Attestation verification: one code per failed step, in the order they are checked.
  ATTESTATION_MALFORMED: 401,
  ATTESTATION_SIGNATURE: 401,
  ATTESTATION_ISSUER: 401,
  ATTESTATION_AUDIENCE: 401,
  ATTESTATION_EXPIRED: 401,
  ATTESTATION_INSECURE_DEV: 401,
  ATTESTATION_HWMODEL: 401,
  ATTESTATION_SWNAME: 401,
  ATTESTATION_DEBUG: 401,
  ATTESTATION_SECBOOT: 401,
  ATTESTATION_SUPPORT: 401,
  ATTESTATION_IMAGE_DIGEST: 401,
  ATTESTATION_NONCE: 401,
  ATTESTATION_KEY_BINDING: 401,
  ATTESTATION_UNAVAILABLE: 503,
  // Task intake at the worker: one code per refusal.
  TASK_UNAUTHENTICATED: 401,
  TASK_SIGNATURE: 401,
  TASK_MALFORMED: 400,
  TASK_EXPIRED: 401,
  TASK_REPLAYED: 409,
  TASK_IN_PROGRESS: 503,
  // Query execution: fixed codes only, never an engine message (docs/architecture.md invariant 11).
  POLICY_VIOLATION: 422,
  QUERY_FAILED: 422,
  QUERY_TIMEOUT: 422,
  QUERY_MEMORY_LIMIT: 422,
  RESULT_TOO_LARGE: 422,
  EXECUTOR_BUSY: 429,
  // The confidential data path: dataset format, keys, uploads and sealed results.
  DATASET_MALFORMED: 422,
  DATASET_WRONG_SESSION: 422,
  DATASET_WRONG_DATASET: 422,
  DATASET_CHUNK_TAMPERED: 422,
  DATASET_CHUNK_REORDERED: 422,
  DATASET_CHUNK_FOREIGN: 422,
  DATASET_TRUNCATED: 422,
  DATASET_TRAILING_DATA: 422,
  DATASET_EMPTY: 422,
  DATASET_HASH_MISMATCH: 422,
  DATASET_KEY_UNWRAP: 422,
  DATASET_SCHEMA_MISMATCH: 422,
  DATASET_ROW_COUNT_MISMATCH: 422,
  DATASET_TOO_LARGE: 413,
  DATASET_NOT_FOUND: 404,
  DATASET_EXISTS: 409,
  TABLE_NAME_TAKEN: 409,
  UPLOAD_MISSING: 409,
  UPLOAD_URL_INVALID: 403,
  OBJECT_EXISTS: 412,
  SESSION_KEY_UNAVAILABLE: 503,
  SESSION_KEY_INVALID: 401,
  RECIPIENT_KEY_MISSING: 409,
  RESULT_NOT_FOUND: 404,
  RESULT_NOT_READY: 409,
  RESULT_TAMPERED: 422,
  RESULT_RECEIPT_INVALID: 422,
  KEY_SERVICE_UNAVAILABLE: 503,
  OBJECT_STORE_UNAVAILABLE: 503,
  WORKER_UNAVAILABLE: 503,
  INTERNAL: 500,
  STORE_UNAVAILABLE: 503,
  QUEUE_UNAVAILABLE: 503,
} as const;

/** The closed union of error codes. */
export type ErrorCode = keyof typeof ERROR_STATUS;

/** The one error body every HTTP surface returns. */
export interface ErrorBody {
  error: { code: ErrorCode; message: string };
}

/**
 * The one error class for expected failures: bad input, refused access, lost races.
 * Misuse of our own code throws `TypeError` instead.
 */
export class CleanroomError extends Error {
  readonly code: ErrorCode;
  /** Seconds a client should wait before retrying, for 429 and 503. */
  readonly retryAfter: number | undefined;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; retryAfter?: number }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'CleanroomError';
    this.code = code;
    this.retryAfter = options?.retryAfter;
  }

  /** The HTTP status the code maps to. */
  get status(): number {
    return ERROR_STATUS[this.code];
  }

  /** The wire body; it carries the code and message only, never the cause. */
  toBody(): ErrorBody {
    return { error: { code: this.code, message: this.message } };
  }
}

/** True when `value` is one of the codes in {@link ERROR_STATUS}. */
export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.hasOwn(ERROR_STATUS, value);
}
