import * as v from 'valibot';
import { join, resolve } from 'node:path';

const Port = v.pipe(v.string(), v.regex(/^\d{1,5}$/, 'must be a port number'), v.transform(Number), v.maxValue(65535));
const PositiveInt = v.pipe(v.string(), v.regex(/^\d{1,9}$/, 'must be a whole number'), v.transform(Number), v.minValue(1));
const Url = v.pipe(v.string(), v.url('must be a URL'));
const KMS_KEY = /^projects\/[^/]+\/locations\/[^/]+\/keyRings\/[^/]+\/cryptoKeys\/[^/]+$/;
const Digest = v.pipe(v.string(), v.regex(/^sha256:[0-9a-f]{64}$/, 'must be sha256:<64 hex>'));

const EnvSchema = v.object({
  TEE_INSTANCE_ID: v.optional(v.pipe(v.string(), v.minLength(1), v.maxLength(128)), 'local-worker'),
  WORKER_PORT: v.optional(Port, '8080'),
  /** Loopback by default: the embedded stack is for one machine. The deployment sets 0.0.0.0. */
  WORKER_HOST: v.optional(v.pipe(v.string(), v.minLength(1)), '127.0.0.1'),
  /** How clients reach this worker (`TEE_SERVICE_ENDPOINT`); names the dev attester's issuer. */
  TEE_SERVICE_ENDPOINT: v.optional(Url, 'http://localhost:8080'),
  /** The embedded stack's data directory; the worker's defaults below live inside it. */
  CLEANROOM_DATA_DIR: v.optional(v.pipe(v.string(), v.minLength(1)), '.cleanroom-data'),
  WORKER_DATA_DIR: v.optional(v.pipe(v.string(), v.minLength(1))),
  /** `insecure-dev` is the embedded stack's attester. WARNING: it proves nothing. */
  ATTESTATION_MODE: v.optional(v.picklist(['confidential-space', 'insecure-dev'], 'ATTESTATION_MODE must be confidential-space or insecure-dev'), 'insecure-dev'),
  /** The digest this worker runs as; Confidential Space reports its own, the dev attester claims this one. */
  WORKER_IMAGE_DIGEST: v.optional(Digest, `sha256:${'0'.repeat(56)}de7de7de`),
  ATTESTATION_AUDIENCE: v.optional(v.pipe(v.string(), v.minLength(1), v.maxLength(512)), 'cleanroom-clients'),
  /** Where the control plane's internal target is (worker events). */
  CONTROL_PLANE_URL: v.optional(Url, 'http://127.0.0.1:3000'),
  /** Who may push tasks: the control plane's (service-account) email in the caller's ID token. */
  TASK_CALLER_EMAIL: v.optional(v.pipe(v.string(), v.minLength(3)), 'control-plane@cleanroom.local'),
  /** Caller tokens: `google` (Cloud Tasks OIDC) or a JWKS URL of the local issuer. */
  TASK_CALLER_VERIFIER: v.optional(v.string(), 'http://127.0.0.1:3000/dev-idp/jwks.json'),
  TASK_CALLER_AUDIENCE: v.optional(v.pipe(v.string(), v.minLength(1)), 'cleanroom-local'),
  /** The control plane's task-signing public key(s): a JWKS file path. */
  TASK_KEYS_FILE: v.optional(v.pipe(v.string(), v.minLength(1))),
  /** The worker's own identity for its calls to the control plane. */
  WORKER_EMAIL: v.optional(v.pipe(v.string(), v.minLength(3)), 'worker@cleanroom.local'),
  EXECUTOR_SLOTS: v.optional(PositiveInt, '2'),
  QUERY_TIMEOUT_MS: v.optional(PositiveInt, '30000'),
  QUERY_MEMORY_MB: v.optional(PositiveInt, '512'),
  /** TEST-ONLY: a directory of plaintext CSV fixtures per session instead of the encrypted inputs. */
  WORKER_PLAINTEXT_FIXTURES_DIR: v.optional(v.string()),
  /** Cloud Storage bucket of ciphertext (datasets, wrapped session keys, sealed results). */
  OBJECT_STORE_BUCKET: v.optional(v.pipe(v.string(), v.regex(/^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$/, 'must be a Cloud Storage bucket name'))),
  /** The embedded stack's object store directory, shared with the control plane (default `<CLEANROOM_DATA_DIR>/objects`). */
  CLEANROOM_OBJECTS_DIR: v.optional(v.pipe(v.string(), v.minLength(1))),
  /** Cloud KMS key that wraps session keys: `projects/P/locations/L/keyRings/R/cryptoKeys/K`. */
  KMS_KEY_NAME: v.optional(v.pipe(v.string(), v.regex(KMS_KEY, 'must be projects/P/locations/L/keyRings/R/cryptoKeys/K'))),
  /** The embedded stack's key ring file (default `<worker data dir>/key-ring.json`). WARNING: a plain file; local only. */
  KEY_RING_FILE: v.optional(v.pipe(v.string(), v.minLength(1))),
  /**
   * Hours between session key rotations (default 24, at most 168): rewrap every live session key
   * under the key service's current version and, with the local key ring, destroy older versions.
   * It bounds how long a closed session's key survives in backups (`keys/rotation.ts`).
   * WARNING: 0 disables rotation, and with it that bound.
   */
  SESSION_KEY_ROTATION_HOURS: v.optional(v.pipe(v.string(), v.regex(/^\d{1,3}$/, 'must be a whole number of hours'), v.transform(Number), v.maxValue(168)), '24'),
});

