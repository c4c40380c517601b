import { base64url } from 'jose';
import { CleanroomError } from '../errors.ts';
import { sha256 } from '../sha256.ts';
import { type ChunkAead, assertDataKey, recordNonce, webCryptoAead } from './aead.ts';
import { ByteReader } from './byte-reader.ts';
import { type DatasetHeader, PREAMBLE_BYTES, RECORD_PREFIX_BYTES, STREAM_TAG_BYTES, TAG_BYTES, parseHeaderBytes, parsePreamble, recordCount, recordPlaintextBytes } from './header.ts';

export interface DecryptDatasetOptions {
  /** The 32-byte data key. Copied. */
  key: Uint8Array;
  /** The encrypted file, in any slicing. */
  ciphertext: ReadableStream<Uint8Array>;
  /** What the header must name; a file for another session or dataset is refused before any record is read. */
  expect: { session_id: string; dataset_id: string };
  /** Default {@link webCryptoAead}; Node callers pass the faster `nodeAead` (runtime/aead-node.ts). */
  aead?: ChunkAead;
}

export interface DecryptedDataset {
  /**
   * The header once it parsed and matched `expect`. It is authenticated only as the records
   * open (its hash is their AAD): trust it fully once `plaintext` has closed without error.
   * Rejects with the same error as `plaintext` when the failure is in the header.
   */
  header: Promise<DatasetHeader>;
  /** The plaintext, one chunk per record, each released only after its record authenticated. */
  plaintext: ReadableStream<Uint8Array>;
}

/**
 * Decrypts a dataset stream, checking in a fixed order and failing with one code per step:
 * 1. magic, header length, header JSON/schema/canonical form: DATASET_MALFORMED (the input ends
 *    inside the header: DATASET_TRUNCATED);
 * 2. `header.session_id` against `expect`: DATASET_WRONG_SESSION;
 * 3. `header.dataset_id` against `expect`: DATASET_WRONG_DATASET;
 * 4. then each record `i` in turn:
 *    - no record at all: DATASET_EMPTY; the input ends before the last record, or inside a
 *      record: DATASET_TRUNCATED;
 *    - a length field outside 16..chunk_bytes+16: DATASET_CHUNK_TAMPERED;
 *    - a stream tag other than this header's: DATASET_CHUNK_FOREIGN (so a header changed after
 *      encryption also fails here, on record 0, since its hash is the tag);
 *    - authentication under counter `i` fails: DATASET_CHUNK_REORDERED if the record opens under
 *      another counter of this stream, else DATASET_CHUNK_TAMPERED (also the code for a wrong key);
 *    - bytes after the last record: DATASET_TRAILING_DATA.
 * Any failure errors `plaintext` with that CleanroomError and cancels `ciphertext`; an error of
 * the ciphertext stream itself is passed through unchanged. Memory: about two records.
 * Throws `TypeError` at once on a bad key or missing `expect`.
 */
export function decryptDataset(options: DecryptDatasetOptions): DecryptedDataset {
  assertDataKey(options.key);
  const { expect } = options;
  if (typeof expect?.session_id !== 'string' || typeof expect.dataset_id !== 'string') {
    throw new TypeError('decryptDataset: expect.session_id and expect.dataset_id are required');
  }
  const key = options.key.slice();
  const aead = options.aead ?? webCryptoAead;
  const input = new ByteReader(options.ciphertext);
  let resolveHeader!: (header: DatasetHeader) => void;
  let rejectHeader!: (error: unknown) => void;
  const header = new Promise<DatasetHeader>((resolve, reject) => {
    resolveHeader = resolve;
    rejectHeader = reject;
  });
  // A caller that only reads `plaintext` sees the error there; do not also report it as unhandled.
  header.catch(() => undefined);
  let records: RecordOpener;

  const plaintext = new ReadableStream<Uint8Array>({
    async start() {
      try {
        const { header: parsed, headerBytes } = await readHeader(input);
        if (parsed.session_id !== expect.session_id) throw new CleanroomError('DATASET_WRONG_SESSION', 'the dataset was encrypted for another session');
        if (parsed.dataset_id !== expect.dataset_id) throw new CleanroomError('DATASET_WRONG_DATASET', 'the dataset header names another dataset');
        records = new RecordOpener(key, aead, parsed, headerBytes, input);
        resolveHeader(parsed);
      } catch (error) {
        rejectHeader(error);
        await input.cancel(error);
        throw error;
      }
    },
    async pull(controller) {
      try {
        const chunk = await records.next();
        if (chunk.byteLength > 0) controller.enqueue(chunk);
        if (records.finished) controller.close();
      } catch (error) {
        await input.cancel(error);
        throw error;
      }
    },
    async cancel(reason) {
      await input.cancel(reason);
    },
  });
  return { header, plaintext };
}

