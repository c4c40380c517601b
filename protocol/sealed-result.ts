import { CompactSign, GeneralEncrypt, compactVerify, decodeProtectedHeader, generalDecrypt, importJWK, type CryptoKey, type GeneralJWE, type JWK, type JWTVerifyGetKey } from 'jose';
import * as v from 'valibot';
import { verifyAttestation, type AttestationPolicy, type IssuerKeyCache } from './attestation.ts';
import { RECEIPT_NONCE, ReceiptPayloadSchema, SealedResultSchema, TaskRecipientKeySchema, type ReceiptPayload, type SealedResult, type TaskRecipientKey } from './dataset.ts';
import { CleanroomError } from './errors.ts';
import { jwkThumbprint } from './key-binding.ts';
import { SessionIdSchema } from './session.ts';

/**
 * Sealed results (docs/architecture.md invariants 8 and 9; ADR 0006): the canonical result JSON, padded to a
 * size bucket, as a General JWE to every recipient (`ECDH-ES+A256KW`, `A256GCM`, P-256), with a
 * receipt (ES256 JWS by the worker's attested identity key) that binds the unpadded plaintext's
 * hash, the query, its inputs and the recipients. Browser-safe.
 */

/** The `typ` of a sealed result's JWE. */
export const RESULT_TYP = 'cleanroom-result+jwe';
/** The `typ` of a receipt JWS. */
export const RECEIPT_TYP = 'cleanroom-receipt+jws';
const KEY_ALG = 'ECDH-ES+A256KW';
const ENC = 'A256GCM';
const SIG_ALG = 'ES256';
/** The smallest padded plaintext; sizes below it are indistinguishable. */
export const MIN_RESULT_BUCKET_BYTES = 1024;
const PAD = 0x20;
const MAX_RECIPIENTS = 50;

/** A result as the executor produced it: columns and rows in a fixed order. */
export interface ResultTable {
  columns: { name: string; type: string }[];
  rows: unknown[][];
}

/**
 * The result as canonical JSON bytes (UTF-8): `{"columns":...,"rows":...}`, object keys sorted by
 * UTF-16 code units, no whitespace, strings and numbers as `JSON.stringify` prints them (shortest
 * round trip). Byte-identical to the worker's `canonicalResultJson` for every result value.
 * `protocol/canonical-json.ts` does not fit: it refuses non-integer numbers, which results carry.
 */
export function canonicalResultBytes(result: ResultTable): Uint8Array {
  return new TextEncoder().encode(canonical({ columns: result.columns, rows: result.rows }));
}

function canonical(value: unknown): string {
  if (value === undefined || typeof value === 'function' || typeof value === 'symbol') throw new TypeError('a result holds JSON values only');
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  const record = value as Record<string, unknown>;
  return `{${Object.keys(record)
    .sort()
    .map((key) => `${JSON.stringify(key)}:${canonical(record[key])}`)
    .join(',')}}`;
}

/** The padded size: the next power of two, at least {@link MIN_RESULT_BUCKET_BYTES}. */
export function resultBucketBytes(length: number): number {
  let bucket = MIN_RESULT_BUCKET_BYTES;
  while (bucket < length) bucket *= 2;
  return bucket;
}

/**
 * Canonical JSON followed by spaces: still the same JSON, and unambiguous to strip because
 * canonical JSON of an object ends with `}`.
 */
function pad(bytes: Uint8Array): Uint8Array {
  const padded = new Uint8Array(resultBucketBytes(bytes.byteLength)).fill(PAD);
  padded.set(bytes);
  return padded;
}

function unpad(bytes: Uint8Array): Uint8Array {
  let end = bytes.byteLength;
  while (end > 0 && bytes[end - 1] === PAD) end--;
  return bytes.subarray(0, end);
}

function base64url(bytes: Uint8Array): string {
  let binary = '';
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes as Uint8Array<ArrayBuffer>));
  return Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** Only the members an RFC 7638 thumbprint covers. */
