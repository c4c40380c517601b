import { createHash } from 'node:crypto';
import * as v from 'valibot';
import { CleanroomError } from '../../protocol/errors.ts';
import { crc32cExtend } from '../crc32c.ts';
import { OBJECT_KEY, type ObjectInfo, type ObjectStore, type SignedUpload, type UploadSigner } from './port.ts';

// Cloud Storage through its JSON API and V4 signed URLs, with google-auth-library for credentials
// only: the storage SDK would bring a second HTTP stack for four requests and one signature.

const STORAGE = 'https://storage.googleapis.com';
const HOST = 'storage.googleapis.com';
const SCOPE = 'https://www.googleapis.com/auth/cloud-platform';
const BUCKET = /^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$/;
const SEVEN_DAYS = 7 * 24 * 3600;
const RETRY_AFTER_SECONDS = 5;

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

export interface GcsObjectStoreOptions {
  /**
   * The bucket. It must have object versioning off and no soft-delete retention (at least for
   * the `datasets/` and `session-keys/` prefixes): a deleted object must be gone, or closing a
   * session shreds nothing (DESIGN invariant 3).
   */
  bucket: string;
  /** Defaults to `GoogleAuth` with application default credentials, loaded on first use. */
  auth?: GcsRequestAuth;
  fetch?: typeof fetch;
  /** Longest wait for Cloud Storage to answer, or to take or give the next chunk (default 30 s). */
  timeoutMs?: number;
}

const Digits = v.pipe(v.string(), v.regex(/^\d{1,20}$/));
const ObjectResourceSchema = v.object({ name: v.string(), size: Digits, generation: Digits, crc32c: v.optional(v.string()) });
const ListPageSchema = v.object({
  items: v.optional(v.array(v.object({ name: v.string(), size: v.optional(Digits), generation: Digits }))),
  nextPageToken: v.optional(v.string()),
});

/**
 * The object store on Cloud Storage's JSON API. `createOnly` is a media upload with
 * `ifGenerationMatch=0` (412 is `OBJECT_EXISTS`), streamed and counted on the way: past
 * `maxBytes` the upload is aborted, so Cloud Storage never finalizes an object. The stored size
 * and CRC32C are checked against what was sent. `read` streams `alt=media`; `list` pages through
 * the prefix; `deletePrefix` lists and deletes each object at the generation it listed; `delete`
 * deletes one object (404 is false). 429, 5xx, timeouts and network failures are
 * `OBJECT_STORE_UNAVAILABLE` with `retryAfter`.
 */
export class GcsObjectStore implements ObjectStore {
  readonly #bucket: string;
  readonly #fetch: typeof fetch;
  readonly #timeoutMs: number;
  readonly #auth: Lazy<GcsRequestAuth>;

