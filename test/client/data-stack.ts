import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { startLocalStack, type LocalStack } from '../../functions/local/stack.ts';

const REPO = resolve(import.meta.dirname, '../..');

/**
 * The embedded stack as `npm start` runs it, for the confidential data path: the control plane
 * in-process and the real worker as a child process (dev attester, local key ring, the shared
 * object store directory), with NO plaintext fixtures: queries read only uploaded ciphertext.
 */
export interface DataStack {
  api: LocalStack;
  apiUrl: string;
  workerUrl: string;
  /** Where ciphertext lives, shared by both. */
  objectsDir: string;
  /** The whole embedded stack's state: the SQLite store, the worker's key ring (`worker/key-ring.json`), ... */
  dataDir: string;
  /** What the worker wrote on stderr (printed with DEBUG_STACK=1). */
  workerLog(): string;
  close(): Promise<void>;
}

export async function startDataStack(): Promise<DataStack> {
  const dataDir = mkdtempSync(join(tmpdir(), 'cleanroom-data-'));
  const workerPort = await freePort();
  const workerUrl = `http://127.0.0.1:${workerPort}`;
  const api = await startLocalStack({ dataDir, apiPort: 0, workerUrl, reconcileEveryMs: 1000 });
  let log = '';
  const child: ChildProcess = spawn(process.execPath, [join(REPO, 'enclave-worker/main.ts')], {
    cwd: REPO,
    env: {
      PATH: process.env.PATH ?? '',
      HOME: dataDir,
      CLEANROOM_DATA_DIR: dataDir,
      WORKER_PORT: String(workerPort),
      TEE_SERVICE_ENDPOINT: workerUrl,
      CONTROL_PLANE_URL: api.apiUrl,
      TASK_CALLER_VERIFIER: `${api.apiUrl}/dev-idp/jwks.json`,
      QUERY_TIMEOUT_MS: '60000',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout!.resume();
  child.stderr!.setEncoding('utf8').on('data', (d: string) => {
    log += d;
    if (process.env.DEBUG_STACK) process.stderr.write(d);
  });
  const stopWorker = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((done) => child.once('exit', done));
    child.kill('SIGKILL');
    await exited;
  };
  const close = async () => {
    await stopWorker();
    await api.close();
    rmSync(dataDir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      if ((await fetch(`${workerUrl}/health`, { signal: AbortSignal.timeout(2000) })).ok) break;
    } catch {
      // not up yet
    }
    if (child.exitCode !== null || Date.now() > deadline) {
      await close();
      throw new Error(`the worker did not start:\n${log}`);
    }
    await new Promise((done) => setTimeout(done, 100));
  }
  return { api, apiUrl: api.apiUrl, workerUrl, objectsDir: api.objectsDir, dataDir, workerLog: () => log, close };
}

function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const server = createServer();
    server.once('error', fail);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => done(port));
    });
  });
}
