import type { protos } from '@google-cloud/kms';
import { CleanroomError } from '../../protocol/errors.ts';
import { crc32c } from '../../runtime/crc32c.ts';
import type { KeyService } from './port.ts';

type EncryptRequest = protos.google.cloud.kms.v1.IEncryptRequest;
type EncryptResponse = protos.google.cloud.kms.v1.IEncryptResponse;
type DecryptRequest = protos.google.cloud.kms.v1.IDecryptRequest;
type DecryptResponse = protos.google.cloud.kms.v1.IDecryptResponse;

/** The two calls this adapter makes; `KeyManagementServiceClient` satisfies it, tests pass a fake. */
export interface KmsCryptoClient {
  encrypt(request: EncryptRequest, options?: { timeout?: number }): Promise<[EncryptResponse, ...unknown[]]>;
  decrypt(request: DecryptRequest, options?: { timeout?: number }): Promise<[DecryptResponse, ...unknown[]]>;
}

export interface KmsKeyServiceOptions {
  /**
   * `projects/P/locations/L/keyRings/R/cryptoKeys/K`, a symmetric `ENCRYPT_DECRYPT` key. Wraps use
   * its primary version; unwraps find the version from the ciphertext. Rotating the key each
   * epoch and destroying old versions is what bounds how long a closed session's key survives.
   */
  keyName: string;
  /**
   * Defaults to a `KeyManagementServiceClient` with application default credentials (in the
   * worker: workload identity federation with the attestation token), loaded on first use.
   */
  client?: KmsCryptoClient;
  /** Deadline of each KMS call (default 10 s). */
  timeoutMs?: number;
  /** Calls made when a checksum does not match before giving up (default 3). */
  maxAttempts?: number;
}

const KEY_NAME = /^projects\/[^/]+\/locations\/[^/]+\/keyRings\/[^/]+\/cryptoKeys\/[^/]+$/;
/** Cloud KMS's limit on plaintext and additional authenticated data. */
const MAX_INPUT_BYTES = 65536;
// gRPC status codes, as the SDK reports them on `error.code`.
const INVALID_ARGUMENT = 3;
const FAILED_PRECONDITION = 9;
/**
 * Worth retrying later. PERMISSION_DENIED and UNAUTHENTICATED are here because the worker's
 * access comes from its attestation token through workload identity federation: a token being
 * refreshed, or a policy being rolled out, refuses for a while and then works again.
 */
const TRANSIENT = new Set([4 /* DEADLINE_EXCEEDED */, 7 /* PERMISSION_DENIED */, 8 /* RESOURCE_EXHAUSTED */, 10 /* ABORTED */, 13 /* INTERNAL */, 14 /* UNAVAILABLE */, 16 /* UNAUTHENTICATED */]);
const RETRY_AFTER_SECONDS = 5;

/**
 * Wraps session keys with Cloud KMS symmetric encryption, the AAD binding each one to its session
 * and epoch. Requests carry CRC32C checksums of what they send and replies are checked against
 * what comes back (REFERENCE.md), so bytes damaged on the way are retried, never used. A
 * ciphertext that does not authenticate (wrong AAD, altered, destroyed version) is
 * `DATASET_KEY_UNWRAP`; an outage or a refusal to this identity is `KEY_SERVICE_UNAVAILABLE`.
 */
export class KmsKeyService implements KeyService {
  readonly #keyName: string;
  readonly #timeoutMs: number;
  readonly #maxAttempts: number;
  readonly #given: KmsCryptoClient | undefined;
  #client: Promise<KmsCryptoClient> | undefined;

