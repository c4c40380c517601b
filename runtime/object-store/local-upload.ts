import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { CleanroomError } from '../../protocol/errors.ts';
import { OBJECT_KEY, type ObjectStore, type SignedUpload, type UploadSigner } from './port.ts';

/** The route the embedded stack serves uploads on: `PUT /objects/<key>`. */
export const LOCAL_UPLOAD_PATH = '/objects/';
/** Signed URLs live at most as long as Cloud Storage's V4 URLs. */
const MAX_EXPIRES_SECONDS = 7 * 24 * 3600;
const SIG = /^[A-Za-z0-9_-]{43}$/;
const DIGITS = /^\d{1,15}$/;

/** A fresh secret for {@link LocalUploadSigner} and {@link handleLocalUpload}: 32 random bytes. */
export function generateUploadSecret(): Uint8Array {
  return new Uint8Array(randomBytes(32));
}

export interface LocalUploadSignerOptions {
  /** Where the API serves `/objects/`, e.g. `http://127.0.0.1:3000` (no trailing slash needed). */
  baseUrl: string;
  /** At least 32 bytes, shared with {@link handleLocalUpload} and never sent anywhere. */
  secret: Uint8Array;
  now?: () => Date;
}

/**
 * The embedded stack's twin of V4 signed URLs: `PUT ${baseUrl}/objects/<key>?expires=&max=&sig=`,
 * where `sig` is base64url HMAC-SHA256(secret, `PUT\n<key>\n<expires>\n<max>`). The URL names
 * one key, one deadline and one size cap; {@link handleLocalUpload} checks all three and writes
 * create-only, as `x-goog-if-generation-match: 0` does on Cloud Storage.
 */
export class LocalUploadSigner implements UploadSigner {
  readonly #baseUrl: string;
  readonly #secret: Uint8Array;
  readonly #now: () => Date;

  constructor(options: LocalUploadSignerOptions) {
    this.#baseUrl = new URL(options.baseUrl).href.replace(/\/+$/, '');
    this.#secret = checkSecret(options.secret);
    this.#now = options.now ?? (() => new Date());
  }

