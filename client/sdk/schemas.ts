import * as v from 'valibot';
import { AuditEntrySchema } from '../../protocol/audit.ts';
import { DATASET_FORMATS, SessionKeyBundleSchema as StrictSessionKeyBundleSchema } from '../../protocol/dataset.ts';
import { QUERY_STATUSES } from '../../protocol/query.ts';
import { APPROVAL_POLICIES, SESSION_STATUSES } from '../../protocol/session.ts';

// The API's answers, checked once where they arrive. Loose objects: a newer API may add fields
// without breaking an older client; a missing or mistyped field is an unexpected response.

/** A `ParticipantView` as received (also the answer of `PUT .../participants/me/keys`). */
export const ParticipantViewSchema = v.looseObject({
  email: v.string(),
  role: v.picklist(['owner', 'participant']),
  added_at: v.string(),
  keys: v.nullable(v.looseObject({ signing_kid: v.string(), encryption_kid: v.string(), registered_at: v.string() })),
});

/** A `SessionView` as received. */
export const SessionViewSchema = v.looseObject({
  id: v.string(),
  name: v.string(),
  owner_email: v.string(),
  participants: v.array(ParticipantViewSchema),
  config: v.looseObject({ allow_cross_party_joins: v.boolean(), approval_policy: v.picklist(APPROVAL_POLICIES) }),
  status: v.picklist(SESSION_STATUSES),
  created_at: v.string(),
  updated_at: v.string(),
  closed_at: v.nullable(v.string()),
  migrated_from: v.optional(v.string()),
});

/** One page of `GET /api/tee/sessions`. */
export const SessionPageSchema = v.looseObject({
  sessions: v.array(SessionViewSchema),
  next_cursor: v.nullable(v.string()),
});

const Timestamp = v.string();

/** A `QueryView` as received: status, decisions, timings and a fixed error code, never a result. */
export const QueryViewSchema = v.looseObject({
  id: v.string(),
  session_id: v.string(),
  sql: v.string(),
  proposer: v.string(),
  recipients: v.array(v.string()),
  status: v.picklist(QUERY_STATUSES),
  required_approvers: v.array(v.string()),
  decisions: v.array(v.looseObject({ email: v.string(), decision: v.picklist(['approve', 'reject']), at: Timestamp })),
  attempt: v.number(),
  created_at: Timestamp,
  updated_at: Timestamp,
  approved_at: v.nullable(Timestamp),
  queued_at: v.nullable(Timestamp),
  started_at: v.nullable(Timestamp),
  finished_at: v.nullable(Timestamp),
  // A plain string: a code newer than this client is still shown, not refused.
  error_code: v.nullable(v.string()),
  stats: v.nullable(v.looseObject({ rows: v.nullable(v.number()), bytes: v.number(), elapsed_ms: v.number() })),
  result_ref: v.nullable(v.string()),
});
export type QueryView = v.InferOutput<typeof QueryViewSchema>;

/** One page of `GET /api/tee/sessions/:id/queries`. */
export const QueryPageSchema = v.looseObject({
  queries: v.array(QueryViewSchema),
  next_cursor: v.nullable(v.string()),
});

/**
 * The worker's `GET /attestation?nonce=` answer. Untrusted until the token is verified: the
 * identity key is only passed on to the verifier, which checks that the token binds it.
 */
export const AttestationAnswerSchema = v.looseObject({
  token: v.pipe(v.string(), v.minLength(1), v.maxLength(16_384)),
  kind: v.pipe(v.string(), v.maxLength(64)),
  expires_at: v.nullable(v.pipe(v.string(), v.maxLength(64))),
  identity_jwk: v.record(v.string(), v.unknown()),
  instance_id: v.pipe(v.string(), v.maxLength(128)),
});

/** `POST /dev-idp/token`. */
export const DevTokenSchema = v.looseObject({
  id_token: v.pipe(v.string(), v.minLength(1)),
  expires_at: v.string(),
});

/** `POST /api/tee/sessions/:id/datasets/uploads`: where to PUT one dataset's ciphertext. */
export const UploadTicketSchema = v.looseObject({
  dataset_id: v.string(),
  object_key: v.string(),
  url: v.pipe(v.string(), v.url()),
  method: v.literal('PUT'),
  headers: v.record(v.string(), v.string()),
  expires_at: v.string(),
  max_bytes: v.number(),
});
export type UploadTicketView = v.InferOutput<typeof UploadTicketSchema>;

/** A `DatasetView` as received; a column type newer than this client is shown, not refused. */
export const DatasetViewSchema = v.looseObject({
  id: v.string(),
  session_id: v.string(),
  owner_email: v.string(),
  table: v.string(),
  format: v.picklist(DATASET_FORMATS),
  csv: v.optional(v.looseObject({ delimiter: v.string(), quote: v.string(), escape: v.string(), header: v.boolean() })),
  schema: v.array(v.looseObject({ name: v.string(), type: v.string() })),
  row_count: v.number(),
  ciphertext_bytes: v.number(),
  ciphertext_sha256: v.string(),
  session_key_thumbprint: v.string(),
  created_at: v.string(),
});
export type DatasetViewReceived = v.InferOutput<typeof DatasetViewSchema>;

/** `GET /api/tee/sessions/:id/datasets`. */
export const DatasetListSchema = v.looseObject({
  datasets: v.array(DatasetViewSchema),
});

/**
 * `POST /api/tee/sessions/:id/session-key`: the worker's bundle, relayed by the control plane.
 * Untrusted until `verifySessionKeyBundle`; loose here so that a newer worker may add members.
 */
export const SessionKeyBundleSchema = v.looseObject(StrictSessionKeyBundleSchema.entries);

/**
 * `GET /api/tee/sessions/:id/queries/:qid/result`: only the envelope's names are read here;
 * `openSealedResult` checks the whole object strictly before anything in it is trusted.
 */
export const SealedResultEnvelopeSchema = v.looseObject({
  v: v.number(),
  session_id: v.string(),
  query_id: v.string(),
});

/**
 * One audit entry as received: exactly the fields its hash covers (others a newer API may add
 * are dropped), with the action as a plain string so that a newer action still verifies.
 */
export const AuditEntryReceivedSchema = v.object({
  ...AuditEntrySchema.entries,
  action: v.pipe(v.string(), v.maxLength(128)),
});

/** `GET /api/tee/sessions/:id/audit`. */
export const AuditPageSchema = v.looseObject({
  entries: v.array(AuditEntryReceivedSchema),
  head: v.nullable(v.looseObject({ seq: v.number(), hash: v.string() })),
  next_after_seq: v.nullable(v.number()),
});
export type AuditPage = v.InferOutput<typeof AuditPageSchema>;

/** The one error body of every API surface. */
export const ErrorEnvelopeSchema = v.looseObject({
  error: v.looseObject({ code: v.string(), message: v.string() }),
});