function ecMembers(jwk: JWK): JWK {
  return { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y };
}

/** Options of {@link sealResult}. */
export interface SealResultOptions {
  sessionId: string;
  queryId: string;
  attempt: number;
  /** The SQL text that ran; the receipt carries its hash. */
  sql: string;
  inputs: { dataset_id: string; ciphertext_sha256: string }[];
  result: ResultTable;
  /** Non-empty, unique by email: the recipients from the task. */
  recipients: TaskRecipientKey[];
  /** The worker's identity key, bound by {@link attestation}. */
  identity: { privateKey: CryptoKey; publicJwk: JWK };
  /** Attestation token whose nonce is `attestationNonce(RECEIPT_NONCE, identity thumbprint)`. */
  attestation: string;
  /** The worker's container image digest (`sha256:...`). */
  imageDigest: string;
  /** Injected time (the receipt's `iat`). */
  now?: Date;
}

/**
 * Seals a result: a General JWE of the padded canonical result to every recipient (per-recipient
 * header `{ kid: thumbprint, 'cleanroom.recipient': email }`, protected header binding `alg`,
 * `enc`, `typ`, session and query) and a receipt. Throws `TypeError` on misuse: no recipients, a
 * duplicate email, a malformed recipient key, or a receipt that would not pass its own schema.
 */
export async function sealResult(options: SealResultOptions): Promise<SealedResult> {
  const { sessionId, queryId, recipients, identity } = options;
  if (!Array.isArray(recipients) || recipients.length === 0) throw new TypeError('a result needs at least one recipient');
  if (recipients.length > MAX_RECIPIENTS) throw new TypeError(`at most ${MAX_RECIPIENTS} recipients`);
  const checkedRecipients = recipients.map((recipient) => {
    const parsed = v.safeParse(TaskRecipientKeySchema, recipient);
    if (!parsed.success) throw new TypeError('a recipient is not a TaskRecipientKey');
    return parsed.output;
  });
  const emails = checkedRecipients.map((r) => r.email);
  if (new Set(emails).size !== emails.length) throw new TypeError('recipients must be unique by email');

  // The salt keeps the receipt's hash (outside the ciphertext) from confirming a guessed result.
  const salt = base64url(crypto.getRandomValues(new Uint8Array(32)));
  const plaintext = new TextEncoder().encode(canonical({ columns: options.result.columns, rows: options.result.rows, salt }));
  const identityMembers = ecMembers(identity.publicJwk);
  const identityThumbprint = await jwkThumbprint(identityMembers);
  const receiptPayload: ReceiptPayload = {
    typ: 'cleanroom-receipt/v1',
    session_id: sessionId,
    query_id: queryId,
    attempt: options.attempt,
    sql_sha256: await sha256Hex(new TextEncoder().encode(options.sql)),
    inputs: [...options.inputs]
      .map(({ dataset_id, ciphertext_sha256 }) => ({ dataset_id, ciphertext_sha256 }))
      .sort((a, b) => (a.dataset_id < b.dataset_id ? -1 : a.dataset_id > b.dataset_id ? 1 : 0)),
    result_sha256: await sha256Hex(plaintext),
    recipients: [...emails].sort(),
    image_digest: options.imageDigest,
    iat: Math.floor((options.now ?? new Date()).getTime() / 1000),
  };
  if (!v.is(ReceiptPayloadSchema, receiptPayload)) throw new TypeError('the receipt would be malformed (ids, attempt, inputs or digest)');

  const receipt = await new CompactSign(new TextEncoder().encode(JSON.stringify(receiptPayload)))
    .setProtectedHeader({ alg: SIG_ALG, typ: RECEIPT_TYP, kid: identityThumbprint })
    .sign(identity.privateKey);

  const encrypt = new GeneralEncrypt(pad(plaintext)).setProtectedHeader({
    alg: KEY_ALG,
    enc: ENC,
    typ: RESULT_TYP,
    'cleanroom.session': sessionId,
    'cleanroom.query': queryId,
  });
  for (const recipient of checkedRecipients) {
    const members = ecMembers(recipient.encryption_jwk);
    encrypt.addRecipient(await importJWK(members, KEY_ALG)).setUnprotectedHeader({ kid: await jwkThumbprint(members), 'cleanroom.recipient': recipient.email });
  }
  const jwe = await encrypt.encrypt();

  const sealed: SealedResult = {
    v: 1,
    session_id: sessionId,
    query_id: queryId,
    jwe: jwe as SealedResult['jwe'],
    receipt,
    identity_jwk: { ...(identityMembers as { kty: 'EC'; crv: 'P-256'; x: string; y: string }), alg: 'ES256', use: 'sig', kid: identityThumbprint },
    attestation: options.attestation,
  };
  if (!v.is(SealedResultSchema, sealed)) throw new TypeError('the sealed result would be malformed');
  return sealed;
}

