import test from 'ava';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLocalJWKSet, jwtVerify } from 'jose';
import { DEV_AUDIENCE, DEV_ISSUER, DevIdentityProvider } from '../../../../functions/adapters/identity/dev-idp.ts';
import { LocalTaskQueue, type LocalTaskQueueOptions } from '../../../../functions/adapters/queue/local.ts';
import { SqliteSessionStore } from '../../../../functions/adapters/store/sqlite.ts';
import { taskName } from '../../../../protocol/task.ts';
import { FakeTime } from '../../../helpers/fake-time.ts';
import { taskQueueContract, type QueueHarness } from './contract.ts';
import { TestEndpoint } from './endpoint.ts';

const dir = mkdtempSync(join(tmpdir(), 'local-queue-'));
const CONTROL_PLANE = 'control-plane@cleanroom.local';
// Awaited before any test is declared: ava closes declarations once the module yields after one.
const devIdp = await DevIdentityProvider.load(dir);
test.after.always(() => rmSync(dir, { recursive: true, force: true }));
const tokenSource = async () => (await devIdp.issue(CONTROL_PLANE)).token;
const SETTINGS = { minBackoffMs: 2000, dispatchDeadlineMs: 30_000, maxConcurrentDispatches: 2 };

function localQueue(time: FakeTime, path: string, url: string, store: SqliteSessionStore, extra: Partial<LocalTaskQueueOptions> = {}) {
  return new LocalTaskQueue({
    database: store.database,
    url,
    queueName: 'cleanroom-tasks',
    tokenSource,
    retry: { minBackoffMs: SETTINGS.minBackoffMs, maxBackoffMs: 120_000, maxDoublings: 4, maxAttempts: -1 },
    dispatchDeadlineMs: SETTINGS.dispatchDeadlineMs,
    maxConcurrentDispatches: SETTINGS.maxConcurrentDispatches,
    pollIntervalMs: 1000,
    clock: time.clock,
    timers: time.timers,
    ...extra,
  });
}

function harness(): QueueHarness {
  const time = new FakeTime();
  const path = join(dir, `${crypto.randomUUID()}.sqlite`);
  return {
    async open(url) {
      let store = SqliteSessionStore.open(path);
      let queue = localQueue(time, path, url, store);
      queue.start();
      return {
        get queue() {
          return queue;
        },
        async restart() {
          // A new process: new connection, new queue object, same file.
          await queue.stop();
          store.close();
          store = SqliteSessionStore.open(path);
          queue = localQueue(time, path, url, store);
          queue.start();
        },
        async close() {
          await queue.stop();
          store.close();
        },
      };
    },
    now: () => time.nowMs(),
    step: () => time.tick(100),
    stepMs: 100,
    ...SETTINGS,
    queueName: 'cleanroom-tasks',
    patienceMs: 180_000,
    async checkAuthorization(header) {
      const token = /^Bearer (.+)$/.exec(header ?? '')?.[1];
      if (!token) return false;
      const jwks = createLocalJWKSet(devIdp.jwks() as Parameters<typeof createLocalJWKSet>[0]);
      const { payload } = await jwtVerify(token, jwks, { issuer: DEV_ISSUER, audience: DEV_AUDIENCE });
      return payload.email === CONTROL_PLANE && payload.nonce === undefined;
    },
  };
}

taskQueueContract('local queue', async () => harness());

/** A started local queue on a fresh file with a fake clock, and its endpoint. */
async function setup(extra: Partial<LocalTaskQueueOptions> = {}) {
  const time = new FakeTime();
  const path = join(dir, `${crypto.randomUUID()}.sqlite`);
  const endpoint = await new TestEndpoint(() => time.nowMs()).start();
  const store = SqliteSessionStore.open(path);
  const queue = localQueue(time, path, endpoint.url, store, extra);
  queue.start();
  const until = async (condition: () => boolean, limitMs = 120_000) => {
    const end = time.nowMs() + limitMs;
    while (!condition()) {
      if (time.nowMs() > end) throw new Error('timed out');
      await time.tick(100);
    }
  };
  const close = async () => {
    await queue.stop();
    store.close();
    await endpoint.stop();
  };
  return { time, path, endpoint, store, queue, until, close };
}

const newTask = async () => ({ name: await taskName(crypto.randomUUID(), 1), body: `a.${crypto.randomUUID()}.b` });

test('local queue: a task is given up after maxAttempts and stays a known name', async (t) => {
  const s = await setup({ retry: { minBackoffMs: 100, maxBackoffMs: 1000, maxDoublings: 2, maxAttempts: 3 } });
  try {
    s.endpoint.script = () => ({ status: 500 });
    const task = await newTask();
    await s.queue.enqueue(task);
    await s.until(() => s.endpoint.arrivals.length === 3);
    for (let i = 0; i < 50; i++) await s.time.tick(100);
    t.is(s.endpoint.arrivals.length, 3);
    t.is(s.store.database.prepare('SELECT state FROM tasks WHERE name = ?').get(task.name)?.state, 'failed');
    t.is(await s.queue.enqueue(task), 'duplicate');
  } finally {
    await s.close();
  }
});

test('local queue: execution count counts answers below 500, retry count every dispatch', async (t) => {
  const s = await setup();
  try {
    const statuses = [404, 500, 429, 200];
    s.endpoint.script = (i) => ({ status: statuses[i]! });
    await s.queue.enqueue(await newTask());
    await s.until(() => s.endpoint.arrivals.length === 4);
    t.deepEqual(
      s.endpoint.arrivals.map((a) => a.headers['x-cloudtasks-taskexecutioncount']),
      ['0', '1', '1', '2'],
    );
    t.deepEqual(
      s.endpoint.arrivals.map((a) => a.headers['x-cloudtasks-taskretrycount']),
      ['0', '1', '2', '3'],
    );
    t.deepEqual(
      s.endpoint.arrivals.map((a) => a.headers['x-cloudtasks-taskpreviousresponse']),
      [undefined, '404', '500', '429'],
    );
  } finally {
    await s.close();
  }
});

