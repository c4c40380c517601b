import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { calculateJwkThumbprint, createLocalJWKSet, exportJWK, generateKeyPair } from 'jose';
import { CleanroomError } from '../../protocol/errors.ts';
import { jwkThumbprint, keyBindingNonce } from '../../protocol/key-binding.ts';
import type { TaskSigner } from '../../protocol/task.ts';
import { LocalObjectStore } from '../../runtime/object-store/local.ts';
import { LocalUploadSigner, generateUploadSecret } from '../../runtime/object-store/local-upload.ts';
import { DEV_AUDIENCE, DEV_ISSUER, DevIdentityProvider } from '../../functions/adapters/identity/dev-idp.ts';
import { JwksIdentityVerifier } from '../../functions/adapters/identity/jwks-verifier.ts';
import { SqliteSessionStore } from '../../functions/adapters/store/sqlite.ts';
import { DataPathService } from '../../functions/core/datapath-service.ts';
import type { ObjectStore, QueuedTask, TaskQueue, WorkerClient } from '../../functions/core/ports.ts';
import { QueryService } from '../../functions/core/query-service.ts';
import { SessionService } from '../../functions/core/session-service.ts';
import { createApi } from '../../functions/http/app.ts';
import type { Logger } from '../../functions/http/logger.ts';
import type { TestParticipantKeys } from './participant-keys.ts';
import { routesFor } from '../../functions/routes.ts';

/** A logger that keeps its lines, so tests can check what reaches the log (and what must not). */
export function memoryLogger(): Logger & { lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const push =
    (severity: string) =>
    (message: string, fields: Record<string, unknown> = {}) =>
      lines.push({ severity, message, ...fields });
  return { lines, info: push('INFO'), warn: push('WARNING'), error: push('ERROR') };
}

/** The worker identity the test API's `worker` routes accept. */
export const TEST_WORKER_EMAIL = 'worker@cleanroom.test';

/**
 * A `TaskQueue` fake that records every call and de-duplicates by name, as the real queues do.
 * `failNext(n)` makes the next n calls fail with QUEUE_UNAVAILABLE (an outage).
 */
export interface RecordingQueue extends TaskQueue {
  /** Every call, failed and duplicate ones included. */
  calls: QueuedTask[];
  /** Tasks accepted under a new name. */
  enqueued: QueuedTask[];
  failNext(count?: number): void;
}

export function recordingQueue(): RecordingQueue {
  const calls: QueuedTask[] = [];
  const enqueued: QueuedTask[] = [];
  let failures = 0;
  return {
    calls,
    enqueued,
    failNext(count = 1) {
      failures = count;
    },
    async enqueue(task) {
      calls.push(task);
      if (failures > 0) {
        failures--;
        throw new CleanroomError('QUEUE_UNAVAILABLE', 'the queue is down', { retryAfter: 1 });
      }
      if (enqueued.some((t) => t.name === task.name)) return 'duplicate';
      enqueued.push(task);
      return 'enqueued';
    },
  };
}

