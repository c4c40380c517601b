import * as v from 'valibot';
import { CleanroomError } from '../../protocol/errors.ts';
import { crc32cExtend } from '../crc32c.ts';
import type { ObjectInfo, ObjectStore } from './port.ts';
import { STORAGE, checkBucket, checkKey, checkPrefix, crcBase64, discard, failure, lazyAuth, readJson, tooLarge, unavailable, type GcsRequestAuth, type Lazy } from './gcs-common.ts';

export type { GcsRequestAuth, GcsSigningAuth } from './gcs-common.ts';
export { GcsUploadSigner, v4SigningParts, type GcsUploadSignerOptions, type V4SigningInput } from './gcs-upload.ts';

// Cloud Storage through its JSON API and V4 signed URLs, with google-auth-library for credentials
// only: the storage SDK would bring a second HTTP stack for four requests and one signature.

const Digits = v.pipe(v.string(), v.regex(/^\d{1,20}$/));
const ObjectResourceSchema = v.object({ name: v.string(), size: Digits, generation: Digits, crc32c: v.optional(v.string()) });
const ListPageSchema = v.object({
  items: v.optional(v.array(v.object({ name: v.string(), size: v.optional(Digits), generation: Digits }))),
  nextPageToken: v.optional(v.string()),
});

export interface GcsObjectStoreOptions {
  /**
   * The bucket. It must have object versioning off and no soft-delete retention (at least for
   * the `datasets/` and `session-keys/` prefixes): a deleted object must be gone, or closing a
   * session shreds nothing (docs/architecture.md invariant 3).
   */
  bucket: string;
  /** Defaults to `GoogleAuth` with application default credentials, loaded on first use. */
  auth?: GcsRequestAuth;
  fetch?: typeof fetch;
  /** Longest wait for Cloud Storage to answer, or to take or give the next chunk (default 30 s). */
  timeoutMs?: number;
}

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
