import * as v from 'valibot';
import { ERROR_STATUS, type ErrorCode } from '../../protocol/errors.ts';
import { QUERY_STATUSES } from '../../protocol/query.ts';
import { DATASET_FORMATS, DATASET_LIMITS, DatasetSchemaSchema, TableNameSchema, TaskRecipientKeySchema } from '../../protocol/dataset.ts';
import { CsvDialectSchema } from '../../protocol/csv-dialect.ts';
import { APPROVAL_POLICIES, SESSION_STATUSES, publicP256JwkSchema } from '../../protocol/session.ts';
import { MAX_SQL_LENGTH } from '../../protocol/task.ts';

const Timestamp = v.pipe(v.string(), v.isoTimestamp());
const Hex64 = v.pipe(v.string(), v.regex(/^[0-9a-f]{64}$/));

/** A participant's registered public keys, as stored. */
export const ParticipantKeysSchema = v.strictObject({
  signing_jwk: publicP256JwkSchema('ES256', 'sig'),
  encryption_jwk: publicP256JwkSchema('ECDH-ES+A256KW', 'enc'),
  signing_kid: v.string(),
  encryption_kid: v.string(),
  /** The caller's ID token whose nonce binds both keys (docs/architecture.md invariant 12); checked again by the worker. */
  binding_token: v.string(),
  /** The identity provider's stable subject for this email. */
  sub: v.string(),
  registered_at: Timestamp,
});

export const ParticipantRecordSchema = v.strictObject({
  email: v.string(),
  role: v.picklist(['owner', 'participant']),
  added_at: Timestamp,
  keys: v.nullable(ParticipantKeysSchema),
});
export type ParticipantRecord = v.InferOutput<typeof ParticipantRecordSchema>;

/**
 * A collaboration session document as the store holds it (Firestore `collaboration_sessions/{id}`,
 * SQLite `sessions.doc`). Parsed with this schema every time it is read back.
 */
export const SessionRecordSchema = v.strictObject({
  id: v.string(),
  name: v.string(),
  owner_email: v.string(),
  /** Derived from `participants`; kept for `array-contains` queries and firestore.rules. */
  participant_emails: v.array(v.string()),
  participants: v.array(ParticipantRecordSchema),
  config: v.strictObject({
    allow_cross_party_joins: v.boolean(),
    approval_policy: v.picklist(APPROVAL_POLICIES),
  }),
  status: v.picklist(SESSION_STATUSES),
  created_at: Timestamp,
  updated_at: Timestamp,
  closed_at: v.nullable(Timestamp),
  /** Incremented by every write; updates are conditional on it. */
  version: v.pipe(v.number(), v.integer(), v.minValue(1)),
  /** The audit chain's head, written in the same transaction as each entry. */
  audit_head: v.strictObject({ seq: v.pipe(v.number(), v.integer(), v.minValue(1)), hash: Hex64 }),
  /** `tees/<id>` for sessions moved by the migration. */
  migrated_from: v.optional(v.string()),
  /**
   * Crypto-shredding (docs/architecture.md invariant 3). Absent: nothing to shred (an ACTIVE session, or one
   * closed before datasets existed). null: CLOSED, its session key and dataset objects are still
   * to be destroyed for good. A time: the final shredding pass finished then.
   */
  shredded_at: v.optional(v.nullable(Timestamp)),
});
export type SessionRecord = v.InferOutput<typeof SessionRecordSchema>;

const Count = v.pipe(v.number(), v.integer(), v.minValue(0));
const Email = v.pipe(v.string(), v.minLength(1), v.maxLength(254));
const Uuid = v.pipe(v.string(), v.uuid());
const SessionIdField = v.pipe(v.string(), v.minLength(1), v.maxLength(128));
const ERROR_CODES = Object.keys(ERROR_STATUS) as [ErrorCode, ...ErrorCode[]];

/** One participant's decision on a query, as the control plane recorded it (not yet a signature the worker checks). */
export const QueryDecisionSchema = v.strictObject({
  email: Email,
  decision: v.picklist(['approve', 'reject']),
  at: Timestamp,
});
export type QueryDecision = v.InferOutput<typeof QueryDecisionSchema>;

/**
 * A query as the store holds it (Firestore `collaboration_sessions/{session}/queries/{id}`,
 * SQLite `queries.doc`), parsed with this schema every time it is read back. It holds metadata
 * the control plane may see (docs/architecture.md §2): SQL text, recipients, timings, codes; never a
 * result, an engine message or a row count.
 */
