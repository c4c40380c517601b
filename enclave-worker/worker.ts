import { mkdirSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { cpus, freemem, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';
import { decodeJwt } from 'jose';
import { attestationNonce } from '../protocol/attestation.ts';
import { CleanroomError } from '../protocol/errors.ts';
import type { TaskPayload } from '../protocol/task.ts';
import { toNodeListener } from '../runtime/node-http.ts';
import { ConfidentialSpaceAttester } from './attestation/confidential-space.ts';
import { DevAttester } from './attestation/dev.ts';
import type { Attester } from './attestation/port.ts';
import type { WorkerConfig } from './config.ts';
import { createExecutor, type Executor } from './executor/executor.ts';
import { TestOnlyPlaintextFixtureInputs } from './executor/plaintext-fixtures.ts';
import { ExecutorPool } from './executor/pool.ts';
import type { InputSource } from './executor/ports.ts';
import { detectSandbox } from './executor/sandbox.ts';
import { createWorkerApp } from './http/app.ts';
import { createWorkerIdentity } from './identity.ts';
import { googleCallerVerifier, jwksCallerVerifier } from './intake/caller.ts';
import { createTaskIntake, type IntakeLogger } from './intake/handler.ts';
import { SqliteLeaseStore, type LeaseOutcome } from './intake/lease-store.ts';
import { controlPlaneReporter, type Reporter } from './report/control-plane.ts';
import { cachedTokenSource, devIdpToken, metadataServerToken } from './report/token-source.ts';
import { FileDigestSink } from './results/file-digest-sink.ts';
import { taskKeysFromFile } from './task-keys.ts';

export interface RunningWorker {
  url: string;
  executor: Executor;
  close(): Promise<void>;
}

/** No datasets exist before the encrypted data path (issue 3 of 6): sessions have no tables yet. */
const NO_INPUTS: InputSource = { tableNames: async () => [], tables: async () => [] };

/**
 * The worker's composition root: identity key, attester, lease store, executor pool, task intake
 * and the HTTP surface, from a validated config. `main.ts` runs it; tests start it in-process
 * or as a child process.
 */
export async function startWorker(config: WorkerConfig, options: { log?: IntakeLogger; publicUrl?: string } = {}): Promise<RunningWorker> {
  const log = options.log ?? { info() {}, warn() {}, error() {} };
  mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  const startedAt = Date.now();
  // Listening first tells us the port (the dev attester's issuer may need it); until the app is
  // built every request gets a 503 instead of hanging on a server with no handler.
  let handle: (request: Request) => Promise<Response> = async () =>
    new Response('{"error":{"code":"STORE_UNAVAILABLE","message":"starting"}}', { status: 503, headers: { 'retry-after': '1' } });
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

  const pool = new ExecutorPool({ maxConcurrent: config.executorSlots, maxQueued: config.executorSlots * 16 });
  const inputs = config.plaintextFixturesDir
    ? new TestOnlyPlaintextFixtureInputs({ directory: config.plaintextFixturesDir, allowTestOnly: true })
    : NO_INPUTS;
  if (config.plaintextFixturesDir) log.warn('TEST-ONLY plaintext fixture inputs are enabled', { dir: config.plaintextFixturesDir });
  const sandbox = detectSandbox();
  const executor = createExecutor({
    pool,
    inputs,
    sink: new FileDigestSink(join(config.dataDir, 'results')),
    sandbox,
    limits: { timeoutMs: config.queryTimeoutMs, memoryLimitMb: config.queryMemoryMb },
  });

  const tokenSource = cachedTokenSource(
    config.attestationMode === 'confidential-space'
      ? metadataServerToken(config.controlPlaneUrl)
      : devIdpToken(config.controlPlaneUrl, config.workerEmail),
  );
  const reporter = controlPlaneReporter({ baseUrl: config.controlPlaneUrl, tokenSource, log: (m, f) => log.warn(m, f) });
  const leases = SqliteLeaseStore.open(join(config.dataDir, 'leases.sqlite'));
  let inFlight = 0;
  const intake = createTaskIntake({
    verifyCaller:
      config.taskCallerVerifier === 'google'
        ? googleCallerVerifier({ audience: `${url}/tasks` })
        : jwksCallerVerifier({ audience: config.taskCallerAudience, jwksUrl: new URL(config.taskCallerVerifier) }),
    expectedCallerEmail: config.taskCallerEmail,
    taskKeys: taskKeysFromFile(config.taskKeysFile),
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

  const app = createWorkerApp({
    instanceId: config.instanceId,
    imageDigest: config.imageDigest,
    identity,
    startedAt,
    async attest(nonce) {
      const token = await attester.token({
        audience: config.attestationAudience,
        nonces: [await attestationNonce(nonce, identity.thumbprint)],
      });
      const exp = decodeJwt(token).exp;
      lastAttestationExpiry = typeof exp === 'number' ? new Date(exp * 1000).toISOString() : null;
      return { token, kind: attester.kind, expiresAt: lastAttestationExpiry };
    },
    status: () => ({
      instance_id: config.instanceId,
      uptime_s: Math.round((Date.now() - startedAt) / 1000),
      tasks_in_flight: inFlight,
      executor: executor.status(),
      sandbox: { separate_users: Boolean(sandbox.users), no_network: Boolean(sandbox.isolateNetwork), rlimits: Boolean(sandbox.rlimits) },
      attestation: { kind: attester.kind, last_token_expires_at: lastAttestationExpiry },
      memory: { rss: process.memoryUsage().rss, free: freemem(), total: totalmem() },
      cpu: { cores: cpus().length, loadavg: loadavg(), process_usage_us: process.cpuUsage() },
    }),
    intake,
    documents: documentsOf(attester),
    clientKey: (request) => request.headers.get('x-forwarded-for')?.split(',')[0]?.trim() ?? 'direct',
  });
  handle = app;

  return {
    url,
    executor,
    async close() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      await executor.close();
      leases.close();
    },
  };
}

/**
 * One task: tell the control plane it runs (it refuses, with a 4xx, a query that may no longer
 * run), execute, report the outcome. Codes only leave the worker, never engine text.
 */
async function runTask(payload: TaskPayload, signal: AbortSignal, executor: Executor, reporter: Reporter): Promise<LeaseOutcome> {
  const base = { session_id: payload.session_id, query_id: payload.query_id, task_id: payload.jti };
  const running = await reporter.report({ ...base, event: 'RUNNING', at: new Date().toISOString() });
  if (running === 'refused') return { status: 'FAILED', code: 'ILLEGAL_TRANSITION' };
  if (running === 'unreachable') throw new CleanroomError('STORE_UNAVAILABLE', 'the control plane is unreachable', { retryAfter: 10 });
  const outcome = await executor.execute({ sessionId: payload.session_id, queryId: payload.query_id, sql: payload.sql, signal });
  if (outcome.status === 'CANCELLED') throw new CleanroomError('TASK_IN_PROGRESS', 'the task request closed', { retryAfter: 1 });
  const at = new Date().toISOString();
  const reported =
    outcome.status === 'SUCCEEDED'
      ? await reporter.report({
          ...base,
          event: 'SUCCEEDED',
          at,
          stats: { rows: outcome.result.rows, bytes: outcome.result.bytes, elapsed_ms: Math.round(outcome.result.elapsedMs) },
          result_ref: outcome.result.ref,
        })
      : await reporter.report({ ...base, event: 'FAILED', at, error_code: outcome.code });
  // The result is written (once); if the control plane did not hear of it, a redelivery reports again.
  if (reported === 'unreachable') throw new CleanroomError('STORE_UNAVAILABLE', 'the control plane is unreachable', { retryAfter: 10 });
  return outcome.status === 'SUCCEEDED' ? { status: 'SUCCEEDED' } : { status: 'FAILED', code: outcome.code };
}

function documentsOf(attester: Attester): Record<string, () => unknown> {
  if (!(attester instanceof DevAttester)) return {};
  const { openidConfiguration, jwks } = attester.routes;
  return { [openidConfiguration]: () => attester.openidConfiguration(), [jwks]: () => attester.jwks() };
}
