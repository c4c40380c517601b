import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { calculateJwkThumbprint, createLocalJWKSet } from 'jose';
import { CleanroomError } from '../../protocol/errors.ts';
import type { TaskSigner } from '../../protocol/task.ts';
import { DEV_AUDIENCE, DEV_ISSUER, DevIdentityProvider } from '../../functions/adapters/identity/dev-idp.ts';
import { JwksIdentityVerifier } from '../../functions/adapters/identity/jwks-verifier.ts';
import { SqliteSessionStore } from '../../functions/adapters/store/sqlite.ts';
import type { QueuedTask, TaskQueue } from '../../functions/core/ports.ts';
import { QueryService } from '../../functions/core/query-service.ts';
import { SessionService } from '../../functions/core/session-service.ts';
import { createApi } from '../../functions/http/app.ts';
import type { Logger } from '../../functions/http/logger.ts';
import { routesFor } from '../../functions/routes.ts';

/** A logger that keeps its lines, so tests can check what reaches the log (and what must not). */
export function memoryLogger(): Logger & { lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const push = (severity: string) => (message: string, fields: Record<string, unknown> = {}) =>
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

export interface TestApi {
  call(method: string, path: string, options?: { as?: string; token?: string; body?: unknown; raw?: string; headers?: Record<string, string> }): Promise<{ status: number; body: any; headers: Headers }>;
  token(email: string, options?: { nonce?: string; ttlSeconds?: number }): Promise<string>;
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
export async function testApi(): Promise<TestApi> {
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
  const api = createApi(routesFor('local'), { sessions, queries, identity, log, devIdp, workerEmail: TEST_WORKER_EMAIL });
  const token = async (email: string, options: { nonce?: string; ttlSeconds?: number } = {}) =>
    (await devIdp.issue(email, options)).token;
  return {
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