/** Checks the attestation token that binds a receipt's identity key, at the receipt's time. */
export type VerifyIdentity = (attestationToken: string, identityJwk: JWK, at: Date) => Promise<VerifiedIdentity | void>;

/** What a verified identity attestation established; the receipt must name the same image. */
export interface VerifiedIdentity {
  /** `submods.container.image_digest` of the verified token, when it has one. */
  imageDigest?: string;
}

/** Options of {@link openSealedResult}. */
export interface OpenSealedResultOptions {
  /** The sealed result as served (untrusted). */
  sealed: unknown;
  /** The recipient's ECDH P-256 private key. */
  recipientPrivateKey: CryptoKey;
  /** The session and query the caller asked for. */
  expect: { sessionId: string; queryId: string };
  /** Verifies the worker's identity, normally {@link receiptIdentityVerifier}. */
  verifyIdentity: VerifyIdentity;
}

/** An opened result and the verified receipt. */
export interface OpenedResult extends ResultTable {
  receipt: ReceiptPayload;
  /** The salt inside the ciphertext: with it, anyone holding the plaintext can recompute `receipt.result_sha256`. */
  salt: string;
}

const Coordinate = v.pipe(v.string(), v.regex(/^[A-Za-z0-9_-]{43}$/));
const Thumbprint = v.pipe(v.string(), v.regex(/^[A-Za-z0-9_-]{43}$/));
const EpkSchema = v.strictObject({ kty: v.literal('EC'), crv: v.literal('P-256'), x: Coordinate, y: Coordinate });
/**
 * The protected header. jose puts the ephemeral key (`epk`) here when there is one recipient and
 * in each recipient's header when there are several; either way jose refuses it in both places.
 */
const ResultHeaderSchema = v.strictObject({
  alg: v.literal(KEY_ALG),
  enc: v.literal(ENC),
  typ: v.literal(RESULT_TYP),
  'cleanroom.session': SessionIdSchema,
  'cleanroom.query': v.string(),
  epk: v.optional(EpkSchema),
});
/** A recipient entry's header: what {@link sealResult} writes plus jose's ephemeral key. */
const RecipientHeaderSchema = v.strictObject({
  kid: Thumbprint,
  'cleanroom.recipient': v.pipe(v.string(), v.maxLength(320)),
  epk: v.optional(EpkSchema),
});
const ReceiptHeaderSchema = v.strictObject({ alg: v.literal(SIG_ALG), typ: v.literal(RECEIPT_TYP), kid: Thumbprint });
const SealedPlaintextSchema = v.strictObject({
  columns: v.array(v.strictObject({ name: v.string(), type: v.string() })),
  rows: v.array(v.array(v.unknown())),
  salt: v.pipe(v.string(), v.regex(/^[A-Za-z0-9_-]{43}$/)),
});
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

function tampered(message: string, cause?: unknown): never {
  throw new CleanroomError('RESULT_TAMPERED', message, cause === undefined ? undefined : { cause });
}

