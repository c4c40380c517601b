import * as v from 'valibot';
import { CleanroomError } from '../../protocol/errors.ts';
import { OBJECT_KEY } from './port.ts';

// What the Cloud Storage store (gcs.ts) and upload signer (gcs-upload.ts) share: endpoints,
// google-auth-library's two shapes, loading it lazily, and the translation of failures.

export const STORAGE = 'https://storage.googleapis.com';
export const HOST = 'storage.googleapis.com';
export const SCOPE = 'https://www.googleapis.com/auth/cloud-platform';
export const BUCKET = /^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$/;
export const RETRY_AFTER_SECONDS = 5;

/** What the store needs from google-auth-library; `GoogleAuth` satisfies it. */
export interface GcsRequestAuth {
  getRequestHeaders(url?: string | URL): Promise<Headers>;
}

/** What the signer needs from google-auth-library; `GoogleAuth` satisfies it. */
export interface GcsSigningAuth extends GcsRequestAuth {
  /** Signs with the credential's own key, or through IAM `signBlob`; base64 RSA-SHA256. */
  sign(data: string): Promise<string>;
  getCredentials(): Promise<{ client_email?: string | null }>;
}

export type Lazy<T> = () => Promise<T>;

export function lazyAuth<T extends GcsRequestAuth>(given: T | undefined): Lazy<T> {
  let auth: Promise<T> | undefined;
  // Loaded on first use: the embedded stack never pays for google-auth-library.
  return () => (auth ??= given ? Promise.resolve(given) : import('google-auth-library').then(({ GoogleAuth }) => new GoogleAuth({ scopes: [SCOPE] }) as unknown as T));
}

export async function readJson<S extends v.GenericSchema>(response: Response, schema: S): Promise<v.InferOutput<S>> {
  let body: unknown;
  try {
    body = await response.json();
  } catch (error) {
    throw unavailable('Cloud Storage sent an unreadable answer', error);
  }
  const result = v.safeParse(schema, body);
  if (!result.success) throw new CleanroomError('INTERNAL', 'Cloud Storage answered in an unexpected shape');
  return result.output;
}

/** The error for a non-2xx answer (whose body is discarded: it may quote object names). */
export async function failure(response: Response, what: string): Promise<CleanroomError> {
  await discard(response);
  if (response.status === 429 || response.status === 408 || response.status >= 500) {
    const header = response.headers.get('retry-after');
    const retryAfter = header !== null && /^\d{1,4}$/.test(header) ? Math.max(1, Number(header)) : RETRY_AFTER_SECONDS;
    return new CleanroomError('OBJECT_STORE_UNAVAILABLE', `Cloud Storage could not ${what} (HTTP ${response.status})`, { retryAfter });
  }
  return new CleanroomError('INTERNAL', `Cloud Storage refused to ${what} (HTTP ${response.status})`);
}

export async function discard(response: Response): Promise<void> {
  await response.body?.cancel().catch(() => {});
}

export function crcBase64(crc: number): string {
  const bytes = Buffer.alloc(4);
  bytes.writeUInt32BE(crc >>> 0);
  return bytes.toString('base64');
}

/** encodeURIComponent plus the characters RFC 3986 reserves that it leaves alone. */
export function rfc3986(value: string): string {
  return encodeURIComponent(value).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

export function checkBucket(bucket: string): string {
  if (typeof bucket !== 'string' || !BUCKET.test(bucket)) throw new TypeError('not a Cloud Storage bucket name');
  return bucket;
}

export function checkPrefix(prefix: string): void {
  if (typeof prefix !== 'string' || !prefix.endsWith('/') || !OBJECT_KEY.test(prefix.slice(0, -1))) {
    throw new TypeError('a prefix must be an object key followed by /');
  }
}

export function checkKey(key: string): void {
  if (typeof key !== 'string' || !OBJECT_KEY.test(key)) throw new TypeError('not a valid object key');
}

export function tooLarge(maxBytes: number): CleanroomError {
  return new CleanroomError('DATASET_TOO_LARGE', `the object is larger than ${maxBytes} bytes`);
}

export function unavailable(message: string, cause?: unknown): CleanroomError {
  return new CleanroomError('OBJECT_STORE_UNAVAILABLE', message, { cause, retryAfter: RETRY_AFTER_SECONDS });
}
