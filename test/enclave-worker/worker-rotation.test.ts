import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { loadWorkerConfig } from '../../enclave-worker/config.ts';
import { LocalKeyRing } from '../../enclave-worker/keys/local-key-ring.ts';
import { SessionKeyManager } from '../../enclave-worker/keys/session-keys.ts';
import { startWorker } from '../../enclave-worker/worker.ts';
import { objectKeys } from '../../protocol/dataset.ts';
import { LocalObjectStore } from '../../runtime/object-store/local.ts';
import { testTaskKey } from '../helpers/task.ts';
import { devTrust } from './dev-trust.ts';

// The worker's rotation timer, started in-process with a short period (the config's field is
// milliseconds; the environment only takes whole hours).
const dir = mkdtempSync(join(tmpdir(), 'worker-rotation-'));
const taskKey = await testTaskKey();
const trust = await devTrust();
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

test('worker: session keys rotate on the timer, /status shows the last rotation, and close stops the timer', async (t) => {
  writeFileSync(join(dir, 'task-signing-public.json'), JSON.stringify({ keys: [taskKey.publicJwk] }));
  const config = { ...loadWorkerConfig({ CLEANROOM_DATA_DIR: dir, WORKER_PORT: '0', TASK_CALLER_VERIFIER: 'http://127.0.0.1:9/jwks.json' }), sessionKeyRotationMs: 50 };
  t.is(config.keyService.kind, 'local-key-ring');
  const objects = new LocalObjectStore((config.objectStore as { dir: string }).dir);
  const session = crypto.randomUUID();
  const keyRing = LocalKeyRing.open((config.keyService as { file: string }).file);
  await new SessionKeyManager({ objects, keys: keyRing, identity: trust.identity }).getOrCreate(session);

  const rotations: Array<Record<string, unknown> | undefined> = [];
  const log = { info: (message: string, fields?: Record<string, unknown>) => void (message === 'session keys rotated' && rotations.push(fields)), warn() {}, error() {} };
  const worker = await startWorker(config, { log });
  try {
    while (rotations.length < 2) await new Promise((resolve) => setTimeout(resolve, 20));
    const status = (await (await fetch(`${worker.url}/status`)).json()) as any;
    t.like(status.session_key_rotation.last, { ok: true, failed: 0 });
    t.is(typeof status.session_key_rotation.last.at, 'string');
    t.false(JSON.stringify(status).includes(session), 'counts only');
    t.like(rotations[0], { rewrapped: 1, failed: 0 });
  } finally {
    await worker.close();
  }
  await new Promise((resolve) => setTimeout(resolve, 60));
  const seen = rotations.length;
  await new Promise((resolve) => setTimeout(resolve, 200));
  t.is(rotations.length, seen, 'no rotation after close');
  // Read once no run is in progress: each run destroyed the versions before its own.
  t.is(LocalKeyRing.open((config.keyService as { file: string }).file).versions.length, 1, 'older versions destroyed');
  const epochs = await objects.list(objectKeys.sessionKeyPrefix(session));
  t.is(epochs.length, 1);
  t.not(epochs[0]!.key, objectKeys.sessionKey(session, 1));
});
