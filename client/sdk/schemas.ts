import * as v from 'valibot';
import { APPROVAL_POLICIES, SESSION_STATUSES } from '../../protocol/session.ts';

// The API's answers, checked once where they arrive. Loose objects: a newer API may add fields
// without breaking an older client; a missing or mistyped field is an unexpected response.

const ParticipantViewSchema = v.looseObject({
  email: v.string(),
  role: v.picklist(['owner', 'participant']),
  added_at: v.string(),
  keys: v.nullable(
    v.looseObject({ signing_kid: v.string(), encryption_kid: v.string(), registered_at: v.string() }),
  ),
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

/** `POST /dev-idp/token`. */
export const DevTokenSchema = v.looseObject({
  id_token: v.pipe(v.string(), v.minLength(1)),
  expires_at: v.string(),
});

/** The one error body of every API surface. */
export const ErrorEnvelopeSchema = v.looseObject({
  error: v.looseObject({ code: v.string(), message: v.string() }),
});
