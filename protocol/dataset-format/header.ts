import * as v from 'valibot';
import { canonicalJson } from '../canonical-json.ts';
import { CsvDialectSchema, type CsvDialect } from '../csv-dialect.ts';
import { DATASET_FORMATS, DatasetSchemaSchema, TableNameSchema } from '../dataset.ts';
import { CleanroomError } from '../errors.ts';
import { EmailSchema, SessionIdSchema } from '../session.ts';

/**
 * The clear-text front of an encrypted dataset file (docs/architecture.md §7 "Dataset format"):
 * `MAGIC | u32 BE header length | header (canonical JSON)`. The header is public metadata; its
 * SHA-256 is the AAD of every record, so changing one byte of it makes every record fail.
 */

/**
 * "CRDS" then the container version 1 as a big-endian u32: the byte layout of preamble and
 * records. What the header holds has its own version, the header's `v` ({@link HEADER_VERSIONS}).
 */
export const MAGIC = Uint8Array.of(0x43, 0x52, 0x44, 0x53, 0x00, 0x00, 0x00, 0x01);
/**
 * Header versions: 1, a CSV is RFC 4180 with a comma and a header row (written before dialects
 * were recorded; still read); 2, a CSV header carries its dialect in `csv`. Parquet headers are 1.
 */
export const HEADER_VERSIONS = [1, 2] as const;
/** Upper bound of the header's byte length. */
export const MAX_HEADER_BYTES = 64 * 1024;
/** Smallest `chunk_bytes` (plaintext per record). */
export const MIN_CHUNK_BYTES = 64 * 1024;
/** Largest `chunk_bytes`: bounds the memory a reader needs per record. */
export const MAX_CHUNK_BYTES = 16 * 1024 * 1024;
/** The encryptor's default `chunk_bytes`. */
export const DEFAULT_CHUNK_BYTES = 1024 * 1024;
/** AES-GCM tag length. */
export const TAG_BYTES = 16;
/** Bytes of the nonce prefix; with the u32 counter and the flag byte they make the 96-bit nonce. */
export const NONCE_PREFIX_BYTES = 7;
/** Bytes of the clear-text stream tag in front of each record. */
export const STREAM_TAG_BYTES = 8;
/** Bytes in front of each record's ciphertext: u32 length and the stream tag. */
export const RECORD_PREFIX_BYTES = 4 + STREAM_TAG_BYTES;
/** The counter is a u32, so a stream holds at most 2^32 records. */
const MAX_RECORDS = 2 ** 32;

const Uuid = v.pipe(v.string(), v.uuid('must be a UUID'));
const Count = v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(Number.MAX_SAFE_INTEGER));

/**
 * Unpadded base64url of 7 bytes: 10 characters, the last carrying 2 data bits and 4 spare bits
 * that must be zero (A, Q, g or w), so that one prefix has one spelling.
 */
const NoncePrefixSchema = v.pipe(v.string(), v.regex(/^[A-Za-z0-9_-]{9}[AQgw]$/, 'nonce_prefix must be canonical base64url of 7 bytes'));

/** What the data owner describes; `encryptDataset` adds the stream parameters. */
export const DatasetHeaderInitSchema = v.strictObject({
  session_id: SessionIdSchema,
  dataset_id: Uuid,
  owner_email: EmailSchema,
  table: TableNameSchema,
  format: v.picklist(DATASET_FORMATS, 'format must be csv or parquet'),
  /** A CSV's dialect (`csv-dialect.ts`); absent for Parquet, and for a CSV it means RFC 4180 (header version 1). */
  csv: v.optional(CsvDialectSchema),
  schema: DatasetSchemaSchema,
  row_count: Count,
  /** Exact plaintext length; the encryptor refuses a plaintext stream of any other length. */
  plaintext_bytes: Count,
});
export type DatasetHeaderInit = v.InferOutput<typeof DatasetHeaderInitSchema>;

/** The header version for what `init` declares: 2 when it carries a dialect, else 1. */
export function headerVersion(init: { csv?: CsvDialect | undefined }): (typeof HEADER_VERSIONS)[number] {
  return init.csv === undefined ? 1 : 2;
}

/** The header of an encrypted dataset, as written and as read back. */
export const DatasetHeaderSchema = v.pipe(
  v.strictObject({
    v: v.picklist(HEADER_VERSIONS, 'unknown header version'),
    alg: v.literal('A256GCM-STREAM'),
    chunk_bytes: v.pipe(v.number(), v.integer(), v.minValue(MIN_CHUNK_BYTES), v.maxValue(MAX_CHUNK_BYTES)),
    nonce_prefix: NoncePrefixSchema,
    ...DatasetHeaderInitSchema.entries,
  }),
  // One spelling per header: a dialect exactly in version 2, and only for a CSV.
  v.check((h) => h.v === headerVersion(h), 'a dialect (csv) is in a version 2 header and only there'),
  v.check((h) => h.csv === undefined || h.format === 'csv', 'csv (the dialect) is only for format csv'),
  v.check((h) => recordCount(h) <= MAX_RECORDS, 'too many records for a 32-bit counter'),
  v.check((h) => new TextEncoder().encode(canonicalJson(h)).byteLength <= MAX_HEADER_BYTES, `the header is over ${MAX_HEADER_BYTES} bytes`),
);
export type DatasetHeader = v.InferOutput<typeof DatasetHeaderSchema>;