function receiptInvalid(message: string, cause?: unknown): never {
  throw new CleanroomError('RESULT_RECEIPT_INVALID', message, cause === undefined ? undefined : { cause });
}

function decodeJson(bytes: Uint8Array): unknown {
  return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
}

function base64urlJson(part: string): unknown {
  const base64 = part.replace(/-/g, '+').replace(/_/g, '/');
  return decodeJson(Uint8Array.from(atob(base64 + '='.repeat((4 - (base64.length % 4)) % 4)), (c) => c.charCodeAt(0)));
}

/**
 * Opens a sealed result in a fixed order: shape (`RESULT_TAMPERED`); the session and query in the
 * envelope and the JWE's protected header equal `expect` (`RESULT_TAMPERED`); the attestation of
 * the identity key at the receipt's `iat` (`verifyIdentity`'s errors pass through); the receipt:
 * pinned header, signature by that identity key, schema, same session and query
 * (`RESULT_RECEIPT_INVALID`); decryption with the recipient's key (`RESULT_TAMPERED`); the SHA-256
 * of the unpadded plaintext (columns, rows and salt) equals the receipt's (`RESULT_RECEIPT_INVALID`).
 *
 * Every recipient entry is tried: the private key may be non-extractable, so its thumbprint (the
 * entries' `kid`) cannot be computed here; a wrong entry fails AES key unwrap and costs one ECDH.
 */
