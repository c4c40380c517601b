import * as v from 'valibot';
import { APPROVAL_POLICIES, SESSION_STATUSES, publicP256JwkSchema } from '../../protocol/session.ts';

const Timestamp = v.pipe(v.string(), v.isoTimestamp());
const Hex64 = v.pipe(v.string(), v.regex(/^[0-9a-f]{64}$/));

/** A participant's registered public keys, as stored. */
export const ParticipantKeysSchema = v.strictObject({
  signing_jwk: publicP256JwkSchema('ES256', 'sig'),
  encryption_jwk: publicP256JwkSchema('ECDH-ES+A256KW', 'enc'),
  signing_kid: v.string(),
  encryption_kid: v.string(),
  /** The caller's ID token whose nonce binds both keys (DESIGN invariant 12); checked again by the worker. */
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
});
export type SessionRecord = v.InferOutput<typeof SessionRecordSchema>;
