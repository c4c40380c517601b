/**
 * The encrypted dataset byte format (docs/architecture.md §7 "Dataset format"): a chunked AES-256-GCM
 * stream in the STREAM construction. Browser-safe (WebCrypto, streams, jose, valibot).
 *
 * ```
 * file   = MAGIC ("CRDS" 00 00 00 01) | u32 BE header length (<= 64 KiB) | header | record+
 * header = canonical JSON of DatasetHeader (sorted keys, no whitespace); its `v` is 1, or 2 for
 *          a CSV whose dialect it names (`csv`: delimiter, quote, escape, header row)
 * record = u32 BE ciphertext length (16..chunk_bytes+16)
 *        | stream tag (first 8 bytes of SHA-256(header), in clear; diagnoses splices only)
 *        | AES-256-GCM ciphertext and 16-byte tag of up to chunk_bytes plaintext
 * nonce(i, last) = nonce_prefix (7 bytes) | u32 BE i | 01 if last else 00
 * AAD            = SHA-256(header bytes)
 * ```
 *
 * Every record but the last carries exactly `chunk_bytes`; there are
 * max(1, ceil(plaintext_bytes / chunk_bytes)) records, so an empty dataset is one empty last
 * record and a stream without records is refused. The last-record flag in the nonce makes
 * truncation at a record boundary detectable; the counter makes reordering detectable; the AAD
 * binds every record to the header (session, dataset id, owner, table, schema, row count, size).
 */
export { type ChunkAead, DATA_KEY_BYTES, generateDataKey, generateNoncePrefix, webCryptoAead } from './dataset-format/aead.ts';
export { type DecryptDatasetOptions, type DecryptedDataset, decryptDataset } from './dataset-format/decrypt.ts';
export { type EncryptDatasetOptions, encryptDataset } from './dataset-format/encrypt.ts';
export {
  DEFAULT_CHUNK_BYTES,
  type DatasetHeader,
  type DatasetHeaderInit,
  DatasetHeaderInitSchema,
  DatasetHeaderSchema,
  HEADER_VERSIONS,
  MAGIC,
  MAX_CHUNK_BYTES,
  MAX_HEADER_BYTES,
  MIN_CHUNK_BYTES,
  type ParsedDatasetHeader,
  datasetCiphertextBytes,
  encodeDatasetHeader,
  headerVersion,
  readDatasetHeader,
  recordCount,
} from './dataset-format/header.ts';