export const QueryRecordSchema = v.strictObject({
  id: v.pipe(v.string(), v.uuid()),
  session_id: v.pipe(v.string(), v.minLength(1), v.maxLength(128)),
  sql: v.pipe(v.string(), v.minLength(1), v.maxLength(MAX_SQL_LENGTH)),
  proposer: Email,
  /** Who may read the result: session participants at proposal time. */
  recipients: v.pipe(v.array(Email), v.minLength(1), v.maxLength(50)),
  status: v.picklist(QUERY_STATUSES),
  /** When the query entered its current status (or its current attempt): what the reconciler ages by. */
  status_since: Timestamp,
  /** Fixed at proposal time from the session's approval policy; the proposer is always one. */
  required_approvers: v.pipe(v.array(Email), v.minLength(1), v.maxLength(50)),
  decisions: v.pipe(v.array(QueryDecisionSchema), v.maxLength(50)),
  /** 0 until queued; each queueing (first or after an expired task) adds one. */
  attempt: v.pipe(Count, v.maxValue(1000)),
  /** The `jti` of the current attempt's task: worker events naming another are ignored. */
  task_id: v.nullable(v.pipe(v.string(), v.uuid())),
  created_at: Timestamp,
  updated_at: Timestamp,
  approved_at: v.nullable(Timestamp),
  queued_at: v.nullable(Timestamp),
  started_at: v.nullable(Timestamp),
  /** When the query reached a final status (SUCCEEDED, FAILED, REJECTED, CANCELLED, EXPIRED). */
  finished_at: v.nullable(Timestamp),
  /** A fixed code (docs/architecture.md invariant 11), never engine text. */
  error_code: v.nullable(v.picklist(ERROR_CODES)),
  stats: v.nullable(
    v.strictObject({
      /** Always null: the row count belongs in the sealed result's signed header (docs/architecture.md §2). */
      rows: v.null(),
      bytes: Count,
      /** Rounded up to whole seconds: coarse timings only (docs/architecture.md §2). */
      elapsed_ms: Count,
    }),
  ),
  result_ref: v.nullable(v.pipe(v.string(), v.maxLength(512))),
  /**
   * The datasets the query reads, fixed when it is proposed: the session's datasets whose table
   * name the SQL names. Dataset records never change, so the id pins the version the approvers
   * saw. Absent on queries proposed before datasets existed.
   */
  inputs: v.optional(v.pipe(v.array(v.strictObject({ dataset_id: Uuid, table: TableNameSchema })), v.maxLength(DATASET_LIMITS.maxDatasetsPerSession))),
  /** Each recipient's registered encryption key, fixed when the query is proposed; the result is sealed to these. */
  recipient_keys: v.optional(v.pipe(v.array(TaskRecipientKeySchema), v.maxLength(50))),
  /** Incremented by every write; transitions are conditional on it (and on the session's). */
  version: v.pipe(v.number(), v.integer(), v.minValue(1)),
});
export type QueryRecord = v.InferOutput<typeof QueryRecordSchema>;

/**
 * A registered dataset as the store holds it (Firestore `collaboration_sessions/{session}/datasets/{id}`,
 * SQLite `datasets.doc`), parsed with this schema every time it is read back. Only what the owner's
 * registration carried: public metadata, the ciphertext's size and hash, and the data key wrapped
 * to the session key (docs/architecture.md invariant 2). Records are never changed once written.
 */
export const DatasetRecordSchema = v.strictObject({
  id: Uuid,
  session_id: SessionIdField,
  owner_email: Email,
  table: TableNameSchema,
  format: v.picklist(DATASET_FORMATS),
  /** A CSV's dialect as registered; absent on CSVs registered before dialects were (RFC 4180, comma). */
  csv: v.optional(CsvDialectSchema),
  schema: DatasetSchemaSchema,
  row_count: v.pipe(Count, v.maxValue(Number.MAX_SAFE_INTEGER)),
  ciphertext_bytes: v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(Number.MAX_SAFE_INTEGER)),
  ciphertext_sha256: Hex64,
  wrapped_key: v.pipe(v.string(), v.minLength(1), v.maxLength(4096)),
  session_key_thumbprint: v.pipe(v.string(), v.regex(/^[A-Za-z0-9_-]{43}$/)),
  /** `objectKeys.dataset(session_id, id)`: where the ciphertext is. */
  object_key: v.pipe(v.string(), v.minLength(1), v.maxLength(512)),
  created_at: Timestamp,
});
export type DatasetRecord = v.InferOutput<typeof DatasetRecordSchema>;
