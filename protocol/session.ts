import * as v from 'valibot';

/** Bounds that apply at every trust boundary. */
export const LIMITS = {
  nameMaxLength: 128,
  maxParticipants: 50,
  emailMaxLength: 254,
  idMaxLength: 128,
  pageSizeDefault: 50,
  pageSizeMax: 200,
  bodyMaxBytes: 64 * 1024,
} as const;

export const SESSION_STATUSES = ['ACTIVE', 'CLOSED'] as const;
export type SessionStatus = (typeof SESSION_STATUSES)[number];

export const APPROVAL_POLICIES = ['none', 'dataset_owners', 'all_participants'] as const;
export type ApprovalPolicy = (typeof APPROVAL_POLICIES)[number];

/** An email address, lowercased (emails are compared lowercased everywhere). */
export const EmailSchema = v.pipe(v.string(), v.trim(), v.maxLength(LIMITS.emailMaxLength, 'email is too long'), v.email('not a valid email address'), v.toLowerCase());

/** A session id: new ones are UUIDs; migrated ones keep their legacy document id. */
export const SessionIdSchema = v.pipe(v.string(), v.regex(/^[A-Za-z0-9_-]{1,128}$/, 'not a valid session id'));

/** `POST /api/tee/sessions`. */
export const CreateSessionRequestSchema = v.strictObject({
  name: v.pipe(
    v.string('name must be a string'),
    v.trim(),
    v.minLength(1, 'name must not be empty'),
    v.maxLength(LIMITS.nameMaxLength, `name must be at most ${LIMITS.nameMaxLength} characters`),
    v.check((s) => !/[\u0000-\u001f\u007f]/.test(s), 'name must not contain control characters'),
  ),
  participant_emails: v.optional(
    v.pipe(v.array(EmailSchema, 'participant_emails must be an array of emails'), v.maxLength(LIMITS.maxParticipants - 1, `at most ${LIMITS.maxParticipants} participants`)),
  ),
  allow_cross_party_joins: v.optional(v.boolean('allow_cross_party_joins must be a boolean')),
  approval_policy: v.optional(v.picklist(APPROVAL_POLICIES, 'approval_policy must be none, dataset_owners or all_participants')),
});
export type CreateSessionRequest = v.InferOutput<typeof CreateSessionRequestSchema>;

/** `POST /api/tee/sessions/:id/participants`. */
export const AddParticipantRequestSchema = v.strictObject({ email: EmailSchema });

const Base64Url32 = v.pipe(v.string(), v.regex(/^[A-Za-z0-9_-]{43}$/, 'not a 32-byte base64url coordinate'));

/** A public P-256 JWK. `strictObject` refuses private keys (`d`) outright. */
export function publicP256JwkSchema(alg: 'ES256' | 'ECDH-ES+A256KW', use: 'sig' | 'enc') {
  return v.strictObject({
    kty: v.literal('EC'),
    crv: v.literal('P-256'),
    x: Base64Url32,
    y: Base64Url32,
    alg: v.optional(v.literal(alg)),
    use: v.optional(v.literal(use)),
    kid: v.optional(v.pipe(v.string(), v.maxLength(128))),
  });
}

/** `PUT /api/tee/sessions/:id/participants/me/keys`. */
export const RegisterKeysRequestSchema = v.strictObject({
  signing_jwk: publicP256JwkSchema('ES256', 'sig'),
  encryption_jwk: publicP256JwkSchema('ECDH-ES+A256KW', 'enc'),
  /** An ID token of the caller whose `nonce` is {@link keyBindingNonce} of the two keys. */
  binding_token: v.pipe(v.string(), v.minLength(1), v.maxLength(8192)),
});
export type RegisterKeysRequest = v.InferOutput<typeof RegisterKeysRequestSchema>;
export type PublicJwk = RegisterKeysRequest['signing_jwk'];

/** A `limit` query parameter: 1 to {@link LIMITS.pageSizeMax}, as a string on the wire. */
export const PageLimitSchema = v.pipe(
  v.string(),
  v.regex(/^\d{1,4}$/, 'limit must be a number'),
  v.transform(Number),
  v.minValue(1, 'limit must be at least 1'),
  v.maxValue(LIMITS.pageSizeMax, `limit must be at most ${LIMITS.pageSizeMax}`),
);

/** `GET /api/tee/sessions` query string. */
export const ListSessionsQuerySchema = v.strictObject({
  status: v.optional(v.picklist(SESSION_STATUSES, 'status must be ACTIVE or CLOSED')),
  limit: v.optional(PageLimitSchema),
  cursor: v.optional(v.pipe(v.string(), v.maxLength(512))),
});

/** `GET /api/tee/sessions/:id/audit` query string. */
export const ListAuditQuerySchema = v.strictObject({
  after_seq: v.optional(v.pipe(v.string(), v.regex(/^\d{1,9}$/, 'after_seq must be a number'), v.transform(Number))),
  limit: v.optional(PageLimitSchema),
});

/** A participant as the API shows it. */
export interface ParticipantView {
  email: string;
  role: 'owner' | 'participant';
  added_at: string;
  keys: { signing_kid: string; encryption_kid: string; registered_at: string } | null;
}

/** A session as the API shows it. */
export interface SessionView {
  id: string;
  name: string;
  owner_email: string;
  participants: ParticipantView[];
  config: { allow_cross_party_joins: boolean; approval_policy: ApprovalPolicy };
  status: SessionStatus;
  created_at: string;
  updated_at: string;
  closed_at: string | null;
  migrated_from?: string;
}
