import { createHash, createPublicKey } from 'node:crypto';
import { KeyManagementServiceClient, type protos } from '@google-cloud/kms';
import type { JWK } from 'jose';
import { CleanroomError } from '../../../protocol/errors.ts';
import { jwkThumbprint } from '../../../protocol/key-binding.ts';
import type { TaskSigner } from '../../../protocol/task.ts';
import { crc32c } from '../../../runtime/crc32c.ts';
import { derToJoseSignature } from './der.ts';

type SignRequest = protos.google.cloud.kms.v1.IAsymmetricSignRequest;
type SignResponse = protos.google.cloud.kms.v1.IAsymmetricSignResponse;
type PublicKey = protos.google.cloud.kms.v1.IPublicKey;

/** The two calls this adapter makes; `KeyManagementServiceClient` satisfies it, tests pass a fake. */
export interface KmsSigningClient {
  asymmetricSign(request: SignRequest, options?: { timeout?: number }): Promise<[SignResponse, ...unknown[]]>;
  getPublicKey(request: { name: string }, options?: { timeout?: number }): Promise<[PublicKey, ...unknown[]]>;
}

/** The KMS key version that signs tasks, and how patiently to call it. */
export interface KmsSignerOptions {
  /** `projects/P/locations/L/keyRings/R/cryptoKeys/K/cryptoKeyVersions/V` (an `EC_SIGN_P256_SHA256` key). */
  keyVersionName: string;
  /** Defaults to a `KeyManagementServiceClient` with application default credentials. */
  client?: KmsSigningClient;
  /** Deadline of each KMS call (default 10 s). */
  timeoutMs?: number;
  /** Calls made when a checksum does not match before giving up (default 3). */
  maxAttempts?: number;
}

// gRPC status codes, as the SDK reports them on `error.code`.
const TRANSIENT = new Set([4 /* DEADLINE_EXCEEDED */, 8 /* RESOURCE_EXHAUSTED */, 14 /* UNAVAILABLE */]);
const RETRY_AFTER_SECONDS = 5;

/**
 * Signs tasks with a Cloud KMS asymmetric key: the private key never leaves KMS. Requests carry
 * the digest's CRC32C and replies are checked both ways (REFERENCE.md), so a corrupted digest or
 * signature is retried, never used. KMS answers DER; JWS wants r||s.
 */
export class KmsSigner implements TaskSigner {
  readonly kid: string;
  readonly #publicJwk: JWK;
  readonly #options: Required<KmsSignerOptions>;

  private constructor(kid: string, publicJwk: JWK, options: Required<KmsSignerOptions>) {
    this.kid = kid;
    this.#publicJwk = publicJwk;
    this.#options = options;
  }

  /** Fetches the public key (checksum verified) to derive `kid`, the key's JWK thumbprint. */
  static async create(options: KmsSignerOptions): Promise<KmsSigner> {
    const resolved = { timeoutMs: 10_000, maxAttempts: 3, ...options, client: options.client ?? (await defaultClient()) };
    const [key] = await kmsCall(() => resolved.client.getPublicKey({ name: resolved.keyVersionName }, { timeout: resolved.timeoutMs }));
    const pem = key.pem ?? '';
    if (key.pemCrc32c?.value != null && crc32c(new TextEncoder().encode(pem)) !== Number(key.pemCrc32c.value)) {
      throw unavailable('the signing key came back corrupted');
    }
    const { kty, crv, x, y } = createPublicKey(pem).export({ format: 'jwk' });
    if (kty !== 'EC' || crv !== 'P-256') throw new TypeError(`${resolved.keyVersionName} is not a P-256 signing key`);
    const publicFields: JWK = { kty, crv, x, y };
    const kid = await jwkThumbprint(publicFields);
    return new KmsSigner(kid, { ...publicFields, kid, alg: 'ES256', use: 'sig' }, resolved);
  }

  /** The public key as the worker's key list holds it. */
  publicJwk(): JWK {
    return { ...this.#publicJwk };
  }

  async sign(signingInput: Uint8Array): Promise<Uint8Array> {
    const { client, keyVersionName, timeoutMs, maxAttempts } = this.#options;
    const digest = createHash('sha256').update(signingInput).digest();
    const request: SignRequest = { name: keyVersionName, digest: { sha256: digest }, digestCrc32c: { value: crc32c(digest) } };
    for (let attempt = 1; attempt <= maxAttempts; attempt++) {
      const [response] = await kmsCall(() => client.asymmetricSign(request, { timeout: timeoutMs }));
      const signature = response.signature instanceof Uint8Array ? response.signature : null;
      // Either check failing means the bytes were damaged on the way: ask again.
      if (response.verifiedDigestCrc32c !== true || response.name !== keyVersionName) continue;
      if (signature === null || crc32c(signature) !== Number(response.signatureCrc32c?.value)) continue;
      return derToJoseSignature(signature);
    }
    throw unavailable('the key service returned a corrupted signature');
  }
}

/** Runs one SDK call, translating its failures: outages are retryable, the rest is a bug in config. */
/**
 * A `KeyManagementServiceClient` on application default credentials, resolved here first: left
 * to the SDK, missing credentials surface as an unhandled rejection inside it, which ends the
 * process (the worker's `KmsKeyService` does the same).
 */
async function defaultClient(): Promise<KmsSigningClient> {
  const { GoogleAuth } = await import('google-auth-library');
  const auth = new GoogleAuth({ scopes: ['https://www.googleapis.com/auth/cloud-platform'] });
  try {
    await auth.getClient();
  } catch (error) {
    throw unavailable('no credentials for the key service', error);
  }
  return new KeyManagementServiceClient({ auth }) as unknown as KmsSigningClient;
}

async function kmsCall<T>(body: () => Promise<T>): Promise<T> {
  try {
    return await body();
  } catch (error) {
    const code = typeof error === 'object' && error !== null && 'code' in error ? error.code : undefined;
    if (typeof code === 'number' && TRANSIENT.has(code)) throw unavailable('the key service is unavailable', error);
    throw new CleanroomError('INTERNAL', 'the key service refused to sign', { cause: error });
  }
}

// There is no key-service code: signing only ever happens to enqueue a task, so an outage
// surfaces as the queue's (503 with Retry-After, docs/architecture.md §9).
function unavailable(message: string, cause?: unknown): CleanroomError {
  return new CleanroomError('QUEUE_UNAVAILABLE', message, { cause, retryAfter: RETRY_AFTER_SECONDS });
}
