import { base64url } from 'jose';
import * as v from 'valibot';
import { CleanroomError } from '../errors.ts';
import { sha256 } from '../sha256.ts';
import { type ChunkAead, assertDataKey, generateNoncePrefix, recordNonce, webCryptoAead } from './aead.ts';
import { ByteReader } from './byte-reader.ts';
import {
  DEFAULT_CHUNK_BYTES,
  type DatasetHeaderInit,
  DatasetHeaderSchema,
  headerVersion,
  MAGIC,
  MAX_CHUNK_BYTES,
  MIN_CHUNK_BYTES,
  NONCE_PREFIX_BYTES,
  PREAMBLE_BYTES,
  RECORD_PREFIX_BYTES,
  STREAM_TAG_BYTES,
  encodeDatasetHeader,
  recordCount,
  recordPlaintextBytes,
} from './header.ts';

export interface EncryptDatasetOptions {
  /** What the owner describes; validate it at your edge with `DatasetHeaderInitSchema`. */
  header: DatasetHeaderInit;
  /** The 32-byte data key ({@link generateDataKey}). Copied; later changes to the array do not matter. */
  key: Uint8Array;
  /** Exactly `header.plaintext_bytes` bytes, in any slicing. */
  plaintext: ReadableStream<Uint8Array>;
  /** Plaintext bytes per record, 64 KiB to 16 MiB; default 1 MiB. */
  chunkBytes?: number;
  /** Default {@link webCryptoAead}; Node callers pass the faster `nodeAead` (runtime/aead-node.ts). */
  aead?: ChunkAead;
  /**
   * The 7-byte nonce prefix; random by default.
   * WARNING: encrypting two different plaintexts under the same key and prefix reuses GCM nonces,
   * which reveals both plaintexts and lets anyone forge records. Pass one only to reproduce the
   * exact bytes of an earlier run over the same plaintext (e.g. a second pass to upload what a
   * first pass hashed), or in tests.
   */
  noncePrefix?: Uint8Array;
}

/**
 * Encrypts a dataset as `MAGIC | u32 BE header length | header | records` (STREAM construction;
 * see `dataset-format.ts`). Streams both ways: it reads one chunk of plaintext per record it emits.
 * The output errors with DATASET_MALFORMED if the plaintext is not exactly
 * `header.plaintext_bytes` long (the last record is emitted only once the end is confirmed), and
 * with the plaintext stream's own error if that fails. Throws `TypeError` at once on a bad key,
 * chunk size, nonce prefix or header.
 */
export function encryptDataset(options: EncryptDatasetOptions): ReadableStream<Uint8Array> {
  assertDataKey(options.key);
  const key = options.key.slice();
  const chunkBytes = options.chunkBytes ?? DEFAULT_CHUNK_BYTES;
  if (!Number.isInteger(chunkBytes) || chunkBytes < MIN_CHUNK_BYTES || chunkBytes > MAX_CHUNK_BYTES) {
    throw new TypeError(`chunkBytes must be an integer from ${MIN_CHUNK_BYTES} to ${MAX_CHUNK_BYTES}`);
  }
  const prefix = options.noncePrefix?.slice() ?? generateNoncePrefix();
  if (!(prefix instanceof Uint8Array) || prefix.byteLength !== NONCE_PREFIX_BYTES) throw new TypeError('noncePrefix must be 7 bytes');
  const parsed = v.safeParse(DatasetHeaderSchema, {
    ...options.header,
    v: headerVersion(options.header),
    alg: 'A256GCM-STREAM',
    chunk_bytes: chunkBytes,
    nonce_prefix: base64url.encode(prefix),
  });
  if (!parsed.success) throw new TypeError(`encryptDataset: invalid header: ${parsed.issues[0].message}`);
  const header = parsed.output;
  const aead = options.aead ?? webCryptoAead;
  const headerBytes = encodeDatasetHeader(header);
  const aad = sha256(headerBytes);
  const streamTag = aad.subarray(0, STREAM_TAG_BYTES);
  const total = recordCount(header);
  const input = new ByteReader(options.plaintext);
  let index = -1;

  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        if (index < 0) {
          const front = new Uint8Array(PREAMBLE_BYTES + headerBytes.byteLength);
          front.set(MAGIC, 0);
          new DataView(front.buffer).setUint32(MAGIC.byteLength, headerBytes.byteLength);
          front.set(headerBytes, PREAMBLE_BYTES);
          controller.enqueue(front);
          index = 0;
          return;
        }
        const size = recordPlaintextBytes(header, index);
        // Transient: sealed (and so copied) before the next read reuses the buffer.
        const chunk = await input.readTransient(size);
        if (chunk.byteLength < size) throw new CleanroomError('DATASET_MALFORMED', 'the plaintext is shorter than header.plaintext_bytes');
        const last = index === total - 1;
        // Seal the last record only once we know the plaintext ends here, so a stream that is
        // too long never yields a complete-looking file.
        if (last && !(await input.atEnd())) throw new CleanroomError('DATASET_MALFORMED', 'the plaintext is longer than header.plaintext_bytes');
        const sealed = await aead.seal(key, recordNonce(prefix, index, last), aad, chunk);
        const record = new Uint8Array(RECORD_PREFIX_BYTES + sealed.byteLength);
        new DataView(record.buffer).setUint32(0, sealed.byteLength);
        record.set(streamTag, 4);
        record.set(sealed, RECORD_PREFIX_BYTES);
        controller.enqueue(record);
        index++;
        if (last) controller.close();
      } catch (error) {
        await input.cancel(error);
        throw error;
      }
    },
    async cancel(reason) {
      await input.cancel(reason);
    },
  });
}
