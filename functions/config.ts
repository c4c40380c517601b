import * as v from 'valibot';
import { resolve } from 'node:path';
import { DATASET_LIMITS } from '../protocol/dataset.ts';

const Port = v.pipe(v.string(), v.regex(/^\d{1,5}$/, 'must be a port number'), v.transform(Number), v.maxValue(65535));
const ByteCount = v.pipe(v.string(), v.regex(/^[1-9]\d{0,15}$/, 'must be a positive number of bytes'), v.transform(Number), v.maxValue(Number.MAX_SAFE_INTEGER, 'is too large'));

const EnvSchema = v.object({
  CLEANROOM_MODE: v.optional(v.picklist(['local', 'gcp'], 'CLEANROOM_MODE must be local or gcp'), 'local'),
  CLEANROOM_API_PORT: v.optional(Port, '3000'),
  /** Loopback by default: the embedded stack is for one machine. */
  CLEANROOM_API_HOST: v.optional(v.pipe(v.string(), v.minLength(1)), '127.0.0.1'),
  CLEANROOM_DATA_DIR: v.optional(v.pipe(v.string(), v.minLength(1)), '.cleanroom-data'),
  /** Comma-separated OAuth client ids accepted as ID-token audiences (gcp mode). */
  ID_TOKEN_AUDIENCES: v.optional(v.string(), ''),
  GOOGLE_CLOUD_PROJECT: v.optional(v.string()),
  FIRESTORE_DATABASE: v.optional(v.string(), '(default)'),
  TEE_SERVICE_ENDPOINT: v.optional(v.pipe(v.string(), v.url('TEE_SERVICE_ENDPOINT must be a URL')), 'http://localhost:8080'),
  /** gcp: the worker's service account, the only caller of the internal target. */
  WORKER_SERVICE_ACCOUNT: v.optional(v.string(), ''),
  /** gcp: `projects/P/locations/L/keyRings/R/cryptoKeys/K/cryptoKeyVersions/N` (EC_SIGN_P256_SHA256). */
  TASK_SIGNING_KEY_VERSION: v.optional(v.string(), ''),
  /** gcp: `projects/P/locations/L/queues/Q`. */
  TASK_QUEUE: v.optional(v.string(), ''),
  /** gcp: the control plane's service account, named in each task's OIDC token. */
  TASK_SERVICE_ACCOUNT: v.optional(v.string(), ''),
  /** Cap on one dataset's ciphertext, in bytes (both modes). */
  CLEANROOM_MAX_DATASET_BYTES: v.optional(ByteCount, String(DATASET_LIMITS.defaultMaxCiphertextBytes)),
  /**
   * gcp: the Cloud Storage bucket of dataset ciphertext, wrapped session keys and sealed results.
   * It must not keep versions or soft-deleted copies, or closing a session shreds nothing.
   */
  OBJECT_STORE_BUCKET: v.optional(v.string(), ''),
});

export type ControlPlaneConfig =
  | { mode: 'local'; apiPort: number; apiHost: string; dataDir: string; teeServiceEndpoint: string; maxDatasetBytes: number }
  | {
      mode: 'gcp';
      audiences: string[];
      projectId: string | undefined;
      firestoreDatabase: string;
      /** The worker's load balancer: tasks go to `/tasks`, session key requests to `/session-keys`. */
      teeServiceEndpoint: string;
      workerServiceAccount: string;
      taskSigningKeyVersion: string;
      taskQueue: string;
      taskServiceAccount: string;
      objectStoreBucket: string;
      maxDatasetBytes: number;
    };

/**
 * The control plane's one reader of the environment. Fails fast, before serving, with a message
 * naming the variable.
 */
export function loadConfig(env: Record<string, string | undefined>): ControlPlaneConfig {
  const result = v.safeParse(EnvSchema, env);
  if (!result.success) {
    const issue = result.issues[0]!;
    throw new Error(`invalid configuration: ${issue.path?.map((p) => String(p.key)).join('.') ?? ''}: ${issue.message}`);
  }
  const e = result.output;
  if (e.CLEANROOM_MODE === 'local') {
    return {
      mode: 'local',
      apiPort: e.CLEANROOM_API_PORT,
      apiHost: e.CLEANROOM_API_HOST,
      dataDir: resolve(e.CLEANROOM_DATA_DIR),
      teeServiceEndpoint: e.TEE_SERVICE_ENDPOINT,
      maxDatasetBytes: e.CLEANROOM_MAX_DATASET_BYTES,
    };
  }
  const audiences = e.ID_TOKEN_AUDIENCES.split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (audiences.length === 0) throw new Error('invalid configuration: ID_TOKEN_AUDIENCES is required in gcp mode');
  for (const name of ['WORKER_SERVICE_ACCOUNT', 'TASK_SIGNING_KEY_VERSION', 'TASK_QUEUE', 'TASK_SERVICE_ACCOUNT', 'OBJECT_STORE_BUCKET'] as const) {
    if (!e[name]) throw new Error(`invalid configuration: ${name} is required in gcp mode`);
  }
  return {
    mode: 'gcp',
    audiences,
    projectId: e.GOOGLE_CLOUD_PROJECT,
    firestoreDatabase: e.FIRESTORE_DATABASE,
    teeServiceEndpoint: e.TEE_SERVICE_ENDPOINT,
    workerServiceAccount: e.WORKER_SERVICE_ACCOUNT.toLowerCase(),
    taskSigningKeyVersion: e.TASK_SIGNING_KEY_VERSION,
    taskQueue: e.TASK_QUEUE,
    taskServiceAccount: e.TASK_SERVICE_ACCOUNT,
    objectStoreBucket: e.OBJECT_STORE_BUCKET,
    maxDatasetBytes: e.CLEANROOM_MAX_DATASET_BYTES,
  };
}