async function readHeader(input: ByteReader): Promise<{ header: DatasetHeader; headerBytes: Uint8Array }> {
  const length = parsePreamble(await input.read(PREAMBLE_BYTES));
  // Copy: the reader may hand out a view of an input chunk, and the header outlives it.
  const headerBytes = (await input.read(length)).slice();
  if (headerBytes.byteLength < length) throw new CleanroomError('DATASET_TRUNCATED', 'the dataset ends inside its header');
  return { header: parseHeaderBytes(headerBytes), headerBytes };
}

/** Reads, checks and opens the records of one stream, in order. */
class RecordOpener {
  finished = false;
  private index = 0;
  private released = 0;
  private readonly total: number;
  private readonly aad: Uint8Array;
  private readonly prefix: Uint8Array;
  private readonly key: Uint8Array;
  private readonly aead: ChunkAead;
  private readonly header: DatasetHeader;
  private readonly input: ByteReader;

  constructor(key: Uint8Array, aead: ChunkAead, header: DatasetHeader, headerBytes: Uint8Array, input: ByteReader) {
    this.key = key;
    this.aead = aead;
    this.header = header;
    this.input = input;
    this.total = recordCount(header);
    this.aad = sha256(headerBytes);
    this.prefix = base64url.decode(header.nonce_prefix);
  }

  /** The next record's plaintext (possibly empty, for an empty dataset); sets `finished` after the last. */
  async next(): Promise<Uint8Array> {
    const i = this.index;
    const front = await this.input.read(RECORD_PREFIX_BYTES);
    if (front.byteLength === 0) {
      throw i === 0 ? new CleanroomError('DATASET_EMPTY', 'the dataset has no records') : new CleanroomError('DATASET_TRUNCATED', `the dataset ends after ${i} of ${this.total} records`);
    }
    if (front.byteLength < RECORD_PREFIX_BYTES) throw new CleanroomError('DATASET_TRUNCATED', `the dataset ends inside record ${i}`);
    const length = new DataView(front.buffer, front.byteOffset, 4).getUint32(0);
    if (length < TAG_BYTES || length > this.header.chunk_bytes + TAG_BYTES) {
      throw new CleanroomError('DATASET_CHUNK_TAMPERED', `record ${i} has an impossible length`);
    }
    // Transient: the record is opened (the cipher copies what it keeps) before the next read.
    const sealed = await this.input.readTransient(length);
    if (sealed.byteLength < length) throw new CleanroomError('DATASET_TRUNCATED', `the dataset ends inside record ${i}`);
    if (!equalBytes(front.subarray(4, RECORD_PREFIX_BYTES), this.aad.subarray(0, STREAM_TAG_BYTES))) {
      throw new CleanroomError('DATASET_CHUNK_FOREIGN', `record ${i} belongs to another dataset stream`);
    }
    const last = i === this.total - 1;
    const plain = await this.aead.open(this.key, recordNonce(this.prefix, i, last), this.aad, sealed);
    if (plain === null) throw await this.diagnose(i, sealed);
    // Unreachable unless the key and header were reused for another plaintext: the AAD pins the
    // header, so an authentic record has the length the header implies.
    if (plain.byteLength !== recordPlaintextBytes(this.header, i)) {
      throw new CleanroomError('DATASET_MALFORMED', `record ${i} carries the wrong number of bytes`);
    }
    this.released += plain.byteLength;
    if (last) {
      if (!(await this.input.atEnd())) throw new CleanroomError('DATASET_TRAILING_DATA', 'bytes follow the last record');
      if (this.released !== this.header.plaintext_bytes) throw new CleanroomError('DATASET_MALFORMED', 'the plaintext length differs from the header');
      this.finished = true;
    }
    this.index++;
    return plain;
  }

  /**
   * Why record `i` failed: if it opens under another counter of this stream it was moved
   * (REORDERED), else it was altered or the key is wrong (TAMPERED). Only counters whose record
   * would have this length are tried, each with its own last-record flag: the AAD pins the header,
   * hence the record count, hence which counter carries the flag and every record's length, so no
   * other trial could succeed. Costs at most one trial per record of the stream, on failure only.
   */
  private async diagnose(i: number, sealed: Uint8Array): Promise<CleanroomError> {
    for (let j = 0; j < this.total; j++) {
      if (j === i || recordPlaintextBytes(this.header, j) + TAG_BYTES !== sealed.byteLength) continue;
      const nonce = recordNonce(this.prefix, j, j === this.total - 1);
      if ((await this.aead.open(this.key, nonce, this.aad, sealed)) !== null) {
        return new CleanroomError('DATASET_CHUNK_REORDERED', `record ${i} is record ${j} of this dataset`);
      }
    }
    return new CleanroomError('DATASET_CHUNK_TAMPERED', `record ${i} failed authentication`);
  }
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false;
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false;
  return true;
}
