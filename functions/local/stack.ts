import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { DEV_AUDIENCE, DEV_ISSUER, DevIdentityProvider } from '../adapters/identity/dev-idp.ts';
import { JwksIdentityVerifier } from '../adapters/identity/jwks-verifier.ts';
import { LocalTaskQueue } from '../adapters/queue/local.ts';
import { LocalKeySigner } from '../adapters/signer/local-key.ts';
import { SqliteSessionStore } from '../adapters/store/sqlite.ts';
import { HttpWorkerClient } from '../adapters/worker/http-client.ts';
import { DataPathService } from '../core/datapath-service.ts';
import type { Clock } from '../core/ports.ts';
import { QueryService } from '../core/query-service.ts';
import { reconcileAll } from '../core/reconcile-all.ts';
import { SessionService } from '../core/session-service.ts';
import { createApi } from '../http/app.ts';
import { silentLogger, type Logger } from '../http/logger.ts';
import { toNodeListener } from '../../runtime/node-http.ts';
import { LocalObjectStore } from '../../runtime/object-store/local.ts';
import { LocalUploadSigner } from '../../runtime/object-store/local-upload.ts';
import { routesFor } from '../routes.ts';
import { loadUploadSecret } from './upload-secret.ts';

export interface LocalStackOptions {
  /** Everything durable lives here: the SQLite file and the dev identity provider's key. */
  dataDir: string;
  /** 0 picks a free port (tests). */
  apiPort: number;
  apiHost?: string;
  log?: Logger;
  clock?: Clock;
  /** The worker (`TEE_SERVICE_ENDPOINT`); tasks are pushed to `${workerUrl}/tasks`. Without it, tasks wait in the queue. */
  workerUrl?: string;
  /** How often the reconciler runs (docs/architecture.md §9: each minute in GCP). */
  reconcileEveryMs?: number;
  /** Cap on one dataset's ciphertext in bytes (`CLEANROOM_MAX_DATASET_BYTES`); default `DATASET_LIMITS.defaultMaxCiphertextBytes`. */
  maxDatasetBytes?: number;
}

export interface LocalStack {
  apiUrl: string;
  devIdp: DevIdentityProvider;
  store: SqliteSessionStore;
  queries: QueryService;
  datapath: DataPathService;
  queue: LocalTaskQueue;
  /** The object store's directory (`<dataDir>/objects`, the worker's default `CLEANROOM_OBJECTS_DIR`). */
  objectsDir: string;
  close(): Promise<void>;
}

/** The database file inside the data directory. */
export const DB_FILE = 'cleanroom.sqlite';
/** The control plane's task-signing key (private, 0600) and the public JWKS the worker pins. */
export const TASK_KEY_FILE = 'task-signing-key.json';
export const TASK_PUBLIC_KEYS_FILE = 'task-signing-public.json';
/** Identities of the two services in the embedded stack (service accounts in GCP). */
export const CONTROL_PLANE_EMAIL = 'control-plane@cleanroom.local';
export const WORKER_EMAIL = 'worker@cleanroom.local';
/** The object store's directory inside the data directory; the worker reads and writes the same one. */
export const OBJECTS_DIR = 'objects';
/** The key of local upload URLs' HMAC (private, 0600). */
export const UPLOAD_SECRET_FILE = 'upload-url-secret';

/**
 * The embedded stack's composition root: SQLite store, dev identity provider, object store
 * directory with signed local upload URLs, the API on node:http. The API verifies dev tokens
 * through the same JWKS path as any OIDC issuer.
 */
export async function startLocalStack(options: LocalStackOptions): Promise<LocalStack> {
  mkdirSync(options.dataDir, { recursive: true, mode: 0o700 });
  const log = options.log ?? silentLogger;
  const clock = options.clock ?? { now: () => new Date() };
  const store = SqliteSessionStore.open(join(options.dataDir, DB_FILE));
  const devIdp = await DevIdentityProvider.load(options.dataDir, () => clock.now());

  // The verifier needs the server's port, so the server starts first and gets its handler after.
  let handle: (request: Request) => Promise<Response> = async () => new Response('starting', { status: 503 });
  const server = createServer(toNodeListener((request) => handle(request)));
  server.keepAliveTimeout = 5000;
  await listen(server, options.apiPort, options.apiHost ?? '127.0.0.1');
  const { port } = server.address() as AddressInfo;
  const apiUrl = `http://${options.apiHost === '0.0.0.0' ? '127.0.0.1' : (options.apiHost ?? '127.0.0.1')}:${port}`;

  const identity = new JwksIdentityVerifier({
    issuer: DEV_ISSUER,
    audience: DEV_AUDIENCE,
    jwksUrl: new URL('/dev-idp/jwks.json', apiUrl),
  });
  const signer = await LocalKeySigner.load(join(options.dataDir, TASK_KEY_FILE));
  publishTaskKeys(join(options.dataDir, TASK_PUBLIC_KEYS_FILE), signer);
  // The control plane's identity towards the worker, for task pushes and session key requests alike.
  const controlPlaneToken = async () => (await devIdp.issue(CONTROL_PLANE_EMAIL, { ttlSeconds: 600 })).token;
  const workerUrl = options.workerUrl ?? 'http://127.0.0.1:8080';
  const queue = new LocalTaskQueue({
    database: store.database,
    url: new URL('/tasks', workerUrl).toString(),
    queueName: 'cleanroom-local',
    tokenSource: controlPlaneToken,
    clock,
    log,
  });
  const sessions = new SessionService({ store, clock, newId: () => crypto.randomUUID() });
  const queries = new QueryService({
    store,
    clock,
    queue,
    signer,
    newId: () => crypto.randomUUID(),
    onDispatchFailure: (failure) => log.warn('task dispatch failed', { ...failure }),
  });
  const objectsDir = join(options.dataDir, OBJECTS_DIR);
  const objects = new LocalObjectStore(objectsDir);
  const uploadSecret = loadUploadSecret(join(options.dataDir, UPLOAD_SECRET_FILE));
  const now = () => clock.now();
  const datapath = new DataPathService({
    store,
    objects,
    uploads: new LocalUploadSigner({ baseUrl: apiUrl, secret: uploadSecret, now }),
    worker: new HttpWorkerClient({ url: workerUrl, tokenSource: controlPlaneToken }),
    signer,
    clock,
    newId: () => crypto.randomUUID(),
    ...(options.maxDatasetBytes !== undefined ? { maxDatasetBytes: options.maxDatasetBytes } : {}),
  });
  handle = createApi(routesFor('local'), {
    sessions,
    queries,
    datapath,
    localUploads: { store: objects, secret: uploadSecret, now },
    identity,
    log,
    devIdp,
    workerEmail: WORKER_EMAIL,
  });
  if (options.workerUrl) queue.start();
  const reconcile = () => reconcileAll(queries, datapath).catch((error: unknown) => log.error('reconcile failed', { error: String(error) }));
  const reconciler = setInterval(() => void reconcile(), options.reconcileEveryMs ?? 60_000);
  reconciler.unref();

  return {
    apiUrl,
    devIdp,
    store,
    queries,
    datapath,
    queue,
    objectsDir,
    close: async () => {
      clearInterval(reconciler);
      await queue.stop({ graceMs: 2000 });
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      store.close();
    },
  };
}

/** Writes the public half of the task-signing key where the worker reads it (atomically). */
function publishTaskKeys(path: string, signer: LocalKeySigner): void {
  const temp = `${path}.${process.pid}.tmp`;
  writeFileSync(temp, JSON.stringify({ keys: [signer.publicJwk()] }, null, 2));
  renameSync(temp, path);
}

function listen(server: Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}