  constructor(options: GcsObjectStoreOptions) {
    this.#bucket = checkBucket(options.bucket);
    this.#fetch = options.fetch ?? globalThis.fetch;
    this.#timeoutMs = options.timeoutMs ?? 30_000;
    if (!Number.isInteger(this.#timeoutMs) || this.#timeoutMs < 1) throw new TypeError('timeoutMs must be a positive integer');
    this.#auth = lazyAuth(options.auth);
  }

  async createOnly(key: string, body: ReadableStream<Uint8Array> | Uint8Array, options: { maxBytes?: number } = {}): Promise<ObjectInfo> {
    checkKey(key);
    const maxBytes = options.maxBytes ?? Number.MAX_SAFE_INTEGER;
    if (!Number.isSafeInteger(maxBytes) || maxBytes < 0) throw new TypeError('maxBytes must be a non-negative integer');
    if (body instanceof Uint8Array && body.byteLength > maxBytes) throw tooLarge(maxBytes);
    const query = new URLSearchParams({ uploadType: 'media', name: key, ifGenerationMatch: '0', fields: 'name,size,generation,crc32c' });
    const url = `${STORAGE}/upload/storage/v1/b/${this.#bucket}/o?${query}`;
    const deadline = new Deadline(this.#timeoutMs);
    let sent = 0;
    let crc = 0;
    let overCap = false;
    let payload: Uint8Array | ReadableStream<Uint8Array>;
    if (body instanceof Uint8Array) {
      payload = body;
      sent = body.byteLength;
      crc = crc32cExtend(0, body);
    } else {
      payload = body.pipeThrough(
        new TransformStream<Uint8Array, Uint8Array>({
          transform(chunk, controller) {
            sent += chunk.byteLength;
            if (sent > maxBytes) {
              // Aborting the request before its last byte leaves no object behind.
              overCap = true;
              controller.error(tooLarge(maxBytes));
              deadline.abort();
              return;
            }
            crc = crc32cExtend(crc, chunk);
            deadline.arm();
            controller.enqueue(chunk);
          },
        }),
      );
    }
    let response: Response;
    try {
      response = await this.#send(url, { method: 'POST', body: payload as BodyInit, headers: { 'content-type': 'application/octet-stream' } }, deadline);
    } catch (error) {
      if (payload instanceof ReadableStream) await payload.cancel(error).catch(() => {});
      throw overCap ? tooLarge(maxBytes) : error;
    }
    try {
      if (response.status === 412) {
        await discard(response);
        throw new CleanroomError('OBJECT_EXISTS', 'the object already exists');
      }
      if (!response.ok) throw await failure(response, 'store the object');
      const object = await readJson(response, ObjectResourceSchema);
      const info = { key, size: Number(object.size), generation: object.generation };
      const damaged = info.size !== sent || (object.crc32c !== undefined && object.crc32c !== crcBase64(crc));
      if (damaged || info.size > maxBytes) {
        // Stored, but not what was sent (or, impossibly, over the cap): it must not stay.
        await this.#deleteAt(key, info.generation).catch(() => {});
        throw damaged ? unavailable('Cloud Storage stored different bytes than were sent') : tooLarge(maxBytes);
      }
      return info;
    } finally {
      deadline.disarm();
    }
  }

  async read(key: string): Promise<ReadableStream<Uint8Array> | null> {
    checkKey(key);
    const deadline = new Deadline(this.#timeoutMs);
    const response = await this.#send(`${this.#objectUrl(key)}?alt=media`, { method: 'GET' }, deadline);
    deadline.disarm();
    if (response.status === 404) {
      await discard(response);
      return null;
    }
    if (!response.ok) throw await failure(response, 'read the object');
    return watchBody(response.body, deadline);
  }

  async stat(key: string): Promise<ObjectInfo | null> {
    checkKey(key);
    const deadline = new Deadline(this.#timeoutMs);
    try {
      const response = await this.#send(`${this.#objectUrl(key)}?fields=name,size,generation`, { method: 'GET' }, deadline);
      if (response.status === 404) {
        await discard(response);
        return null;
      }
      if (!response.ok) throw await failure(response, 'describe the object');
      const object = await readJson(response, ObjectResourceSchema);
      return { key, size: Number(object.size), generation: object.generation };
    } finally {
      deadline.disarm();
    }
  }

  async deletePrefix(prefix: string): Promise<number> {
    checkPrefix(prefix);
    let removed = 0;
    for await (const items of this.#pages(prefix)) {
      for (const item of items) {
        if (await this.#deleteAt(item.name, item.generation)) removed++;
      }
    }
    return removed;
  }

  async list(prefix: string): Promise<ObjectInfo[]> {
    checkPrefix(prefix);
    const infos: ObjectInfo[] = [];
    for await (const items of this.#pages(prefix)) {
      for (const item of items) {
        if (item.size === undefined) throw new CleanroomError('INTERNAL', 'Cloud Storage answered in an unexpected shape');
        infos.push({ key: item.name, size: Number(item.size), generation: item.generation });
      }
    }
    // Cloud Storage lists in this order already; the contract does not rest on that.
    return infos.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  async delete(key: string): Promise<boolean> {
    checkKey(key);
    return this.#deleteAt(key);
  }

  /** The objects under `prefix`, a page at a time (each page fetched when the last is done with). */
  async *#pages(prefix: string): AsyncGenerator<Array<{ name: string; size?: string; generation: string }>> {
    let pageToken: string | undefined;
    do {
      const query = new URLSearchParams({ prefix, fields: 'items(name,size,generation),nextPageToken', maxResults: '1000' });
      if (pageToken) query.set('pageToken', pageToken);
      const deadline = new Deadline(this.#timeoutMs);
      let page: v.InferOutput<typeof ListPageSchema>;
      try {
        const response = await this.#send(`${STORAGE}/storage/v1/b/${this.#bucket}/o?${query}`, { method: 'GET' }, deadline);
        if (!response.ok) throw await failure(response, 'list the objects');
        page = await readJson(response, ListPageSchema);
      } finally {
        deadline.disarm();
      }
      yield (page.items ?? []).filter((item) => item.name.startsWith(prefix));
      pageToken = page.nextPageToken;
    } while (pageToken);
  }

  /**
   * Deletes the object, only at `generation` when given; false when it is already gone or (with
   * a generation) was replaced.
   */
  async #deleteAt(key: string, generation?: string): Promise<boolean> {
    const deadline = new Deadline(this.#timeoutMs);
    try {
      const query = generation === undefined ? '' : `?ifGenerationMatch=${generation}`;
      const response = await this.#send(`${this.#objectUrl(key)}${query}`, { method: 'DELETE' }, deadline);
      if (response.status === 404 || response.status === 412) {
        await discard(response);
        return false;
      }
      if (!response.ok) throw await failure(response, 'delete the object');
      await discard(response);
      return true;
    } finally {
      deadline.disarm();
    }
  }

  #objectUrl(key: string): string {
    return `${STORAGE}/storage/v1/b/${this.#bucket}/o/${encodeURIComponent(key)}`;
  }

  /** One authorized request; credentials and transport failures are outages. */
  async #send(url: string, init: { method: string; body?: BodyInit; headers?: Record<string, string> }, deadline: Deadline): Promise<Response> {
    let headers: Headers;
    try {
      headers = new Headers(await (await this.#auth()).getRequestHeaders(url));
    } catch (error) {
      deadline.disarm();
      throw unavailable('no credentials for Cloud Storage', error);
    }
    for (const [name, value] of Object.entries(init.headers ?? {})) headers.set(name, value);
    const request: RequestInit & { duplex?: 'half' } = { method: init.method, headers, signal: deadline.signal };
    if (init.body !== undefined) {
      request.body = init.body;
      request.duplex = 'half';
    }
    try {
      return await this.#fetch(url, request);
    } catch (error) {
      deadline.disarm();
      throw unavailable(deadline.expired ? 'Cloud Storage did not answer in time' : 'Cloud Storage is unreachable', error);
    }
  }
}

export interface GcsUploadSignerOptions {
  bucket: string;
  /** Defaults to `GoogleAuth` with application default credentials, loaded on first use. */
  auth?: GcsSigningAuth;
  /**
   * Sign as this service account through IAM `signBlob` (the caller needs
   * `iam.serviceAccounts.signBlob` on it). Without it the credentials' own account signs, with
   * its private key when it has one and through `signBlob` otherwise (Cloud Run, GCE).
   */
  serviceAccountEmail?: string;
  fetch?: typeof fetch;
  now?: () => Date;
}

/**
 * Create-only upload URLs for Cloud Storage: V4 signed (`GOOG4-RSA-SHA256`) PUT URLs, expiring in
 * at most 7 days, with `host` and `x-goog-if-generation-match: 0` as signed headers, so the
 * object can be written once and a second PUT gets 412. A PUT URL cannot cap the size: the
 * registration checks the stored size against the ticket.
 */
export class GcsUploadSigner implements UploadSigner {
  readonly #bucket: string;
  readonly #auth: Lazy<GcsSigningAuth>;
  readonly #serviceAccountEmail: string | undefined;
  readonly #fetch: typeof fetch;
  readonly #now: () => Date;

  constructor(options: GcsUploadSignerOptions) {
    this.#bucket = checkBucket(options.bucket);
    this.#auth = lazyAuth(options.auth);
    this.#serviceAccountEmail = options.serviceAccountEmail;
    this.#fetch = options.fetch ?? globalThis.fetch;
    this.#now = options.now ?? (() => new Date());
  }

  async signUpload(key: string, options: { expiresInSeconds: number; maxBytes: number }): Promise<SignedUpload> {
    checkKey(key);
    const { expiresInSeconds } = options;
    if (!Number.isInteger(expiresInSeconds) || expiresInSeconds < 1 || expiresInSeconds > SEVEN_DAYS) {
      throw new TypeError(`expiresInSeconds must be 1 to ${SEVEN_DAYS}`);
    }
    const auth = await this.#auth();
    let email = this.#serviceAccountEmail;
    if (email === undefined) {
      try {
        email = (await auth.getCredentials()).client_email ?? undefined;
      } catch (error) {
        throw unavailable('no credentials to sign with', error);
      }
      if (!email) throw new TypeError('the credentials name no service account: set serviceAccountEmail');
    }
    const now = this.#now();
    const headers = { 'x-goog-if-generation-match': '0' };
    const parts = v4SigningParts({ bucket: this.#bucket, key, method: 'PUT', email, now, expiresInSeconds, headers });
    const signature = this.#serviceAccountEmail === undefined ? await signWith(auth, parts.stringToSign) : await this.#signBlob(auth, email, parts.stringToSign);
    return {
      url: `${parts.url}&X-Goog-Signature=${Buffer.from(signature, 'base64').toString('hex')}`,
      method: 'PUT',
      headers,
      expiresAt: new Date(Math.floor(now.getTime() / 1000) * 1000 + expiresInSeconds * 1000),
    };
  }

  async #signBlob(auth: GcsSigningAuth, email: string, data: string): Promise<string> {
    const url = `https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/${encodeURIComponent(email)}:signBlob`;
    let response: Response;
    try {
      const headers = new Headers(await auth.getRequestHeaders(url));
      headers.set('content-type', 'application/json');
      response = await this.#fetch(url, {
        method: 'POST',
        headers,
        body: JSON.stringify({ payload: Buffer.from(data).toString('base64') }),
        signal: AbortSignal.timeout(30_000),
      });
    } catch (error) {
      throw unavailable('IAM signBlob is unreachable', error);
    }
    if (!response.ok) throw await failure(response, 'sign the upload URL');
    return (await readJson(response, v.object({ signedBlob: v.pipe(v.string(), v.base64()) }))).signedBlob;
  }
}

/** The inputs of a V4 signature, in the order Cloud Storage rebuilds them. */
export interface V4SigningInput {
  bucket: string;
  key: string;
  method: 'GET' | 'PUT';
  /** The signing service account: the `X-Goog-Credential` prefix. */
  email: string;
  now: Date;
  expiresInSeconds: number;
  /** Extension headers to sign (lowercase `x-goog-*`); `host` is always added. */
  headers: Record<string, string>;
}

/**
 * The V4 canonical request, the string to sign, and the URL without `X-Goog-Signature`
 * (Cloud Storage "V4 signing process"): path-style `https://storage.googleapis.com/<bucket>/<key>`,
 * credential scope `<yyyymmdd>/auto/storage/goog4_request`, payload `UNSIGNED-PAYLOAD`.
 */
export function v4SigningParts(input: V4SigningInput): { canonicalRequest: string; stringToSign: string; url: string } {
  const iso = input.now.toISOString().replace(/\.\d{3}Z$/, 'Z').replace(/[-:]/g, '');
  const scope = `${iso.slice(0, 8)}/auto/storage/goog4_request`;
  const headers = Object.entries({ ...input.headers, host: HOST })
    .map(([name, value]) => [name.toLowerCase(), value.trim().replace(/\s+/g, ' ')] as const)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const signedHeaders = headers.map(([name]) => name).join(';');
  const query = Object.entries({
    'X-Goog-Algorithm': 'GOOG4-RSA-SHA256',
    'X-Goog-Credential': `${input.email}/${scope}`,
    'X-Goog-Date': iso,
    'X-Goog-Expires': String(input.expiresInSeconds),
    'X-Goog-SignedHeaders': signedHeaders,
  })
    .map(([name, value]) => `${rfc3986(name)}=${rfc3986(value)}`)
    .sort()
    .join('&');
  const path = `/${input.bucket}/${input.key.split('/').map(rfc3986).join('/')}`;
  const canonicalRequest = [input.method, path, query, headers.map(([name, value]) => `${name}:${value}\n`).join(''), signedHeaders, 'UNSIGNED-PAYLOAD'].join('\n');
  const stringToSign = ['GOOG4-RSA-SHA256', iso, scope, createHash('sha256').update(canonicalRequest).digest('hex')].join('\n');
  return { canonicalRequest, stringToSign, url: `${STORAGE}${path}?${query}` };
}

async function signWith(auth: GcsSigningAuth, data: string): Promise<string> {
  try {
    return await auth.sign(data);
  } catch (error) {
    throw unavailable('the upload URL could not be signed', error);
  }
}

/** A stream of the download, failing with `OBJECT_STORE_UNAVAILABLE` when a chunk takes too long. */
function watchBody(body: ReadableStream<Uint8Array> | null, deadline: Deadline): ReadableStream<Uint8Array> {
  if (body === null) return new ReadableStream({ start: (controller) => controller.close() });
  const reader = body.getReader();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      // Only while a chunk is awaited: a slow consumer is not a slow Cloud Storage.
      deadline.arm();
      try {
        const { done, value } = await reader.read();
        if (done) controller.close();
        else controller.enqueue(value);
      } catch (error) {
        controller.error(unavailable(deadline.expired ? 'Cloud Storage stopped sending' : 'the download broke off', error));
      } finally {
        deadline.disarm();
      }
    },
    cancel: async (reason) => {
      deadline.abort();
      await reader.cancel(reason).catch(() => {});
    },
  });
}

/** An abort signal that fires `ms` after the last `arm()`, and never while disarmed. */
class Deadline {
  readonly #controller = new AbortController();
  readonly #ms: number;
  #timer: ReturnType<typeof setTimeout> | undefined;
  expired = false;

  constructor(ms: number) {
    this.#ms = ms;
    this.arm();
  }

  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  arm(): void {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.expired = true;
      this.#controller.abort(new DOMException('Cloud Storage did not answer in time', 'TimeoutError'));
    }, this.#ms);
  }

  disarm(): void {
    clearTimeout(this.#timer);
  }

  abort(): void {
    this.disarm();
    this.#controller.abort();
  }
}

type Lazy<T> = () => Promise<T>;

function lazyAuth<T extends GcsRequestAuth>(given: T | undefined): Lazy<T> {
  let auth: Promise<T> | undefined;
  // Loaded on first use: the embedded stack never pays for google-auth-library.
  return () =>
    (auth ??= given
      ? Promise.resolve(given)
      : import('google-auth-library').then(({ GoogleAuth }) => new GoogleAuth({ scopes: [SCOPE] }) as unknown as T));
}

async function readJson<S extends v.GenericSchema>(response: Response, schema: S): Promise<v.InferOutput<S>> {
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
async function failure(response: Response, what: string): Promise<CleanroomError> {
  await discard(response);
  if (response.status === 429 || response.status === 408 || response.status >= 500) {
    const header = response.headers.get('retry-after');
    const retryAfter = header !== null && /^\d{1,4}$/.test(header) ? Math.max(1, Number(header)) : RETRY_AFTER_SECONDS;
    return new CleanroomError('OBJECT_STORE_UNAVAILABLE', `Cloud Storage could not ${what} (HTTP ${response.status})`, { retryAfter });
  }
  return new CleanroomError('INTERNAL', `Cloud Storage refused to ${what} (HTTP ${response.status})`);
}

async function discard(response: Response): Promise<void> {
  await response.body?.cancel().catch(() => {});
}

function crcBase64(crc: number): string {
  const bytes = Buffer.alloc(4);
  bytes.writeUInt32BE(crc >>> 0);
  return bytes.toString('base64');
}

/** encodeURIComponent plus the characters RFC 3986 reserves that it leaves alone. */
function rfc3986(value: string): string {
  return encodeURIComponent(value).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

function checkBucket(bucket: string): string {
  if (typeof bucket !== 'string' || !BUCKET.test(bucket)) throw new TypeError('not a Cloud Storage bucket name');
  return bucket;
}

function checkPrefix(prefix: string): void {
  if (typeof prefix !== 'string' || !prefix.endsWith('/') || !OBJECT_KEY.test(prefix.slice(0, -1))) {
    throw new TypeError('a prefix must be an object key followed by /');
  }
}

function checkKey(key: string): void {
  if (typeof key !== 'string' || !OBJECT_KEY.test(key)) throw new TypeError('not a valid object key');
}

function tooLarge(maxBytes: number): CleanroomError {
  return new CleanroomError('DATASET_TOO_LARGE', `the object is larger than ${maxBytes} bytes`);
}

function unavailable(message: string, cause?: unknown): CleanroomError {
  return new CleanroomError('OBJECT_STORE_UNAVAILABLE', message, { cause, retryAfter: RETRY_AFTER_SECONDS });
}
