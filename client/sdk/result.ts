import { IssuerKeyCache } from '../../protocol/attestation.ts';
import type { ReceiptPayload } from '../../protocol/dataset.ts';
import { openSealedResult, receiptIdentityVerifier, type ResultTable } from '../../protocol/sealed-result.ts';
import type { CleanroomApi } from './api-client.ts';
import { policyForToken, type AttestationChoice } from './attestation-policy.ts';
import { asGlobalFetch, type FetchLike } from './transport.ts';

/** Options of {@link getResult}. */
export interface GetResultOptions {
  api: CleanroomApi;
  sessionId: string;
  queryId: string;
  /** The recipient's ECDH P-256 private key (the encryption key registered for this session). */
  encryptionPrivateKey: CryptoKey;
  /** What to accept of the worker's attestation that binds the receipt's signing key. */
  attestation: AttestationChoice;
  keyCache?: IssuerKeyCache;
  /** For the attestation issuer's keys when no `keyCache` is given. Defaults to the global `fetch`. */
  fetch?: FetchLike;
}

/** A decrypted result whose receipt verified. */
export interface VerifiedResult extends ResultTable {
  receipt: ReceiptPayload;
  /** True when the receipt's worker was attested by a dev attester only: nothing is attested. */
  insecureDev: boolean;
  /** False when the digest was taken from the dev token itself rather than an allow-list. */
  digestPinned: boolean;
}

/**
 * Fetches a query's sealed result (recipients only) and opens it locally (docs/architecture.md invariant 8):
 * the worker's identity key must be attested at the receipt's time, the receipt signed by it for
 * this query, the result decrypt with this recipient's key and match the receipt's hash and row
 * count. Throws `CleanroomError` (`RESULT_NOT_FOUND`, `RESULT_NOT_READY`, `ATTESTATION_*`,
 * `RESULT_RECEIPT_INVALID`, `RESULT_TAMPERED`, ...) otherwise.
 */
export async function getResult(options: GetResultOptions): Promise<VerifiedResult> {
  const sealed = await options.api.getSealedResult(options.sessionId, options.queryId);
  const keyCache = options.keyCache ?? new IssuerKeyCache({ fetch: asGlobalFetch(options.fetch ?? ((input, init) => fetch(input, init))) });
  let chosen: ReturnType<typeof policyForToken> | undefined;
  const opened = await openSealedResult({
    sealed,
    recipientPrivateKey: options.encryptionPrivateKey,
    expect: { sessionId: options.sessionId, queryId: options.queryId },
    verifyIdentity: async (token, identityJwk, at) => {
      chosen = policyForToken(token, options.attestation);
      return receiptIdentityVerifier({ policy: chosen.policy, keyCache })(token, identityJwk, at);
    },
  });
  // openSealedResult calls verifyIdentity before it returns anything.
  if (chosen === undefined) throw new TypeError('the receipt identity was not verified');
  return { ...opened, insecureDev: chosen.dev, digestPinned: chosen.digestPinned };
}

/**
 * A result as RFC 4180 CSV: a header row of column names, then one line per row, CRLF line
 * breaks. NULL is an empty field and the empty string `""`; strings holding a comma, a quote or a
 * line break are quoted; nested values (lists, structs) are written as JSON.
 */
export function resultToCsv(result: ResultTable): string {
  const lines = [result.columns.map((c) => csvField(c.name)).join(',')];
  for (const row of result.rows) lines.push(row.map(csvValue).join(','));
  return `${lines.join('\r\n')}\r\n`;
}

function csvValue(value: unknown): string {
  if (value === null || value === undefined) return '';
  if (typeof value === 'string') return value === '' ? '""' : csvField(value);
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  return csvField(JSON.stringify(value));
}

function csvField(text: string): string {
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}
