import { mkdirSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { cpus, freemem, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';
import { decodeJwt } from 'jose';
import { attestationNonce } from '../protocol/attestation.ts';
import { toNodeListener } from '../runtime/node-http.ts';
import { GcsObjectStore } from '../runtime/object-store/gcs.ts';
import { LocalObjectStore } from '../runtime/object-store/local.ts';
import type { ObjectStore } from '../runtime/object-store/port.ts';
import { ConfidentialSpaceAttester } from './attestation/confidential-space.ts';
import { DevAttester } from './attestation/dev.ts';
import type { Attester } from './attestation/port.ts';
import type { KeyServiceConfig, ObjectStoreConfig, WorkerConfig } from './config.ts';
import { createExecutor, type Executor } from './executor/executor.ts';
import { TestOnlyPlaintextFixtureInputs } from './executor/plaintext-fixtures.ts';
import { ExecutorPool } from './executor/pool.ts';
import { detectSandbox } from './executor/sandbox.ts';
import { createWorkerApp } from './http/app.ts';
import { createSessionKeyEndpoint } from './http/session-keys.ts';
import { createWorkerIdentity } from './identity.ts';
import { EncryptedInputs } from './inputs/encrypted-inputs.ts';
import { googleCallerVerifier, jwksCallerVerifier } from './intake/caller.ts';
import { createTaskIntake, type IntakeLogger } from './intake/handler.ts';
import { SqliteLeaseStore } from './intake/lease-store.ts';
import { runTask } from './intake/run-task.ts';
import { KmsKeyService } from './keys/kms.ts';
import { LocalKeyRing } from './keys/local-key-ring.ts';
import type { KeyService } from './keys/port.ts';
import { rotateSessionKeys, scheduleRotation } from './keys/rotation.ts';
import { SessionKeyManager } from './keys/session-keys.ts';
import { controlPlaneReporter } from './report/control-plane.ts';
import { cachedTokenSource, devIdpToken, metadataServerToken } from './report/token-source.ts';
import { receiptAttestation } from './results/receipt-attestation.ts';
import { SealedResultSink } from './results/sealed-sink.ts';
import { taskKeysFromFile } from './task-keys.ts';

export interface RunningWorker {
  url: string;
  executor: Executor;
  close(): Promise<void>;
}

/**
 * The worker's composition root: identity key, attester, object store, key service, session
 * keys, lease store, executor pool (encrypted inputs in, sealed results out), task intake and the
 * HTTP surface, from a validated config. `main.ts` runs it; tests start it in-process or as a
 * child process.
 */
export async function startWorker(config: WorkerConfig, options: { log?: IntakeLogger; publicUrl?: string } = {}): Promise<RunningWorker> {
  const log = options.log ?? { info() {}, warn() {}, error() {} };
  mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  const startedAt = Date.now();
  // Listening first tells us the port (the dev attester's issuer may need it); until the app is
  // built every request gets a 503 instead of hanging on a server with no handler.
  let handle: (request: Request) => Promise<Response> = async () => new Response('{"error":{"code":"STORE_UNAVAILABLE","message":"starting"}}', { status: 503, headers: { 'retry-after': '1' } });
  const server = createServer(toNodeListener((request) => handle(request)));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, config.host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const url = options.publicUrl ?? (config.port === 0 ? `http://127.0.0.1:${port}` : config.publicUrl);

  const identity = await createWorkerIdentity();
  const attester: Attester & { routes?: { openidConfiguration: string; jwks: string } } =
    config.attestationMode === 'confidential-space'
      ? new ConfidentialSpaceAttester()
      : await DevAttester.create({
          issuer: `${url}/dev-attestation`,
          imageDigest: config.imageDigest,
          keyFile: join(config.dataDir, 'dev-attester-key.json'),
        });
  let lastAttestationExpiry: string | null = null;

  const objects = objectStoreOf(config.objectStore);
  const keyService = keyServiceOf(config.keyService);
  const sessionKeys = new SessionKeyManager({ objects, keys: keyService, identity });
  const rotation =
    config.sessionKeyRotationMs > 0
      ? scheduleRotation(config.sessionKeyRotationMs, () => rotateSessionKeys({ manager: sessionKeys, ...(keyService instanceof LocalKeyRing ? { ring: keyService } : {}), log }), log)
      : null;

  const pool = new ExecutorPool({ maxConcurrent: config.executorSlots, maxQueued: config.executorSlots * 16 });
  const inputs = config.plaintextFixturesDir ? new TestOnlyPlaintextFixtureInputs({ directory: config.plaintextFixturesDir, allowTestOnly: true }) : new EncryptedInputs({ objects, sessionKeys });
  if (config.plaintextFixturesDir) log.warn('TEST-ONLY plaintext fixture inputs are enabled', { dir: config.plaintextFixturesDir });
  const sandbox = detectSandbox();
  const sink = new SealedResultSink({
    objects,
    identity,
    attestation: receiptAttestation({ attester, audience: config.attestationAudience, identity, fallbackImageDigest: config.imageDigest }),
  });
  const executor = createExecutor({
    pool,
    inputs,
    sink,
    sandbox,
    limits: { timeoutMs: config.queryTimeoutMs, memoryLimitMb: config.queryMemoryMb },
  });

  const tokenSource = cachedTokenSource(config.attestationMode === 'confidential-space' ? metadataServerToken(config.controlPlaneUrl) : devIdpToken(config.controlPlaneUrl, config.workerEmail));
  const reporter = controlPlaneReporter({ baseUrl: config.controlPlaneUrl, tokenSource, log: (m, f) => log.warn(m, f) });
  const leases = SqliteLeaseStore.open(join(config.dataDir, 'leases.sqlite'));
  const taskKeys = taskKeysFromFile(config.taskKeysFile);
  const jwksCaller = config.taskCallerVerifier === 'google' ? undefined : jwksCallerVerifier({ audience: config.taskCallerAudience, jwksUrl: new URL(config.taskCallerVerifier) });
  // Cloud Tasks' OIDC audience is the intake URL; the control plane's own token for
  // `/session-keys` names that route's URL the same way.
  const callerFor = (path: string) => jwksCaller ?? googleCallerVerifier({ audience: `${url}${path}` });
  let inFlight = 0;
  const intake = createTaskIntake({
    verifyCaller: callerFor('/tasks'),
    expectedCallerEmail: config.taskCallerEmail,
    taskKeys,
    leases,
    execute: async (payload, signal) => {
      inFlight++;
      try {
        return await runTask(payload, signal, executor, reporter);
      } finally {
        inFlight--;
      }
    },
    clock: { now: () => new Date() },
    bootId: crypto.randomUUID(),
    log,
  });

  const attest = async (nonce: string) => {
    const token = await attester.token({
      audience: config.attestationAudience,
      nonces: [await attestationNonce(nonce, identity.thumbprint)],
    });
    const exp = decodeJwt(token).exp;
    lastAttestationExpiry = typeof exp === 'number' ? new Date(exp * 1000).toISOString() : null;
    return { token, kind: attester.kind, expiresAt: lastAttestationExpiry };
  };
  const sessionKeyEndpoint = createSessionKeyEndpoint({
    verifyCaller: callerFor('/session-keys'),
    expectedCallerEmail: config.taskCallerEmail,
    taskKeys,
    sessionKeys,
    attest,
    clock: { now: () => new Date() },
    log,
  });

  const app = createWorkerApp({
    instanceId: config.instanceId,
    imageDigest: config.imageDigest,
    identity,
    startedAt,
    attest,
    status: () => ({
      instance_id: config.instanceId,
      uptime_s: Math.round((Date.now() - startedAt) / 1000),
      tasks_in_flight: inFlight,
      executor: executor.status(),
      sandbox: { separate_users: Boolean(sandbox.users), no_network: Boolean(sandbox.isolateNetwork), rlimits: Boolean(sandbox.rlimits) },
      attestation: { kind: attester.kind, last_token_expires_at: lastAttestationExpiry },
      // Kinds only: never a key name, a bucket path or a key.
      key_service: { kind: config.keyService.kind },
      object_store: { kind: config.objectStore.kind },
      session_key_rotation: { every_hours: config.sessionKeyRotationMs / 3_600_000, last: rotationStatus() },
      memory: { rss: process.memoryUsage().rss, free: freemem(), total: totalmem() },
      cpu: { cores: cpus().length, loadavg: loadavg(), process_usage_us: process.cpuUsage() },
    }),
    intake,
    sessionKeys: sessionKeyEndpoint,
    documents: documentsOf(attester),
    clientKey: (request) => request.headers.get('x-forwarded-for')?.split(',')[0]?.trim() ?? 'direct',
  });
  handle = app;

  /** Counts and codes only: no session ids. */
  function rotationStatus(): Record<string, unknown> | null {
    const last = rotation?.last() ?? null;
    if (last === null || 'error' in last) return last;
    return { at: last.at, ok: last.ok, rewrapped: last.rewrapped, failed: last.failed, unreadable: last.unreadable, destroyed_versions: last.destroyedVersions };
  }

  return {
    url,
    executor,
    async close() {
      rotation?.close();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      await executor.close();
      if (inputs instanceof EncryptedInputs) await inputs.close();
      leases.close();
    },
  };
}

function documentsOf(attester: Attester): Record<string, () => unknown> {
  if (!(attester instanceof DevAttester)) return {};
  const { openidConfiguration, jwks } = attester.routes;
  return { [openidConfiguration]: () => attester.openidConfiguration(), [jwks]: () => attester.jwks() };
}

function objectStoreOf(config: ObjectStoreConfig): ObjectStore {
  if (config.kind === 'local') return new LocalObjectStore(config.dir);
  return new GcsObjectStore({ bucket: config.bucket });
}

function keyServiceOf(config: KeyServiceConfig): KeyService {
  // The KMS client is loaded on first use, so the embedded stack never loads the SDK.
  if (config.kind === 'cloud-kms') return new KmsKeyService({ keyName: config.keyName });
  return LocalKeyRing.open(config.file);
}