test('local queue: a failing token source is a failed attempt, retried', async (t) => {
  let calls = 0;
  const s = await setup({ tokenSource: async () => (++calls === 1 ? Promise.reject(new Error('idp down')) : tokenSource()) });
  try {
    await s.queue.enqueue(await newTask());
    await s.until(() => s.endpoint.arrivals.length === 1);
    t.is(s.endpoint.arrivals[0]!.headers['x-cloudtasks-taskretrycount'], '1');
  } finally {
    await s.close();
  }
});

test('local queue: a token source that hangs is cut off by the dispatch deadline', async (t) => {
  let calls = 0;
  const s = await setup({ tokenSource: () => (++calls === 1 ? new Promise<string>(() => {}) : tokenSource()) });
  try {
    await s.queue.enqueue(await newTask());
    await s.until(() => s.endpoint.arrivals.length === 1);
    t.true(s.time.nowMs() - Date.parse('2030-01-01T00:00:00Z') >= SETTINGS.dispatchDeadlineMs);
    t.is(s.endpoint.arrivals[0]!.headers['x-cloudtasks-taskretrycount'], '1');
  } finally {
    await s.close();
  }
});

test('local queue: a task enqueued through another connection is found by polling', async (t) => {
  const s = await setup();
  const other = SqliteSessionStore.open(s.path);
  try {
    // An API process that only enqueues: it never starts a dispatcher.
    const enqueuer = localQueue(s.time, s.path, s.endpoint.url, other);
    t.is(await enqueuer.enqueue(await newTask()), 'enqueued');
    await s.until(() => s.endpoint.arrivals.length === 1, 5_000);
    t.pass();
  } finally {
    other.close();
    await s.close();
  }
});

test('local queue: enqueue refuses names outside the Cloud Tasks alphabet and empty bodies', async (t) => {
  const s = await setup();
  try {
    await t.throwsAsync(s.queue.enqueue({ name: 'bad/name', body: 'x' }), { instanceOf: TypeError });
    await t.throwsAsync(s.queue.enqueue({ name: 'x'.repeat(501), body: 'x' }), { instanceOf: TypeError });
    await t.throwsAsync(s.queue.enqueue({ name: 'ok', body: '' }), { instanceOf: TypeError });
  } finally {
    await s.close();
  }
});

test('local queue: stop waits for a delivery in its grace period', async (t) => {
  const s = await setup();
  try {
    s.endpoint.script = () => 'hold';
    const task = await newTask();
    await s.queue.enqueue(task);
    await s.until(() => s.endpoint.arrivals.length === 1);
    const stopped = s.queue.stop({ graceMs: 5000 });
    await new Promise((resolve) => setTimeout(resolve, 20));
    s.endpoint.release({ status: 200 });
    await stopped;
    t.false(s.endpoint.arrivals[0]!.closedEarly);
    t.is(s.store.database.prepare('SELECT state FROM tasks WHERE name = ?').get(task.name)?.state, 'done');
  } finally {
    await s.close();
  }
});

test('local queue: a dispatcher killed (SIGKILL) mid-delivery loses nothing: the next one delivers again', async (t) => {
  // Starts at the real time: the child process dispatches on the real clock.
  const time = new FakeTime(Date.now());
  const path = join(dir, `${crypto.randomUUID()}.sqlite`);
  const endpoint = await new TestEndpoint(() => Date.now()).start();
  endpoint.script = (i) => (i === 0 ? 'hold' : { status: 200 });
  const store = SqliteSessionStore.open(path);
  const task = await newTask();
  // Enqueued here, dispatched by the child process.
  t.is(await localQueue(time, path, endpoint.url, store).enqueue(task), 'enqueued');
  const child = spawn(process.execPath, [join(import.meta.dirname, 'fixtures', 'dispatcher.ts'), path, endpoint.url], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  try {
    const deadline = Date.now() + 20_000;
    while (endpoint.arrivals.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    t.is(endpoint.arrivals.length, 1, 'the child dispatched the task');
    t.is(store.database.prepare('SELECT state FROM tasks WHERE name = ?').get(task.name)?.state, 'in_flight');
    child.kill('SIGKILL');
    await exited;

    // The next dispatcher runs on real time too: nothing here should wait on a back-off.
    const queue = localQueue(time, path, endpoint.url, store, { clock: undefined, timers: undefined });
    queue.start();
    await new Promise<void>((resolve) => {
      const done = () => store.database.prepare('SELECT state FROM tasks WHERE name = ?').get(task.name)?.state === 'done';
      const poll = () => (done() || Date.now() > deadline + 20_000 ? resolve() : setTimeout(poll, 20));
      poll();
    });
    await queue.stop();
    t.is(endpoint.arrivals.length, 2, `arrivals: ${JSON.stringify(endpoint.arrivals.map((a) => a.headers['x-cloudtasks-taskretrycount']))}`);
    t.is(endpoint.arrivals[1]!.body, task.body);
    t.is(endpoint.arrivals[1]!.headers['x-cloudtasks-taskretrycount'], '1');
    t.is(store.database.prepare('SELECT state FROM tasks WHERE name = ?').get(task.name)?.state, 'done');
  } finally {
    child.kill('SIGKILL');
    store.close();
    await endpoint.stop();
  }
});
