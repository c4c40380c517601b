import * as v from 'valibot';
import { CsvDialectSchema, type CsvDialect } from './csv-dialect.ts';
import { EmailSchema, SessionIdSchema, publicP256JwkSchema } from './session.ts';

/**
 * Wire shapes of the confidential data path (docs/architecture.md invariants 1, 2, 3, 8): dataset
 * uploads and registrations, the session key bundle and sealed results. The byte format of an
 * encrypted dataset is in `dataset-format.ts`; the key wrapping in `data-key.ts`; sealing in
 * `sealed-result.ts`; the session key certificate in `session-key.ts`.
 */

/**
 * Column types a dataset may declare: scalar types DuckDB reads exactly from CSV and Parquet,
 * and `DECIMAL(p,s)` (see {@link decimalType}) for exact numbers such as money.
 */
export const DATASET_COLUMN_TYPES = ['BOOLEAN', 'INTEGER', 'BIGINT', 'DOUBLE', 'VARCHAR', 'DATE', 'TIMESTAMP'] as const;
/** `DECIMAL(p,s)`: precision 1-38 digits, of which scale 0-p after the point. */
export type DecimalType = `DECIMAL(${number},${number})`;
export type DatasetColumnType = (typeof DATASET_COLUMN_TYPES)[number] | DecimalType;

/** DuckDB's largest DECIMAL precision. */
export const MAX_DECIMAL_PRECISION = 38;

/** One spelling per type: no spaces, no leading zeros, so equal types compare equal as text. */
const DECIMAL_TYPE = /^DECIMAL\(([1-9][0-9]?),(0|[1-9][0-9]?)\)$/;

/** The precision and scale of a `DECIMAL(p,s)` type in its one spelling, or null. */
export function parseDecimalType(type: string): { precision: number; scale: number } | null {
  const match = DECIMAL_TYPE.exec(type);
  if (match === null) return null;
  const precision = Number(match[1]);
  const scale = Number(match[2]);
  return precision <= MAX_DECIMAL_PRECISION && scale <= precision ? { precision, scale } : null;
}

/** `DECIMAL(p,s)`; a TypeError outside 1 <= p <= 38, 0 <= s <= p (a bug of the caller). */
export function decimalType(precision: number, scale: number): DecimalType {
  const type = `DECIMAL(${precision},${scale})` as DecimalType;
  if (parseDecimalType(type) === null) throw new TypeError(`no such DECIMAL type: ${type}`);
  return type;
}

/** True for a column type a dataset may declare. */
export function isDatasetColumnType(value: unknown): value is DatasetColumnType {
  return typeof value === 'string' && ((DATASET_COLUMN_TYPES as readonly string[]).includes(value) || parseDecimalType(value) !== null);
}

/** A declared column type; the message lists the choices. */
export const DatasetColumnTypeSchema = v.custom<DatasetColumnType>(
  isDatasetColumnType,
  `unsupported column type (supported: ${DATASET_COLUMN_TYPES.join(', ')}, DECIMAL(p,s) with 1 <= p <= 38, 0 <= s <= p)`,
);

/** Plaintext file formats inside the encrypted stream. A CSV's dialect is its `csv` member (`csv-dialect.ts`). */
export const DATASET_FORMATS = ['csv', 'parquet'] as const;
export type DatasetFormat = (typeof DATASET_FORMATS)[number];

export const DATASET_LIMITS = {
  maxColumns: 256,
  columnNameMaxLength: 128,
  maxDatasetsPerSession: 64,
  /** Default cap on one dataset's ciphertext; the control plane's config may lower or raise it. */
  defaultMaxCiphertextBytes: 8 * 1024 * 1024 * 1024,
  /** How long an upload URL stays valid. */
  uploadUrlTtlSeconds: 3600,
} as const;

/**
 * A table name: a plain lowercase identifier that cannot be read as a file path or URL and cannot
 * shadow DuckDB's own catalog objects (`duckdb_*`, `pg_*`, `sqlite_*`, `pragma_*`, schemas).
 */
export const TableNameSchema = v.pipe(
  v.string('table must be a string'),
  v.regex(/^[a-z][a-z0-9_]{0,62}$/, 'a table name is a lowercase identifier (a-z, 0-9, _), at most 63 characters'),
  v.check((name) => !/^(duckdb_|pg_|sqlite_|pragma_|information_schema$|main$|temp$|system$|memory$)/.test(name), 'reserved table name'),
);

