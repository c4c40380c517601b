import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startLocalStack, type LocalStack } from '../../functions/local/stack.ts';
import { freePort } from '../helpers/firestore-emulator.ts';
import { registerTestKeys, type TestParticipantKeys } from '../helpers/participant-keys.ts';

/** The control plane in-process and the worker as a real child process, as `npm start` runs them. */
export interface FullStack {
  api: LocalStack;
  dataDir: string;
  /** The object store directory the control plane and the worker share (sealed results land here). */
  objectsDir: string;
  fixturesDir: string;
  workerUrl: string;
  worker(): ChildProcess;
  startWorker(): Promise<void>;
  killWorker(signal?: NodeJS.Signals): Promise<void>;
  call(method: string, path: string, as: string, body?: unknown): Promise<{ status: number; body: any }>;
  /** Registers fresh keys for `as` in the session (results are sealed to recipients' keys). */
  registerKeys(sessionId: string, as: string): Promise<TestParticipantKeys>;
  waitFor(sessionId: string, queryId: string, as: string, statuses: string[], timeoutMs?: number): Promise<any>;
  close(): Promise<void>;
}

/**
 * `plaintextFixtures` (default true): the worker reads TEST-ONLY plaintext tables from
 * `fixturesDir`; false: it decrypts uploaded datasets from the shared object store, as deployed.
 */
export async function startFullStack(options: { reconcileEveryMs?: number; plaintextFixtures?: boolean } = {}): Promise<FullStack> {
  const dataDir = mkdtempSync(join(tmpdir(), 'cleanroom-full-'));
  const fixturesDir = join(dataDir, 'fixtures');
  const workerPort = await freePort();
  const workerUrl = `http://127.0.0.1:${workerPort}`;
  const api = await startLocalStack({ dataDir, apiPort: 0, workerUrl, ...(options.reconcileEveryMs ? { reconcileEveryMs: options.reconcileEveryMs } : {}) });
  let child: ChildProcess | undefined;

  const startWorker = async (): Promise<void> => {
    child = spawn(process.execPath, ['enclave-worker/main.ts'], {
      env: {
        ...process.env,
        CLEANROOM_DATA_DIR: dataDir,
        WORKER_PORT: String(workerPort),
        TEE_SERVICE_ENDPOINT: workerUrl,
        CONTROL_PLANE_URL: api.apiUrl,
        TASK_CALLER_VERIFIER: `${api.apiUrl}/dev-idp/jwks.json`,
        ...(options.plaintextFixtures === false ? {} : { WORKER_PLAINTEXT_FIXTURES_DIR: fixturesDir }),
        QUERY_TIMEOUT_MS: '60000',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout!.resume();
    child.stderr!.on('data', (d) => process.env.DEBUG_STACK && process.stderr.write(d));
    child.on('exit', (c, sig) => process.env.DEBUG_STACK && console.error('worker exit', c, sig));
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      try {
        if ((await fetch(`${workerUrl}/health`, { signal: AbortSignal.timeout(2000) })).ok) return;
      } catch {}
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error('worker did not start');
  };

  const killWorker = async (signal: NodeJS.Signals = 'SIGTERM'): Promise<void> => {
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child!.once('exit', r));
    child.kill(signal);
    await exited;
  };

  const call = async (method: string, path: string, as: string, body?: unknown) => {
    const token = (await api.devIdp.issue(as)).token;
    const res = await fetch(`${api.apiUrl}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: res.status, body: (await res.json()) as any };
  };

  const waitFor = async (sessionId: string, queryId: string, as: string, statuses: string[], timeoutMs = 60_000) => {
    const deadline = Date.now() + timeoutMs;
    let last: any;
    while (Date.now() < deadline) {
      last = (await call('GET', `/api/tee/sessions/${sessionId}/queries/${queryId}`, as)).body;
      if (statuses.includes(last.status)) return last;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`query stayed ${last?.status}, wanted ${statuses.join('|')}`);
  };

  await startWorker();
  return {
    api,
    dataDir,
    objectsDir: api.objectsDir,
    fixturesDir,
    workerUrl,
    worker: () => child!,
    startWorker,
    killWorker,
    call,
    registerKeys: (sessionId, as) => registerTestKeys({ apiUrl: api.apiUrl, idp: api.devIdp, sessionId, email: as }),
    waitFor,
    async close() {
      await killWorker('SIGKILL');
      await api.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