/** The two header fields that fix the record layout. */
export interface RecordLayout {
  plaintext_bytes: number;
  chunk_bytes: number;
}

/** Number of records a stream with this header holds: ceil(plaintext / chunk), at least one. */
export function recordCount(header: RecordLayout): number {
  return Math.max(1, Math.ceil(header.plaintext_bytes / header.chunk_bytes));
}

/** Plaintext bytes record `index` carries: `chunk_bytes` for all but the last. */
export function recordPlaintextBytes(header: RecordLayout, index: number): number {
  const last = recordCount(header) - 1;
  return index < last ? header.chunk_bytes : header.plaintext_bytes - last * header.chunk_bytes;
}

/** The header's bytes: canonical JSON (sorted keys, no whitespace) in UTF-8. */
export function encodeDatasetHeader(header: DatasetHeader): Uint8Array {
  return new TextEncoder().encode(canonicalJson(header));
}

/** Exact size of the encrypted file for `header`, e.g. for an upload request before encrypting. */
export function datasetCiphertextBytes(header: DatasetHeader): number {
  return MAGIC.byteLength + 4 + encodeDatasetHeader(header).byteLength + recordCount(header) * (RECORD_PREFIX_BYTES + TAG_BYTES) + header.plaintext_bytes;
}

/** The result of parsing the front of a file. */
export interface ParsedDatasetHeader {
  header: DatasetHeader;
  /** The header bytes exactly as in the file (their SHA-256 is the AAD). */
  headerBytes: Uint8Array;
  /** Offset of the first record. */
  offset: number;
}

/** Bytes needed before the header: the magic and the length field. */
export const PREAMBLE_BYTES = MAGIC.byteLength + 4;

/**
 * Checks the magic and reads the header length from the first {@link PREAMBLE_BYTES} bytes (or
 * fewer, at the end of the input). DATASET_MALFORMED on a wrong magic or an out-of-range length;
 * DATASET_TRUNCATED when the input ends inside an otherwise valid preamble.
 */
export function parsePreamble(bytes: Uint8Array): number {
  const seen = Math.min(bytes.byteLength, MAGIC.byteLength);
  for (let i = 0; i < seen; i++) {
    if (bytes[i] !== MAGIC[i]) throw new CleanroomError('DATASET_MALFORMED', 'not an encrypted dataset (bad magic or version)');
  }
  if (bytes.byteLength < PREAMBLE_BYTES) throw new CleanroomError('DATASET_TRUNCATED', 'the dataset ends inside its preamble');
  const length = new DataView(bytes.buffer, bytes.byteOffset, PREAMBLE_BYTES).getUint32(MAGIC.byteLength);
  if (length < 2 || length > MAX_HEADER_BYTES) throw new CleanroomError('DATASET_MALFORMED', 'the dataset header length is out of range');
  return length;
}

/**
 * Parses header bytes: UTF-8, JSON, {@link DatasetHeaderSchema}, and canonical form (so that one
 * header has exactly one byte string, and a parser that reads duplicate keys differently cannot
 * see another header than we do). DATASET_MALFORMED otherwise.
 */
export function parseHeaderBytes(headerBytes: Uint8Array): DatasetHeader {
  let text: string;
  let json: unknown;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(headerBytes);
    json = JSON.parse(text);
  } catch (cause) {
    throw new CleanroomError('DATASET_MALFORMED', 'the dataset header is not JSON', { cause });
  }
  const parsed = v.safeParse(DatasetHeaderSchema, json);
  if (!parsed.success) throw new CleanroomError('DATASET_MALFORMED', `invalid dataset header: ${parsed.issues[0].message}`);
  if (canonicalJson(parsed.output) !== text) throw new CleanroomError('DATASET_MALFORMED', 'the dataset header is not canonical JSON');
  return parsed.output;
}

/**
 * Reads the header from the front of a file held in memory (for peeking at the first bytes of
 * an object). Nothing here is authenticated yet: the records authenticate the header when they
 * are decrypted. Throws DATASET_MALFORMED, or DATASET_TRUNCATED when `bytes` stops inside the
 * header (read more and call again).
 */
export function readDatasetHeader(bytes: Uint8Array): ParsedDatasetHeader {
  const length = parsePreamble(bytes);
  const offset = PREAMBLE_BYTES + length;
  if (bytes.byteLength < offset) throw new CleanroomError('DATASET_TRUNCATED', 'the dataset ends inside its header');
  const headerBytes = bytes.slice(PREAMBLE_BYTES, offset);
  return { header: parseHeaderBytes(headerBytes), headerBytes, offset };
}