/** Where ciphertext lives: a Cloud Storage bucket, or a directory in the embedded stack. */
export type ObjectStoreConfig = { kind: 'gcs'; bucket: string } | { kind: 'local'; dir: string };
/** What wraps session keys: Cloud KMS, or a key ring file in the embedded stack. */
export type KeyServiceConfig = { kind: 'cloud-kms'; keyName: string } | { kind: 'local-key-ring'; file: string };

export type WorkerConfig = ReturnType<typeof loadWorkerConfig>;

/**
 * The worker's one reader of the environment; fails fast, naming the variable. In
 * `confidential-space` mode ciphertext must live in a bucket and session keys be wrapped by Cloud
 * KMS: the local directory, key ring file and plaintext fixtures are refused there.
 */
export function loadWorkerConfig(env: Record<string, string | undefined>) {
  const result = v.safeParse(EnvSchema, env);
  if (!result.success) {
    const issue = result.issues[0]!;
    throw new Error(`invalid worker configuration: ${issue.path?.map((p) => String(p.key)).join('.') ?? ''}: ${issue.message}`);
  }
  const e = result.output;
  const fail = (message: string): never => {
    throw new Error(`invalid worker configuration: ${message}`);
  };
  if (e.OBJECT_STORE_BUCKET && e.CLEANROOM_OBJECTS_DIR) fail('set OBJECT_STORE_BUCKET or CLEANROOM_OBJECTS_DIR, not both');
  if (e.KMS_KEY_NAME && e.KEY_RING_FILE) fail('set KMS_KEY_NAME or KEY_RING_FILE, not both');
  if (e.ATTESTATION_MODE === 'confidential-space') {
    if (!e.OBJECT_STORE_BUCKET) fail('OBJECT_STORE_BUCKET is required in confidential-space mode');
    if (!e.KMS_KEY_NAME) fail('KMS_KEY_NAME is required in confidential-space mode');
    if (e.CLEANROOM_OBJECTS_DIR) fail('CLEANROOM_OBJECTS_DIR (a local directory) is refused in confidential-space mode');
    if (e.KEY_RING_FILE) fail('KEY_RING_FILE (a local key file) is refused in confidential-space mode');
    if (e.WORKER_PLAINTEXT_FIXTURES_DIR) fail('WORKER_PLAINTEXT_FIXTURES_DIR (TEST-ONLY plaintext) is refused in confidential-space mode');
  }
  const dataDir = resolve(e.WORKER_DATA_DIR ?? join(e.CLEANROOM_DATA_DIR, 'worker'));
  const objectStore: ObjectStoreConfig = e.OBJECT_STORE_BUCKET
    ? { kind: 'gcs', bucket: e.OBJECT_STORE_BUCKET }
    : { kind: 'local', dir: resolve(e.CLEANROOM_OBJECTS_DIR ?? join(e.CLEANROOM_DATA_DIR, 'objects')) };
  const keyService: KeyServiceConfig = e.KMS_KEY_NAME ? { kind: 'cloud-kms', keyName: e.KMS_KEY_NAME } : { kind: 'local-key-ring', file: resolve(e.KEY_RING_FILE ?? join(dataDir, 'key-ring.json')) };
  return {
    instanceId: e.TEE_INSTANCE_ID,
    port: e.WORKER_PORT,
    host: e.WORKER_HOST,
    publicUrl: e.TEE_SERVICE_ENDPOINT.replace(/\/$/, ''),
    dataDir,
    attestationMode: e.ATTESTATION_MODE,
    imageDigest: e.WORKER_IMAGE_DIGEST,
    attestationAudience: e.ATTESTATION_AUDIENCE,
    controlPlaneUrl: e.CONTROL_PLANE_URL.replace(/\/$/, ''),
    taskCallerEmail: e.TASK_CALLER_EMAIL.toLowerCase(),
    taskCallerVerifier: e.TASK_CALLER_VERIFIER,
    taskCallerAudience: e.TASK_CALLER_AUDIENCE,
    taskKeysFile: resolve(e.TASK_KEYS_FILE ?? join(e.CLEANROOM_DATA_DIR, 'task-signing-public.json')),
    workerEmail: e.WORKER_EMAIL.toLowerCase(),
    executorSlots: e.EXECUTOR_SLOTS,
    queryTimeoutMs: e.QUERY_TIMEOUT_MS,
    queryMemoryMb: e.QUERY_MEMORY_MB,
    plaintextFixturesDir: e.WORKER_PLAINTEXT_FIXTURES_DIR ? resolve(e.WORKER_PLAINTEXT_FIXTURES_DIR) : undefined,
    objectStore,
    keyService,
    /** Milliseconds between session key rotations; 0 when disabled. */
    sessionKeyRotationMs: e.SESSION_KEY_ROTATION_HOURS * 3600 * 1000,
  };
}