/** A real ES256 task signer with a key made now, and its public key to verify tasks with. */
export async function testTaskSigner(): Promise<TaskSigner & { publicKey: CryptoKey }> {
  const { privateKey, publicKey } = (await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify'])) as CryptoKeyPair;
  const { kty, crv, x, y } = await crypto.subtle.exportKey('jwk', publicKey);
  const kid = await calculateJwkThumbprint({ kty: kty!, crv: crv!, x: x!, y: y! });
  return {
    kid,
    publicKey,
    // WebCrypto's ECDSA output is the fixed-width r||s that JWS wants.
    sign: async (input) => new Uint8Array(await crypto.subtle.sign({ name: 'ECDSA', hash: 'SHA-256' }, privateKey, input as Uint8Array<ArrayBuffer>)),
  };
}

/**
 * A `WorkerClient` fake: answers with `answer` (a function of the signed request), which tests set;
 * records each request's JWS. By default it refuses with WORKER_UNAVAILABLE.
 */
export interface FakeWorker extends WorkerClient {
  requests: string[];
  answer: (jws: string) => Promise<string>;
}

export function fakeWorker(): FakeWorker {
  const worker: FakeWorker = {
    requests: [],
    answer: async () => {
      throw new CleanroomError('WORKER_UNAVAILABLE', 'no worker in this test', { retryAfter: 5 });
    },
    async sessionKey(jws) {
      worker.requests.push(jws);
      return worker.answer(jws);
    },
  };
  return worker;
}

/**
 * The object store with a switch: while `down` is true, `deletePrefix` fails with
 * OBJECT_STORE_UNAVAILABLE (an outage, for the shredding paths).
 */
function flaky(store: LocalObjectStore): LocalObjectStore & { down: boolean } {
  let down = false;
  return new Proxy(store, {
    get(target, property) {
      if (property === 'down') return down;
      const value = Reflect.get(target, property, target);
      if (property === 'deletePrefix') {
        return async (prefix: string) => {
          if (down) throw new CleanroomError('OBJECT_STORE_UNAVAILABLE', 'the object store is down', { retryAfter: 1 });
          return target.deletePrefix(prefix);
        };
      }
      return typeof value === 'function' ? value.bind(target) : value;
    },
    set(_target, property, value) {
      if (property !== 'down') return false;
      down = Boolean(value);
      return true;
    },
  }) as LocalObjectStore & { down: boolean };
}

export interface TestApi {
  call(
    method: string,
    path: string,
    options?: { as?: string; token?: string; body?: unknown; raw?: string; headers?: Record<string, string> },
  ): Promise<{ status: number; body: any; headers: Headers }>;
  /** Any request to the in-process API by full URL (e.g. a signed upload URL it handed out). */
  request(url: string, init?: RequestInit): Promise<Response>;
  token(email: string, options?: { nonce?: string; ttlSeconds?: number }): Promise<string>;
  /**
   * Registers `email`'s keys in session `sessionId` through the API (a binding token from the dev
   * identity provider); one key set per email and API, made on first use. Throws unless 200.
   */
  registerKeys(sessionId: string, email: string): Promise<TestParticipantKeys>;
  /** The data path behind the dataset, session key and result routes. */
  datapath: DataPathService;
  /** The object store (a directory under the test's temp dir); `objects.down = true` fails deletes. */
  objects: LocalObjectStore & { down: boolean };
  objectsDir: string;
  worker: FakeWorker;
  devIdp: DevIdentityProvider;
  store: SqliteSessionStore;
  log: ReturnType<typeof memoryLogger>;
  clock: { now(): Date; advance(ms: number): void };
  /** The query service behind the routes, with a recording queue and a real signer. */
  queries: QueryService;
  queue: RecordingQueue;
  signer: TaskSigner & { publicKey: CryptoKey };
  sessions: SessionService;
  close(): void;
}

/**
 * The control plane in-process: the real route table, service, SQLite store and token
 * verification, with the dev identity provider's JWKS handed over directly instead of fetched.
 */
export async function testApi(options: { maxDatasetBytes?: number } = {}): Promise<TestApi> {
  const dir = mkdtempSync(join(tmpdir(), 'cleanroom-api-'));
  let offset = 0;
  const clock = { now: () => new Date(Date.now() + offset), advance: (ms: number) => void (offset += ms) };
  const devIdp = await DevIdentityProvider.load(dir, () => clock.now());
  const store = SqliteSessionStore.open(join(dir, 'cleanroom.sqlite'));
  const log = memoryLogger();
  const identity = new JwksIdentityVerifier({
    issuer: DEV_ISSUER,
    audience: DEV_AUDIENCE,
    jwksUrl: new URL('http://unused.invalid/'),
    keys: createLocalJWKSet(devIdp.jwks() as Parameters<typeof createLocalJWKSet>[0]),
    currentDate: () => clock.now(),
  });
  const sessions = new SessionService({ store, clock, newId: () => crypto.randomUUID() });
  const queue = recordingQueue();
  const signer = await testTaskSigner();
  const queries = new QueryService({
    store,
    clock,
    queue,
    signer,
    newId: () => crypto.randomUUID(),
    onDispatchFailure: (failure) => log.warn('task dispatch failed', failure),
  });
  const objectsDir = join(dir, 'objects');
  const objects = flaky(new LocalObjectStore(objectsDir));
  const secret = generateUploadSecret();
  const now = () => clock.now();
  const worker = fakeWorker();
  const datapath = new DataPathService({
    store,
    objects: objects as ObjectStore,
    uploads: new LocalUploadSigner({ baseUrl: 'http://localhost', secret, now }),
    worker,
    signer,
    clock,
    newId: () => crypto.randomUUID(),
    ...(options.maxDatasetBytes !== undefined ? { maxDatasetBytes: options.maxDatasetBytes } : {}),
  });
  const api = createApi(routesFor('local'), {
    sessions,
    queries,
    datapath,
    localUploads: { store: objects, secret, now },
    identity,
    log,
    devIdp,
    workerEmail: TEST_WORKER_EMAIL,
  });
  const token = async (email: string, options: { nonce?: string; ttlSeconds?: number } = {}) => (await devIdp.issue(email, options)).token;
  const keySets = new Map<string, Promise<TestParticipantKeys>>();
  const keysOf = (email: string) => {
    let keys = keySets.get(email);
    if (!keys) {
      keys = (async (): Promise<TestParticipantKeys> => {
        const signing = await generateKeyPair('ES256', { extractable: true });
        const encryption = await generateKeyPair('ECDH-ES+A256KW', { crv: 'P-256', extractable: true });
        const point = async (key: CryptoKey) => {
          const { x, y } = await exportJWK(key);
          return { kty: 'EC' as const, crv: 'P-256' as const, x: x!, y: y! };
        };
        return {
          email,
          signingPrivateKey: signing.privateKey,
          encryptionPrivateKey: encryption.privateKey,
          signingJwk: { ...(await point(signing.publicKey)), alg: 'ES256', use: 'sig' },
          encryptionJwk: { ...(await point(encryption.publicKey)), alg: 'ECDH-ES+A256KW', use: 'enc' },
        };
      })();
      keySets.set(email, keys);
    }
    return keys;
  };
  const request = (url: string, init?: RequestInit) => api(new Request(url, init));
  return {
    request,
    datapath,
    objects,
    objectsDir,
    worker,
    async registerKeys(sessionId, email) {
      const keys = await keysOf(email);
      const nonce = await keyBindingNonce(await jwkThumbprint(keys.signingJwk), await jwkThumbprint(keys.encryptionJwk));
      const body = { signing_jwk: keys.signingJwk, encryption_jwk: keys.encryptionJwk, binding_token: await token(email, { nonce }) };
      const res = await api(
        new Request(`http://localhost/api/tee/sessions/${encodeURIComponent(sessionId)}/participants/me/keys`, {
          method: 'PUT',
          headers: { authorization: `Bearer ${await token(email)}`, 'content-type': 'application/json' },
          body: JSON.stringify(body),
        }),
      );
      if (res.status !== 200) throw new Error(`registering ${email}'s keys: ${res.status} ${await res.text()}`);
      return keys;
    },
    devIdp,
    store,
    log,
    clock,
    queries,
    queue,
    signer,
    sessions,
    token,
    async call(method, path, options = {}) {
      const headers: Record<string, string> = { ...options.headers };
      const bearer = options.token ?? (options.as ? await token(options.as) : undefined);
      if (bearer !== undefined) headers.authorization = `Bearer ${bearer}`;
      let body: string | undefined;
      if (options.raw !== undefined) body = options.raw;
      else if (options.body !== undefined) {
        body = JSON.stringify(options.body);
        headers['content-type'] ??= 'application/json';
      }
      const res = await api(new Request(`http://localhost${path}`, { method, headers, ...(body !== undefined ? { body } : {}) }));
      const text = await res.text();
      let parsed: unknown = text;
      try {
        parsed = JSON.parse(text);
      } catch {}
      return { status: res.status, body: parsed, headers: res.headers };
    },
    close() {
      store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