  constructor(options: KmsKeyServiceOptions) {
    if (!KEY_NAME.test(options.keyName)) throw new TypeError('keyName must be projects/P/locations/L/keyRings/R/cryptoKeys/K');
    this.#keyName = options.keyName;
    this.#timeoutMs = options.timeoutMs ?? 10_000;
    this.#maxAttempts = options.maxAttempts ?? 3;
    if (!Number.isInteger(this.#maxAttempts) || this.#maxAttempts < 1) throw new TypeError('maxAttempts must be at least 1');
    this.#given = options.client;
  }

  async wrap(plaintext: Uint8Array, aad: Uint8Array): Promise<Uint8Array> {
    checkInput(plaintext, aad);
    const client = await this.#kms();
    const request: EncryptRequest = {
      name: this.#keyName,
      plaintext,
      plaintextCrc32c: { value: crc32c(plaintext) },
      additionalAuthenticatedData: aad,
      additionalAuthenticatedDataCrc32c: { value: crc32c(aad) },
    };
    for (let attempt = 1; attempt <= this.#maxAttempts; attempt++) {
      const [response] = await kmsCall('encrypt', () => client.encrypt(request, { timeout: this.#timeoutMs }));
      // Each failed check means bytes were damaged on the way, one direction or the other: ask again.
      if (response.verifiedPlaintextCrc32c !== true || response.verifiedAdditionalAuthenticatedDataCrc32c !== true) continue;
      if (!response.name?.startsWith(`${this.#keyName}/cryptoKeyVersions/`)) continue;
      const ciphertext = bytesOf(response.ciphertext);
      if (ciphertext === null || !crcMatches(ciphertext, response.ciphertextCrc32c)) continue;
      return ciphertext;
    }
    throw unavailable('the key service returned a corrupted ciphertext');
  }

  async unwrap(ciphertext: Uint8Array, aad: Uint8Array): Promise<Uint8Array> {
    checkInput(ciphertext, aad);
    if (ciphertext.byteLength === 0) throw new CleanroomError('DATASET_KEY_UNWRAP', 'the wrapped key does not unwrap');
    const client = await this.#kms();
    // KMS checks both checksums itself and refuses (INVALID_ARGUMENT) if either does not match.
    const request: DecryptRequest = {
      name: this.#keyName,
      ciphertext,
      ciphertextCrc32c: { value: crc32c(ciphertext) },
      additionalAuthenticatedData: aad,
      additionalAuthenticatedDataCrc32c: { value: crc32c(aad) },
    };
    for (let attempt = 1; attempt <= this.#maxAttempts; attempt++) {
      const [response] = await kmsCall('decrypt', () => client.decrypt(request, { timeout: this.#timeoutMs }));
      const plaintext = bytesOf(response.plaintext);
      if (plaintext === null || !crcMatches(plaintext, response.plaintextCrc32c)) continue;
      return plaintext;
    }
    throw unavailable('the key service returned a corrupted plaintext');
  }

  #kms(): Promise<KmsCryptoClient> {
    // Loaded on first use: the embedded stack and tests never pay for the gRPC stack.
    if (this.#client === undefined) {
      const client = this.#given ? Promise.resolve(this.#given) : defaultClient();
      // A failure to build one is not remembered: the next call tries again.
      client.catch(() => {
        if (this.#client === client) this.#client = undefined;
      });
      this.#client = client;
    }
    return this.#client;
  }
}

/**
 * A `KeyManagementServiceClient` on application default credentials. The credentials are
 * resolved here first: left to the SDK, missing credentials also surface as an unhandled
 * rejection inside it, which ends the process.
 */
async function defaultClient(): Promise<KmsCryptoClient> {
  const [{ KeyManagementServiceClient }, { GoogleAuth }] = await Promise.all([import('@google-cloud/kms'), import('google-auth-library')]);
  const auth = new GoogleAuth({ scopes: ['https://www.googleapis.com/auth/cloud-platform'] });
  try {
    await auth.getClient();
  } catch (error) {
    throw unavailable('no credentials for the key service', error);
  }
  return new KeyManagementServiceClient({ auth });
}

/** Maps a KMS failure to the key service's codes. */
export function translateKmsError(operation: 'encrypt' | 'decrypt', error: unknown): CleanroomError {
  if (error instanceof CleanroomError) return error;
  const code = typeof error === 'object' && error !== null && 'code' in error ? error.code : undefined;
  if (typeof code === 'number' && TRANSIENT.has(code)) return unavailable('the key service is unavailable', error);
  // On decrypt these mean the ciphertext does not authenticate under this AAD, or its version is gone.
  if (operation === 'decrypt' && (code === INVALID_ARGUMENT || code === FAILED_PRECONDITION)) {
    return new CleanroomError('DATASET_KEY_UNWRAP', 'the wrapped key does not unwrap', { cause: error });
  }
  return new CleanroomError('INTERNAL', `the key service refused to ${operation}`, { cause: error });
}

async function kmsCall<T>(operation: 'encrypt' | 'decrypt', body: () => Promise<T>): Promise<T> {
  try {
    return await body();
  } catch (error) {
    throw translateKmsError(operation, error);
  }
}

function bytesOf(value: Uint8Array | string | null | undefined): Uint8Array | null {
  if (value instanceof Uint8Array) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  return null;
}

function crcMatches(bytes: Uint8Array, reported: { value?: unknown } | null | undefined): boolean {
  const value = reported?.value;
  // Int64Value arrives as a number, a decimal string or a Long, depending on the transport.
  return value !== null && value !== undefined && Number((value as { toString(): string }).toString()) === crc32c(bytes);
}

function checkInput(data: Uint8Array, aad: Uint8Array): void {
  if (!(data instanceof Uint8Array) || !(aad instanceof Uint8Array)) throw new TypeError('data and aad must be bytes');
  if (data.byteLength > MAX_INPUT_BYTES || aad.byteLength > MAX_INPUT_BYTES) throw new TypeError(`data and aad are limited to ${MAX_INPUT_BYTES} bytes`);
}

function unavailable(message: string, cause?: unknown): CleanroomError {
  return new CleanroomError('KEY_SERVICE_UNAVAILABLE', message, { cause, retryAfter: RETRY_AFTER_SECONDS });
}
