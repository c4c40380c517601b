import { decodeJwt } from 'jose';
import { attestationNonce } from '../../protocol/attestation.ts';
import { RECEIPT_NONCE } from '../../protocol/dataset.ts';
import type { Attester } from '../attestation/port.ts';
import type { WorkerIdentity } from '../identity.ts';

/** A token is used for receipts until this long before it expires (a verifier checks it at the receipt's `iat`). */
export const RECEIPT_ATTESTATION_MARGIN_MS = 5 * 60_000;

/** The attestation a receipt carries and the image digest it names. */
export interface ReceiptAttestation {
  token: string;
  /** `submods.container.image_digest` of the token (what the hardware measured), else the configured one. */
  imageDigest: string;
}

export interface ReceiptAttestationOptions {
  attester: Pick<Attester, 'token'>;
  audience: string;
  identity: WorkerIdentity;
  /** Used when a token does not name a digest. */
  fallbackImageDigest: string;
  now?: () => number;
}

/**
 * The attestation every sealed result carries (docs/architecture.md invariant 9): a token whose nonce is
 * `attestationNonce(RECEIPT_NONCE, identity thumbprint)`, so it binds the key that signs
 * receipts. One token serves every receipt until {@link RECEIPT_ATTESTATION_MARGIN_MS} before it
 * expires; concurrent callers share one request to the attester.
 */
export function receiptAttestation(options: ReceiptAttestationOptions): () => Promise<ReceiptAttestation> {
  const now = options.now ?? (() => Date.now());
  let cached: { value: ReceiptAttestation; refreshAt: number } | undefined;
  let pending: Promise<ReceiptAttestation> | undefined;
  const fetchOne = async (): Promise<ReceiptAttestation> => {
    const token = await options.attester.token({
      audience: options.audience,
      nonces: [await attestationNonce(RECEIPT_NONCE, options.identity.thumbprint)],
    });
    const claims = decodeJwt(token) as { exp?: unknown; submods?: { container?: { image_digest?: unknown } } };
    const digest = claims.submods?.container?.image_digest;
    const value = { token, imageDigest: typeof digest === 'string' ? digest : options.fallbackImageDigest };
    const exp = typeof claims.exp === 'number' ? claims.exp * 1000 : 0;
    cached = { value, refreshAt: exp - RECEIPT_ATTESTATION_MARGIN_MS };
    return value;
  };
  return async () => {
    if (cached && now() < cached.refreshAt) return cached.value;
    pending ??= fetchOne().finally(() => (pending = undefined));
    return pending;
  };
}