export async function openSealedResult(options: OpenSealedResultOptions): Promise<OpenedResult> {
  const { expect } = options;

  // 1. Shape.
  const shaped = v.safeParse(SealedResultSchema, options.sealed);
  if (!shaped.success) tampered('the sealed result is malformed');
  const sealed = shaped.output;

  // 2. The result the caller asked for, in the envelope and in the authenticated header.
  if (sealed.session_id !== expect.sessionId || sealed.query_id !== expect.queryId) tampered('the sealed result is for another query');
  if (sealed.jwe.unprotected !== undefined || sealed.jwe.aad !== undefined) tampered('the sealed result carries unexpected JWE members');
  let header: unknown;
  try {
    header = decodeProtectedHeader(sealed.jwe as GeneralJWE);
  } catch (cause) {
    tampered('the sealed result header is not readable', cause);
  }
  const resultHeader = v.safeParse(ResultHeaderSchema, header);
  if (!resultHeader.success) tampered('the sealed result header is not a result header');
  if (resultHeader.output['cleanroom.session'] !== expect.sessionId || resultHeader.output['cleanroom.query'] !== expect.queryId) {
    tampered('the sealed result header names another query');
  }
  if (!sealed.jwe.recipients.every((entry) => v.is(RecipientHeaderSchema, entry.header) && typeof entry.encrypted_key === 'string')) {
    tampered('a recipient entry is malformed');
  }

  // 3. The identity key is a genuine worker's, at the time it signed the receipt. The `iat` read
  //    here is unverified; step 4 checks that key signed exactly these bytes.
  const receiptParts = sealed.receipt.split('.');
  if (!COMPACT_JWS.test(sealed.receipt) || receiptParts.length !== 3) receiptInvalid('the receipt is not a compact JWS');
  let unverifiedIat: unknown;
  try {
    unverifiedIat = (base64urlJson(receiptParts[1]!) as { iat?: unknown } | null)?.iat;
  } catch {
    receiptInvalid('the receipt payload is not JSON');
  }
  // An `iat` outside Date's range would make the attestation's age checks compare with NaN.
  const at = new Date(typeof unverifiedIat === 'number' && Number.isSafeInteger(unverifiedIat) ? unverifiedIat * 1000 : Number.NaN);
  if (Number.isNaN(at.getTime())) receiptInvalid('the receipt has no valid iat');
  const attested = await options.verifyIdentity(sealed.attestation, sealed.identity_jwk, at);

  // 4. The receipt, by that identity key only.
  const identityMembers = ecMembers(sealed.identity_jwk);
  let receiptHeader: unknown;
  try {
    receiptHeader = decodeProtectedHeader(sealed.receipt);
  } catch (cause) {
    receiptInvalid('the receipt header is not readable', cause);
  }
  const pinned = v.safeParse(ReceiptHeaderSchema, receiptHeader);
  if (!pinned.success) receiptInvalid('the receipt header is not a receipt header');
  if (pinned.output.kid !== (await jwkThumbprint(identityMembers))) receiptInvalid('the receipt names another identity key');
  let receiptBytes: Uint8Array;
  try {
    const identityKey = await importJWK(identityMembers, SIG_ALG);
    ({ payload: receiptBytes } = await compactVerify(sealed.receipt, identityKey, { algorithms: [SIG_ALG] }));
  } catch (cause) {
    receiptInvalid('the receipt signature is not valid', cause);
  }
  let receiptJson: unknown;
  try {
    receiptJson = decodeJson(receiptBytes);
  } catch {
    receiptInvalid('the receipt payload is not JSON');
  }
  const receiptParsed = v.safeParse(ReceiptPayloadSchema, receiptJson);
  if (!receiptParsed.success) receiptInvalid('the receipt payload is malformed');
  const receipt = receiptParsed.output;
  if (receipt.session_id !== expect.sessionId || receipt.query_id !== expect.queryId) receiptInvalid('the receipt is for another query');
  // The image the receipt names must be the one the hardware attested, not a claim of the signer.
  if (attested?.imageDigest !== undefined && receipt.image_digest !== attested.imageDigest) receiptInvalid('the receipt names another image than the attested one');

  // 5. Decrypt.
  let padded: Uint8Array;
  try {
    ({ plaintext: padded } = await generalDecrypt(sealed.jwe as GeneralJWE, options.recipientPrivateKey, {
      keyManagementAlgorithms: [KEY_ALG],
      contentEncryptionAlgorithms: [ENC],
    }));
  } catch (cause) {
    tampered('the sealed result does not decrypt with this key', cause);
  }

  // 6. The plaintext is the one the worker signed for.
  const plaintext = unpad(padded);
  if ((await sha256Hex(plaintext)) !== receipt.result_sha256) receiptInvalid('the result does not match its receipt');
  let table: unknown;
  try {
    table = decodeJson(plaintext);
  } catch {
    // No cause: the parser's message would quote the result.
    tampered('the result is not JSON');
  }
  const parsedTable = v.safeParse(SealedPlaintextSchema, table);
  if (!parsedTable.success) tampered('the result is not a result table');
  return { columns: parsedTable.output.columns, rows: parsedTable.output.rows, receipt, salt: parsedTable.output.salt };
}

/** Options of {@link receiptIdentityVerifier}. */
export interface ReceiptIdentityVerifierOptions {
  policy: AttestationPolicy;
  keyCache?: IssuerKeyCache;
  keys?: JWTVerifyGetKey;
  devKeys?: JWTVerifyGetKey;
}

/**
 * The usual {@link VerifyIdentity}: `verifyAttestation` with nonce {@link RECEIPT_NONCE} and the
 * presented identity key, at the receipt's time (its `ATTESTATION_*` codes pass through).
 */
export function receiptIdentityVerifier(options: ReceiptIdentityVerifierOptions): VerifyIdentity {
  return async (attestationToken, identityJwk, at) => {
    const verified = await verifyAttestation(attestationToken, {
      nonce: RECEIPT_NONCE,
      identityJwk,
      policy: options.policy,
      currentDate: at,
      ...(options.keyCache !== undefined ? { keyCache: options.keyCache } : {}),
      ...(options.keys !== undefined ? { keys: options.keys } : {}),
      ...(options.devKeys !== undefined ? { devKeys: options.devKeys } : {}),
    });
    const digest = verified.claims.submods?.container?.image_digest;
    return digest === undefined ? {} : { imageDigest: digest };
  };
}
