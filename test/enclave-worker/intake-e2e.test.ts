import test from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:http';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEV_AUDIENCE, DevIdentityProvider } from '../../functions/adapters/identity/dev-idp.ts';
import { LocalTaskQueue } from '../../functions/adapters/queue/local.ts';
import { LocalKeySigner } from '../../functions/adapters/signer/local-key.ts';
import { SqliteSessionStore } from '../../functions/adapters/store/sqlite.ts';
import { signTask, taskName } from '../../protocol/task.ts';
import { taskPayload } from '../helpers/task.ts';

/**
 * The whole path on one machine: the control plane's SQLite queue signs with the local key file
 * and authenticates with the dev IdP; the worker's intake runs in a child process (real
 * node:http, real lease file) that the test kills with SIGKILL and starts again.
 */
const CONTROL_PLANE = 'control-plane@cleanroom.local';

async function startWorker(config: Record<string, unknown>): Promise<{ child: ChildProcess; url: string; exited: Promise<unknown> }> {
  const child = spawn(process.execPath, [join(import.meta.dirname, 'fixtures', 'intake-server.ts'), JSON.stringify(config)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const match = /listening (\S+)/.exec(out);
      if (match) resolve(match[1]!);
    });
    child.once('exit', (code) => reject(new Error(`worker exited early (${code})`)));
  });
  return { child, url, exited };
}

async function eventually(condition: () => boolean, what: string, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

test('end to end: local queue + local key + dev IdP → intake; a killed worker reruns its in-flight task once, a finished one is refused', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'intake-e2e-'));
  const workers: ChildProcess[] = [];
  const devIdp = await DevIdentityProvider.load(join(dir, 'control-plane'));
  const signer = await LocalKeySigner.load(join(dir, 'control-plane', 'task-key.json'));
  // The control plane publishes the dev IdP's JWKS; the worker fetches it like it would locally.
  const jwksServer = createServer((_, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(devIdp.jwks())));
  await new Promise<void>((resolve) => jwksServer.listen(0, '127.0.0.1', resolve));
  const execLog = join(dir, 'executions.log');
  const executions = () => (existsSync(execLog) ? readFileSync(execLog, 'utf8').trim().split('\n').filter(Boolean) : []);
  const runsOf = (queryId: string) => executions().filter((line) => line.split(' ')[1] === queryId);

  const finished = taskPayload();
  const inFlight = taskPayload();
  const config = {
    port: 0,
    leasesPath: join(dir, 'worker', 'leases.sqlite'),
    bootId: 'boot-1',
    taskKeys: [signer.publicJwk()],
    jwksUrl: `http://127.0.0.1:${(jwksServer.address() as AddressInfo).port}/.well-known/jwks.json`,
    audience: DEV_AUDIENCE,
    expectedEmail: CONTROL_PLANE,
    execLog,
    hangQueryIds: [inFlight.query_id],
    hangBootId: 'boot-1',
  };
  mkdirSync(join(dir, 'worker'), { recursive: true });

  const store = SqliteSessionStore.open(join(dir, 'control-plane', 'cleanroom.sqlite'));
  let queue: LocalTaskQueue | undefined;
  try {
    const first = await startWorker(config);
    workers.push(first.child);
    queue = new LocalTaskQueue({
      database: store.database,
      url: first.url,
      tokenSource: async () => (await devIdp.issue(CONTROL_PLANE)).token,
      retry: { minBackoffMs: 50, maxBackoffMs: 500, maxDoublings: 3, maxAttempts: -1 },
      dispatchDeadlineMs: 60_000,
      pollIntervalMs: 100,
    });
    queue.start();
    const state = (name: string) => store.database.prepare('SELECT state FROM tasks WHERE name = ?').get(name)?.state;

    // 1. A task is delivered, verified and executed exactly once.
    const finishedJws = await signTask(finished, signer);
    const finishedName = await taskName(finished.query_id, finished.attempt);
    t.is(await queue.enqueue({ name: finishedName, body: finishedJws }), 'enqueued');
    await eventually(() => state(finishedName) === 'done', 'the first task to be done');
    t.is(runsOf(finished.query_id).length, 1);

    // 2. A task is running when the worker is killed.
    const inFlightName = await taskName(inFlight.query_id, inFlight.attempt);
    await queue.enqueue({ name: inFlightName, body: await signTask(inFlight, signer) });
    await eventually(() => runsOf(inFlight.query_id).length === 1, 'the second task to start');
    first.child.kill('SIGKILL');
    await first.exited;

    // 3. The worker comes back (new boot, same lease file, same port): the queue redelivers,
    //    the new boot takes over the dead boot's lease and runs the task once more.
    const second = await startWorker({ ...config, port: Number(new URL(first.url).port), bootId: 'boot-2' });
    workers.push(second.child);
    await eventually(() => state(inFlightName) === 'done', 'the in-flight task to be redelivered and done');
    t.deepEqual(
      runsOf(inFlight.query_id).map((line) => line.split(' ')[0]),
      ['boot-1', 'boot-2'],
    );

    // 4. The finished task, replayed straight at the worker with a valid caller token, is refused.
    const replay = await fetch(second.url, {
      method: 'POST',
      headers: { authorization: `Bearer ${(await devIdp.issue(CONTROL_PLANE)).token}`, 'content-type': 'application/jose' },
      body: finishedJws,
    });
    t.is(replay.status, 409);
    t.is((await replay.json()).error.code, 'TASK_REPLAYED');
    t.is(await queue.enqueue({ name: finishedName, body: finishedJws }), 'duplicate');

    // Nothing runs a third time.
    await new Promise((resolve) => setTimeout(resolve, 300));
    t.is(runsOf(finished.query_id).length, 1);
    t.is(runsOf(inFlight.query_id).length, 2);
  } finally {
    await queue?.stop();
    store.close();
    for (const child of workers) child.kill('SIGKILL');
    jwksServer.closeAllConnections();
    jwksServer.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