  async signUpload(key: string, options: { expiresInSeconds: number; maxBytes: number }): Promise<SignedUpload> {
    if (typeof key !== 'string' || !OBJECT_KEY.test(key)) throw new TypeError('not a valid object key');
    const { expiresInSeconds, maxBytes } = options;
    if (!Number.isInteger(expiresInSeconds) || expiresInSeconds < 1 || expiresInSeconds > MAX_EXPIRES_SECONDS) {
      throw new TypeError(`expiresInSeconds must be 1 to ${MAX_EXPIRES_SECONDS}`);
    }
    if (!Number.isSafeInteger(maxBytes) || maxBytes < 0) throw new TypeError('maxBytes must be a non-negative integer');
    const expires = Math.floor(this.#now().getTime() / 1000) + expiresInSeconds;
    const sig = uploadSignature(this.#secret, key, String(expires), String(maxBytes)).toString('base64url');
    return {
      url: `${this.#baseUrl}${LOCAL_UPLOAD_PATH}${key}?expires=${expires}&max=${maxBytes}&sig=${sig}`,
      method: 'PUT',
      headers: {},
      expiresAt: new Date(expires * 1000),
    };
  }
}

export interface LocalUploadOptions {
  store: ObjectStore;
  /** The secret the URLs were signed with. */
  secret: Uint8Array;
  now?: () => Date;
}

/**
 * Serves `PUT /objects/<key>?expires=&max=&sig=`: checks the signature (constant time), the
 * deadline and the declared size before reading, then streams the body into
 * `store.createOnly(key, body, { maxBytes })`. Answers 201 `{ key, size, generation }`, or
 * `{ "error": { code, message } }` with 405 METHOD_NOT_ALLOWED, 404 ROUTE_NOT_FOUND,
 * 403 UPLOAD_URL_INVALID (bad, expired or altered URL), 413 DATASET_TOO_LARGE, 412 OBJECT_EXISTS.
 */
export async function handleLocalUpload(request: Request, options: LocalUploadOptions): Promise<Response> {
  const secret = checkSecret(options.secret);
  try {
    const { key, max } = checkUploadUrl(request, secret, (options.now ?? (() => new Date()))());
    const declared = request.headers.get('content-length');
    // Refused before reading a byte: the sender said how much it will send.
    if (declared !== null && !/^\d{1,16}$/.test(declared)) throw new CleanroomError('VALIDATION_FAILED', 'malformed Content-Length');
    if (declared !== null && Number(declared) > max) throw tooLarge(max);
    const source = trackSource(request.body ?? new ReadableStream<Uint8Array>({ start: (c) => c.close() }));
    try {
      const info = await options.store.createOnly(key, source.stream, { maxBytes: max });
      return json({ key: info.key, size: info.size, generation: info.generation }, 201);
    } catch (error) {
      // The sender broke off: nothing was stored, and whatever we answer goes nowhere useful.
      if (!(error instanceof CleanroomError) && source.failed()) throw new CleanroomError('VALIDATION_FAILED', 'the upload ended early');
      throw error;
    }
  } catch (error) {
    if (error instanceof CleanroomError) return errorJson(error);
    return errorJson(new CleanroomError('INTERNAL', 'the upload could not be stored'));
  }
}

/** Checks method, path, signature and expiry in that order; returns the key and cap the URL was signed for. */
function checkUploadUrl(request: Request, secret: Uint8Array, now: Date): { key: string; max: number } {
  if (request.method !== 'PUT') throw new CleanroomError('METHOD_NOT_ALLOWED', 'uploads use PUT');
  const url = new URL(request.url);
  if (!url.pathname.startsWith(LOCAL_UPLOAD_PATH)) throw new CleanroomError('ROUTE_NOT_FOUND', 'no such route');
  const invalid = () => new CleanroomError('UPLOAD_URL_INVALID', 'the upload URL is not valid');
  const key = url.pathname.slice(LOCAL_UPLOAD_PATH.length);
  const one = (name: string) => {
    const values = url.searchParams.getAll(name);
    if (values.length !== 1) throw invalid();
    return values[0]!;
  };
  const expires = one('expires');
  const max = one('max');
  const sig = one('sig');
  if (!OBJECT_KEY.test(key) || !DIGITS.test(expires) || !DIGITS.test(max) || !SIG.test(sig)) throw invalid();
  // Compared as text: base64url of 32 bytes has two spare bits, so decoding would accept variants.
  const expected = Buffer.from(uploadSignature(secret, key, expires, max).toString('base64url'));
  if (!timingSafeEqual(expected, Buffer.from(sig))) throw invalid();
  // The deadline is checked only once the URL is known to be ours, so a forged one learns nothing.
  if (Number(expires) * 1000 <= now.getTime()) throw invalid();
  return { key, max: Number(max) };
}

function uploadSignature(secret: Uint8Array, key: string, expires: string, max: string): Buffer {
  return createHmac('sha256', secret).update(`PUT\n${key}\n${expires}\n${max}`).digest();
}

function checkSecret(secret: Uint8Array): Uint8Array {
  if (!(secret instanceof Uint8Array) || secret.byteLength < 32) throw new TypeError('the upload secret must be at least 32 bytes');
  return secret;
}

/** Passes a stream through, remembering whether the source itself failed (the sender went away). */
function trackSource(source: ReadableStream<Uint8Array>): { stream: ReadableStream<Uint8Array>; failed: () => boolean } {
  const reader = source.getReader();
  let failed = false;
  const stream = new ReadableStream<Uint8Array>({
    async pull(controller) {
      let next: ReadableStreamReadResult<Uint8Array>;
      try {
        next = await reader.read();
      } catch (error) {
        failed = true;
        controller.error(error);
        return;
      }
      if (next.done) controller.close();
      else controller.enqueue(next.value);
    },
    cancel: (reason) => reader.cancel(reason),
  });
  return { stream, failed: () => failed };
}

function tooLarge(max: number): CleanroomError {
  return new CleanroomError('DATASET_TOO_LARGE', `the upload is larger than ${max} bytes`);
}

function json(body: unknown, status: number, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', 'x-content-type-options': 'nosniff', ...headers },
  });
}

function errorJson(error: CleanroomError): Response {
  const headers: Record<string, string> = {};
  if (error.retryAfter !== undefined) headers['retry-after'] = String(error.retryAfter);
  if (error.code === 'METHOD_NOT_ALLOWED') headers.allow = 'PUT';
  return json(error.toBody(), error.status, headers);
}
