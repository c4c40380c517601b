import test from 'ava';
import { CleanroomError } from '../../../protocol/errors.ts';
import { ExecutorPool } from '../../../enclave-worker/executor/pool.ts';

/** A task that runs until released; records its start. */
function gate(log: string[], name: string) {
  let release!: (value: string) => void;
  let signal!: AbortSignal;
  const done = new Promise<string>((resolve) => {
    release = resolve;
  });
  const task = (s: AbortSignal): Promise<string> => {
    signal = s;
    log.push(name);
    // Like a context, a task ends when its signal aborts.
    s.addEventListener('abort', () => release(name));
    return done;
  };
  return { task, release: () => release(name), signal: () => signal };
}

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
/** Starts a run whose outcome the test does not look at (it may be refused at close). */
const background = (run: Promise<unknown>): void => {
  run.catch(() => {});
};

test('pool: runs at most maxConcurrent tasks at once', async (t) => {
  const pool = new ExecutorPool({ maxConcurrent: 2, perSessionRunning: 2, maxQueued: 10 });
  const log: string[] = [];
  const gates = ['a', 'b', 'c'].map((n) => gate(log, n));
  const runs = gates.map((g) => pool.run('s1', g.task));
  await tick();
  t.deepEqual(log, ['a', 'b']);
  t.deepEqual(pool.status(), { slots: { max: 2, running: 2, queued: 1 }, running: { s1: 2 }, queued: { s1: 1 } });
  gates[0]!.release();
  await tick();
  t.deepEqual(log, ['a', 'b', 'c']);
  gates[1]!.release();
  gates[2]!.release();
  t.deepEqual(await Promise.all(runs), ['a', 'b', 'c']);
  t.deepEqual(pool.status(), { slots: { max: 2, running: 0, queued: 0 }, running: {}, queued: {} });
});

test('pool: one session cannot hold every slot', async (t) => {
  const pool = new ExecutorPool({ maxConcurrent: 4, maxQueued: 10 });
  const log: string[] = [];
  const flood = Array.from({ length: 6 }, (_, i) => gate(log, `heavy${i}`));
  for (const g of flood) background(pool.run('heavy', g.task));
  await tick();
  // The default share is half the slots: two of four.
  t.deepEqual(log, ['heavy0', 'heavy1']);
  const small = gate(log, 'small');
  const run = pool.run('small', small.task);
  await tick();
  t.deepEqual(log, ['heavy0', 'heavy1', 'small']);
  small.release();
  t.is(await run, 'small');
  await pool.close();
});

test('pool: a freed slot goes to the waiting session served least recently', async (t) => {
  const pool = new ExecutorPool({ maxConcurrent: 1, maxQueued: 10 });
  const log: string[] = [];
  const g = Object.fromEntries(['a1', 'a2', 'a3', 'b1', 'c1'].map((n) => [n, gate(log, n)]));
  const runs = [pool.run('A', g.a1!.task), pool.run('A', g.a2!.task), pool.run('A', g.a3!.task), pool.run('B', g.b1!.task), pool.run('C', g.c1!.task)];
  for (const name of ['a1', 'b1', 'c1', 'a2', 'a3']) {
    await tick();
    g[name]!.release();
  }
  await Promise.all(runs);
  t.deepEqual(log, ['a1', 'b1', 'c1', 'a2', 'a3']);
});

test('pool: a full queue answers EXECUTOR_BUSY at once, with a retry hint', async (t) => {
  const pool = new ExecutorPool({ maxConcurrent: 1, maxQueued: 2 });
  const log: string[] = [];
  const running = gate(log, 'r');
  background(pool.run('A', running.task));
  background(pool.run('B', gate(log, 'q1').task));
  background(pool.run('C', gate(log, 'q2').task));
  const error = await t.throwsAsync(pool.run('D', gate(log, 'q3').task), { instanceOf: CleanroomError });
  t.is(error.code, 'EXECUTOR_BUSY');
  t.is(error.status, 429);
  t.is(error.retryAfter, 1);
  t.false(log.includes('q3'));
  await pool.close();
});

test('pool: one session cannot fill the queue; others still get in', async (t) => {
  const pool = new ExecutorPool({ maxConcurrent: 1, maxQueued: 4 });
  const log: string[] = [];
  background(pool.run('flood', gate(log, 'f0').task));
  background(pool.run('flood', gate(log, 'f1').task));
  background(pool.run('flood', gate(log, 'f2').task));
  // Half of the queue (2 of 4) is this session's share.
  t.is((await t.throwsAsync(pool.run('flood', gate(log, 'f3').task), { instanceOf: CleanroomError })).code, 'EXECUTOR_BUSY');
  background(pool.run('other', gate(log, 'o1').task));
  t.deepEqual(pool.status().queued, { flood: 2, other: 1 });
  await pool.close();
});

test('pool: aborting a waiting task removes it and rejects with the reason', async (t) => {
  const pool = new ExecutorPool({ maxConcurrent: 1, maxQueued: 4 });
  const log: string[] = [];
  const first = gate(log, 'first');
  background(pool.run('A', first.task));
  const controller = new AbortController();
  const waiting = pool.run('B', gate(log, 'waiting').task, controller.signal);
  controller.abort(new Error('request closed'));
  await t.throwsAsync(waiting, { message: 'request closed' });
  t.deepEqual(pool.status().queued, {});
  first.release();
  await tick();
  t.deepEqual(log, ['first']);
});

test('pool: aborting a running task aborts the signal the task was given', async (t) => {
  const pool = new ExecutorPool({ maxConcurrent: 1, maxQueued: 4 });
  const controller = new AbortController();
  const run = pool.run(
    'A',
    (signal) =>
      new Promise((_, reject) => {
        signal.addEventListener('abort', () => reject(signal.reason));
      }),
    controller.signal,
  );
  await tick();
  controller.abort(new Error('gone'));
  await t.throwsAsync(run, { message: 'gone' });
  t.is(pool.status().slots.running, 0);
});

test('pool: a failing task frees its slot', async (t) => {
  const pool = new ExecutorPool({ maxConcurrent: 1, maxQueued: 4 });
  await t.throwsAsync(
    pool.run('A', async () => {
      throw new Error('boom');
    }),
    { message: 'boom' },
  );
  await t.throwsAsync(
    pool.run('A', () => {
      throw new Error('sync boom');
    }),
    { message: 'sync boom' },
  );
  t.is(await pool.run('A', async () => 'ok'), 'ok');
});

test('pool: close fails waiting tasks, aborts running ones and refuses new ones', async (t) => {
  const pool = new ExecutorPool({ maxConcurrent: 1, maxQueued: 4 });
  let aborted = false;
  const running = pool.run('A', (signal) => new Promise((resolve) => signal.addEventListener('abort', () => resolve((aborted = true)))));
  const waiting = pool.run('B', async () => 'never');
  await tick();
  await pool.close();
  t.true(aborted);
  await running;
  t.is((await t.throwsAsync(waiting, { instanceOf: CleanroomError })).code, 'EXECUTOR_BUSY');
  t.is(
    (
      await t.throwsAsync(
        pool.run('C', async () => 'x'),
        { instanceOf: CleanroomError },
      )
    ).code,
    'EXECUTOR_BUSY',
  );
});

test('pool: sizes must be positive integers', (t) => {
  t.throws(() => new ExecutorPool({ maxConcurrent: 0, maxQueued: 1 }), { instanceOf: TypeError });
  t.throws(() => new ExecutorPool({ maxConcurrent: 1, maxQueued: 1.5 }), { instanceOf: TypeError });
});