/** A column name as DuckDB will see it: printable, no quotes or control characters. */
export const ColumnNameSchema = v.pipe(
  v.string(),
  v.minLength(1, 'a column name must not be empty'),
  v.maxLength(DATASET_LIMITS.columnNameMaxLength),
  v.regex(/^[^\u0000-\u001f\u007f"]+$/, 'a column name must not contain quotes or control characters'),
);

export const DatasetSchemaSchema = v.pipe(
  v.array(v.strictObject({ name: ColumnNameSchema, type: DatasetColumnTypeSchema })),
  v.minLength(1, 'a dataset needs at least one column'),
  v.maxLength(DATASET_LIMITS.maxColumns, `at most ${DATASET_LIMITS.maxColumns} columns`),
  v.check((cols) => new Set(cols.map((c) => c.name.toLowerCase())).size === cols.length, 'duplicate column name'),
);
export type DatasetSchema = v.InferOutput<typeof DatasetSchemaSchema>;

const Uuid = v.pipe(v.string(), v.uuid('must be a UUID'));
const Hex64 = v.pipe(v.string(), v.regex(/^[0-9a-f]{64}$/, 'must be 64 lowercase hex characters'));
const Thumbprint = v.pipe(v.string(), v.regex(/^[A-Za-z0-9_-]{43}$/, 'must be a base64url SHA-256 JWK thumbprint'));
const RowCount = v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(Number.MAX_SAFE_INTEGER));
const ByteCount = v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(Number.MAX_SAFE_INTEGER));
/** A compact JWE (five base64url parts). */
const CompactJwe = v.pipe(v.string(), v.maxLength(4096), v.regex(/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/, 'must be a compact JWE'));

/** `POST /api/tee/sessions/:id/datasets/uploads`: ask for a URL to upload one dataset's ciphertext to. */
export const CreateUploadRequestSchema = v.strictObject({
  /** Generated by the client; names the ciphertext object and is bound into the encrypted header. */
  dataset_id: Uuid,
  /** Exact ciphertext size; refused with DATASET_TOO_LARGE over the configured cap. */
  ciphertext_bytes: ByteCount,
});
export type CreateUploadRequest = v.InferOutput<typeof CreateUploadRequestSchema>;

/** The answer: send the ciphertext with `method` to `url` with exactly `headers`. */
export interface UploadTicket {
  dataset_id: string;
  object_key: string;
  url: string;
  method: 'PUT';
  headers: Record<string, string>;
  expires_at: string;
  max_bytes: number;
}

/** A CSV's dialect only on a CSV dataset (absent: RFC 4180, comma, header row). */
const DIALECT_ONLY_FOR_CSV = 'csv (the dialect) is only for format csv';

/** `POST /api/tee/sessions/:id/datasets`: register an uploaded dataset. Everything here is public metadata or ciphertext. */
export const RegisterDatasetRequestSchema = v.pipe(
  v.strictObject({
    dataset_id: Uuid,
    table: TableNameSchema,
    format: v.picklist(DATASET_FORMATS, 'format must be csv or parquet'),
    /** How the CSV is written; absent means RFC 4180 with a comma and a header row. Bound into the encrypted header too. */
    csv: v.optional(CsvDialectSchema),
    schema: DatasetSchemaSchema,
    row_count: RowCount,
    ciphertext_bytes: ByteCount,
    /** Hex SHA-256 of the whole ciphertext object; the worker checks it before decrypting. */
    ciphertext_sha256: Hex64,
    /** The 256-bit data key as a compact JWE to the session key (`data-key.ts`). */
    wrapped_key: CompactJwe,
    /** Thumbprint of the session key the data key is wrapped to. */
    session_key_thumbprint: Thumbprint,
  }),
  v.check((d) => d.format === 'csv' || d.csv === undefined, DIALECT_ONLY_FOR_CSV),
);
export type RegisterDatasetRequest = v.InferOutput<typeof RegisterDatasetRequestSchema>;

/** A dataset as the API shows it: metadata the control plane may see (docs/architecture.md §2). */
export interface DatasetView {
  id: string;
  session_id: string;
  owner_email: string;
  table: string;
  format: DatasetFormat;
  /** A CSV's dialect as registered; absent: RFC 4180, comma, header row. */
  csv?: CsvDialect;
  schema: DatasetSchema;
  row_count: number;
  ciphertext_bytes: number;
  ciphertext_sha256: string;
  session_key_thumbprint: string;
  created_at: string;
}

/**
 * One input of a query as the task carries it to the worker: where its ciphertext is and what the
 * owner registered. The worker checks hash, header, schema and row count against it.
 */
export const TaskInputSchema = v.pipe(
  v.strictObject({
    dataset_id: Uuid,
    table: TableNameSchema,
    owner_email: EmailSchema,
    object_key: v.pipe(v.string(), v.minLength(1), v.maxLength(512)),
    format: v.picklist(DATASET_FORMATS),
    /** The registered dialect of a CSV input; the worker loads with the header's, which must be the same. */
    csv: v.optional(CsvDialectSchema),
    schema: DatasetSchemaSchema,
    row_count: RowCount,
    ciphertext_bytes: ByteCount,
    ciphertext_sha256: Hex64,
    wrapped_key: CompactJwe,
    session_key_thumbprint: Thumbprint,
  }),
  v.check((d) => d.format === 'csv' || d.csv === undefined, DIALECT_ONLY_FOR_CSV),
);
export type TaskInput = v.InferOutput<typeof TaskInputSchema>;

