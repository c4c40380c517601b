import * as v from 'valibot';
import { wrapDataKey } from '../../protocol/data-key.ts';
import { RFC4180_DIALECT } from '../../protocol/csv-dialect.ts';
import {
  DEFAULT_CHUNK_BYTES,
  DatasetHeaderInitSchema,
  datasetCiphertextBytes,
  encryptDataset,
  generateDataKey,
  headerVersion,
  type ChunkAead,
  type DatasetHeaderInit,
} from '../../protocol/dataset-format.ts';
import type { DatasetFormat } from '../../protocol/dataset.ts';
import { CleanroomError, isErrorCode } from '../../protocol/errors.ts';
import { createSha256, toHex, type Sha256 } from '../../protocol/sha256.ts';
import type { CleanroomApi } from './api-client.ts';
import { describeCsv, type DatasetDescription } from './csv-describe.ts';
import { TransportError } from './errors.ts';
import { ErrorEnvelopeSchema, type DatasetViewReceived, type UploadTicketView } from './schemas.ts';
import type { SessionKey } from './session-key.ts';
import type { FetchLike } from './transport.ts';

/** Options of {@link uploadDataset}. */
export interface UploadDatasetOptions {
  api: CleanroomApi;
  sessionId: string;
  /** The name queries use for it: a lowercase identifier, unique in the session. */
  table: string;
  format: DatasetFormat;
  /**
   * Opens the plaintext file from its start; called twice (describe, then encrypt), so both reads
   * must see the same bytes: a file that changes in between is refused (DATASET_MALFORMED).
   */
  openFile: () => ReadableStream<Uint8Array>;
  /**
   * Schema, row count and size of the plaintext. Default for `csv`: {@link describeCsv}; a
   * Parquet file needs one (the SDK cannot read Parquet).
   */
  describe?: (file: ReadableStream<Uint8Array>) => Promise<DatasetDescription>;
  /** A VERIFIED session key ({@link fetchSessionKey}): the data key is wrapped to it. */
  sessionKey: SessionKey;
  /** The uploader's email, as the API knows them: the encrypted header names the owner. */
  ownerEmail: string;
  /** Default WebCrypto; Node callers pass a faster one. */
  aead?: ChunkAead;
  /** Default the pure TypeScript SHA-256; Node callers pass a faster one. */
  hasher?: () => Sha256;
  /**
   * For the upload URL (not the API). Defaults to the global `fetch`.
   * In Node, Node's own fetch was measured holding a streamed body's whole ciphertext (peak RSS
   * 899 MiB for a 512 MiB file): pass one that sends at the socket's pace, as the CLI does
   * (`client/cli/streaming-put.ts`).
   */
  fetch?: FetchLike;
  /** Plaintext bytes per record (default 1 MiB). */
  chunkBytes?: number;
  /** Injected randomness: the dataset id (default `crypto.randomUUID`). */
  newId?: () => string;
  /** Aborts the upload. */
  signal?: AbortSignal;
  /**
   * How the ciphertext is sent: `stream` (a streamed request body; Node) or `blob` (encrypted into
   * a Blob first, which browsers keep on disk when large, then sent whole). Default: `blob` in a
   * browser, since Chromium streams request bodies only over HTTP/2 and refuses them otherwise;
   * `stream` elsewhere.
   */
  uploadBody?: 'stream' | 'blob';
}

/** True in a browser window or worker, where streamed request bodies cannot be relied on. */
function inBrowser(): boolean {
  const scope = globalThis as { document?: unknown; importScripts?: unknown };
  return scope.document !== undefined || typeof scope.importScripts === 'function';
}

/** What was uploaded and registered. */
export interface UploadedDataset {
  dataset: DatasetViewReceived;
  description: DatasetDescription;
}

/**
 * Encrypts a dataset on this machine and registers it (docs/architecture.md invariant 2: plaintext and the data
 * key never leave it): a fresh dataset id and 256-bit data key, the key wrapped to the verified
 * session key, the file encrypted as a stream (`encryptDataset`) and PUT to a signed upload URL
 * while its SHA-256 is computed, then `POST .../datasets` with the public metadata. The data key
 * is zeroed afterwards. Throws `CleanroomError` (the API's codes, DATASET_MALFORMED,
 * VALIDATION_FAILED, UPLOAD_URL_INVALID, ...) and `TransportError` (`UPLOAD_UNREACHABLE`, ...).
 */