/** A result recipient's public encryption key, as the task carries it. */
export const TaskRecipientKeySchema = v.strictObject({
  email: EmailSchema,
  encryption_jwk: publicP256JwkSchema('ECDH-ES+A256KW', 'enc'),
});
export type TaskRecipientKey = v.InferOutput<typeof TaskRecipientKeySchema>;

/** Object keys, one layout for every object store adapter. Ids are validated before they get here. */
export const objectKeys = {
  dataset: (sessionId: string, datasetId: string) => `datasets/${sessionId}/${datasetId}.crds`,
  datasetPrefix: (sessionId: string) => `datasets/${sessionId}/`,
  sessionKey: (sessionId: string, epoch: number) => `session-keys/${sessionId}/epoch-${epoch}.json`,
  sessionKeyPrefix: (sessionId: string) => `session-keys/${sessionId}/`,
  result: (sessionId: string, queryId: string) => `results/${sessionId}/${queryId}.json`,
  resultPrefix: (sessionId: string) => `results/${sessionId}/`,
} as const;

/** `POST /api/tee/sessions/:id/session-key`: the caller's fresh nonce for the attestation. */
export const SessionKeyRequestSchema = v.strictObject({
  nonce: v.pipe(v.string(), v.regex(/^[A-Za-z0-9_-]{16,128}$/, 'nonce must be 16-128 base64url characters')),
});

/**
 * What the worker publishes for a session key (docs/architecture.md invariant 3), relayed verbatim by the
 * control plane: the public key, a certificate (ES256 JWS by the worker's identity key naming the
 * session, epoch and key thumbprint) and an attestation token whose nonce binds the caller's nonce
 * and the identity key. `session-key.ts` verifies it.
 */
export const SessionKeyBundleSchema = v.strictObject({
  session_id: SessionIdSchema,
  epoch: v.pipe(v.number(), v.integer(), v.minValue(1)),
  public_jwk: publicP256JwkSchema('ECDH-ES+A256KW', 'enc'),
  thumbprint: Thumbprint,
  certificate: v.pipe(v.string(), v.maxLength(8192)),
  identity_jwk: publicP256JwkSchema('ES256', 'sig'),
  attestation: v.pipe(v.string(), v.maxLength(16384)),
  attestation_kind: v.pipe(v.string(), v.maxLength(64)),
});
export type SessionKeyBundle = v.InferOutput<typeof SessionKeyBundleSchema>;

/**
 * A sealed result as stored (`objectKeys.result`) and served by
 * `GET /api/tee/sessions/:id/queries/:qid/result`: a General JWE to every recipient, a receipt
 * (ES256 JWS by the worker's identity key) and what a client needs to check the receipt.
 */
export const SealedResultSchema = v.strictObject({
  v: v.literal(1),
  session_id: SessionIdSchema,
  query_id: Uuid,
  /** General JWE JSON serialization: `ECDH-ES+A256KW`, `A256GCM`, one entry per recipient. */
  jwe: v.strictObject({
    protected: v.string(),
    unprotected: v.optional(v.record(v.string(), v.unknown())),
    recipients: v.pipe(v.array(v.strictObject({ header: v.optional(v.record(v.string(), v.unknown())), encrypted_key: v.optional(v.string()) })), v.minLength(1), v.maxLength(50)),
    iv: v.string(),
    ciphertext: v.string(),
    tag: v.string(),
    aad: v.optional(v.string()),
  }),
  receipt: v.pipe(v.string(), v.maxLength(16384)),
  identity_jwk: publicP256JwkSchema('ES256', 'sig'),
  /** Attestation token binding the identity key (nonce: `attestationNonce(RECEIPT_NONCE, thumbprint)`). */
  attestation: v.pipe(v.string(), v.maxLength(16384)),
});
export type SealedResult = v.InferOutput<typeof SealedResultSchema>;

/** The payload of a receipt (docs/architecture.md invariant 9): what ran, on what, and what came out. */
export const ReceiptPayloadSchema = v.strictObject({
  typ: v.literal('cleanroom-receipt/v1'),
  session_id: SessionIdSchema,
  query_id: Uuid,
  attempt: v.pipe(v.number(), v.integer(), v.minValue(1)),
  /** Hex SHA-256 of the SQL text. */
  sql_sha256: Hex64,
  /** The inputs by dataset id and ciphertext hash, sorted by dataset id. */
  inputs: v.array(v.strictObject({ dataset_id: Uuid, ciphertext_sha256: Hex64 })),
  /**
   * Hex SHA-256 of the sealed plaintext: canonical JSON `{columns, rows, salt}` with a random
   * 256-bit salt, so the receipt (stored beside the ciphertext, readable by the control plane)
   * cannot confirm a guessed small result. The row count lives only inside the ciphertext.
   */
  result_sha256: Hex64,
  recipients: v.array(EmailSchema),
  image_digest: v.string(),
  iat: v.pipe(v.number(), v.integer()),
});
export type ReceiptPayload = v.InferOutput<typeof ReceiptPayloadSchema>;

/** The nonce the worker's receipt attestation binds (with its identity key's thumbprint). */
export const RECEIPT_NONCE = 'cleanroom-receipt-identity-v1';