export async function uploadDataset(options: UploadDatasetOptions): Promise<UploadedDataset> {
  const { api, sessionId, sessionKey } = options;
  if (sessionKey.sessionId !== sessionId) throw new TypeError('the session key is for another session');
  const describe = options.describe ?? (options.format === 'csv' ? describeCsv : undefined);
  if (describe === undefined) throw new TypeError(`a ${options.format} file needs a describe function`);
  const description = await describe(options.openFile());
  const chunkBytes = options.chunkBytes ?? DEFAULT_CHUNK_BYTES;

  const datasetId = (options.newId ?? (() => crypto.randomUUID()))();
  const parsed = v.safeParse(DatasetHeaderInitSchema, {
    session_id: sessionId,
    dataset_id: datasetId,
    owner_email: options.ownerEmail,
    table: options.table,
    format: options.format,
    // A CSV's dialect goes into the authenticated header and the registration; the worker loads with it.
    ...(options.format === 'csv' ? { csv: description.csv ?? RFC4180_DIALECT } : {}),
    schema: description.schema,
    row_count: description.rowCount,
    plaintext_bytes: description.bytes,
  } satisfies DatasetHeaderInit);
  if (!parsed.success) throw new CleanroomError('VALIDATION_FAILED', parsed.issues[0].message);
  const header = parsed.output;
  // The size is fixed by the header and the plaintext length (the nonce prefix always takes 10
  // characters), so the ticket can be asked for before encrypting.
  const ciphertextBytes = datasetCiphertextBytes({ ...header, v: headerVersion(header), alg: 'A256GCM-STREAM', chunk_bytes: chunkBytes, nonce_prefix: 'AAAAAAAAAA' });

  const key = generateDataKey();
  try {
    const wrapped = await wrapDataKey({ key, sessionPublicJwk: sessionKey.publicJwk, sessionId, datasetId });
    const ticket = await api.createUpload(sessionId, { dataset_id: datasetId, ciphertext_bytes: ciphertextBytes });
    if (ticket.dataset_id !== datasetId || ticket.max_bytes < ciphertextBytes) {
      throw new TransportError('UNEXPECTED_RESPONSE', ticket.url, 'the API answered with an upload ticket for another dataset or size');
    }
    const ciphertext = encryptDataset({
      header,
      key,
      plaintext: options.openFile(),
      chunkBytes,
      ...(options.aead !== undefined ? { aead: options.aead } : {}),
    });
    const measured = measure(ciphertext, (options.hasher ?? createSha256)());
    const asBlob = (options.uploadBody ?? (inBrowser() ? 'blob' : 'stream')) === 'blob';
    const body = asBlob ? await new Response(measured.stream).blob() : measured.stream;
    await put(ticket, body, options.fetch ?? ((input, init) => fetch(input, init)), measured.failure, options.signal);
    if (measured.bytes() !== ciphertextBytes) {
      throw new TypeError(`encrypted ${measured.bytes()} bytes, expected ${ciphertextBytes}`);
    }
    const dataset = await api.registerDataset(sessionId, {
      dataset_id: datasetId,
      table: header.table,
      format: header.format,
      ...(header.csv !== undefined ? { csv: header.csv } : {}),
      schema: header.schema,
      row_count: header.row_count,
      ciphertext_bytes: ciphertextBytes,
      ciphertext_sha256: toHex(measured.digest()),
      wrapped_key: wrapped,
      session_key_thumbprint: sessionKey.thumbprint,
    });
    return { dataset, description };
  } finally {
    key.fill(0);
  }
}

/** Counts and hashes what passes through; remembers a failure of the source (e.g. the file changed). */
function measure(source: ReadableStream<Uint8Array>, hash: Sha256) {
  let bytes = 0;
  let failure: unknown;
  let digest: Uint8Array | undefined;
  const reader = source.getReader();
  const stream = new ReadableStream<Uint8Array>({
    async pull(controller) {
      let next: ReadableStreamReadResult<Uint8Array>;
      try {
        next = await reader.read();
      } catch (error) {
        failure = error;
        controller.error(error);
        return;
      }
      if (next.done) {
        digest = hash.digest();
        controller.close();
        return;
      }
      bytes += next.value.byteLength;
      hash.update(next.value);
      controller.enqueue(next.value);
    },
    cancel: (reason) => reader.cancel(reason),
  });
  return {
    stream,
    bytes: () => bytes,
    failure: () => failure,
    digest: () => {
      if (digest === undefined) throw new TypeError('the ciphertext was not read to its end');
      return digest;
    },
  };
}

/** PUTs the stream to the signed URL; the source's own error wins over fetch's wrapper of it. */
async function put(ticket: UploadTicketView, body: ReadableStream<Uint8Array> | Blob, fetchFn: FetchLike, failure: () => unknown, signal: AbortSignal | undefined): Promise<void> {
  let response: Response;
  try {
    // `duplex: 'half'` is how fetch sends a streamed request body (not yet in the DOM typings).
    const init = { method: 'PUT', headers: ticket.headers, body, ...(body instanceof Blob ? {} : { duplex: 'half' }), redirect: 'manual', ...(signal ? { signal } : {}) };
    response = await fetchFn(ticket.url, init as RequestInit);
  } catch (error) {
    const cause = failure();
    if (cause !== undefined) throw cause;
    if (error instanceof DOMException && error.name === 'AbortError') throw error;
    throw new TransportError('UPLOAD_UNREACHABLE', origin(ticket.url), `cannot reach the upload URL at ${origin(ticket.url)}`, { cause: error });
  }
  const text = await response.text().catch(() => '');
  if (response.status >= 200 && response.status <= 299) return;
  let answer: unknown;
  try {
    answer = JSON.parse(text);
  } catch {
    answer = undefined;
  }
  const envelope = v.safeParse(ErrorEnvelopeSchema, answer);
  if (envelope.success && isErrorCode(envelope.output.error.code)) {
    throw new CleanroomError(envelope.output.error.code, envelope.output.error.message);
  }
  // Cloud Storage answers in XML: its status is what there is to say (403 expired, 412 exists).
  throw new TransportError('UNEXPECTED_RESPONSE', origin(ticket.url), `the upload was refused: HTTP ${response.status}`, { status: response.status });
}

/** The URL without its query: a signed URL's signature is a credential, never printed. */
function origin(url: string): string {
  const parsed = new URL(url);
  return `${parsed.origin}${parsed.pathname}`;
}
