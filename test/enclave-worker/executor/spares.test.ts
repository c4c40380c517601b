import test from 'ava';
import { CleanroomError } from '../../../protocol/errors.ts';
import type { ExecutionContext } from '../../../enclave-worker/executor/context.ts';
import { WarmContexts } from '../../../enclave-worker/executor/spares.ts';

/** Stands in for a context: becomes ready (or fails) when the test says so. */
class FakeContext {
  readonly ready: Promise<void>;
  readonly exited: Promise<void>;
  killed = false;
  #ready = false;
  #resolveReady!: () => void;
  #rejectReady!: (error: unknown) => void;
  #resolveExited!: () => void;

  constructor() {
    this.ready = new Promise((resolve, reject) => {
      this.#resolveReady = resolve;
      this.#rejectReady = reject;
    });
    this.ready.catch(() => {});
    this.exited = new Promise((resolve) => (this.#resolveExited = resolve));
  }

  get idle(): boolean {
    return this.#ready && !this.killed;
  }

  becomeReady(): void {
    this.#ready = true;
    this.#resolveReady();
  }

  failToStart(): void {
    this.#rejectReady(new CleanroomError('INTERNAL', 'could not start'));
  }

  kill(): void {
    this.killed = true;
    this.#resolveExited();
  }
}

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

function source(spares: number, maxStarting = 2): { contexts: WarmContexts; started: FakeContext[] } {
  const started: FakeContext[] = [];
  const start = (): ExecutionContext => {
    const context = new FakeContext();
    started.push(context);
    return context as unknown as ExecutionContext;
  };
  return { contexts: new WarmContexts({ spares, maxStarting, start }), started };
}

test('spares: keeps the configured number starting, hands out ready ones and replaces them after use', async (t) => {
  const { contexts, started } = source(2);
  t.is(started.length, 2);
  started[0]!.becomeReady();
  await tick();
  const first = await contexts.take();
  t.is(first as unknown, started[0]);
  // The replacement starts once the taken context's query is over (or after 100 ms).
  t.is(started.length, 2);
  first.kill();
  await tick();
  t.is(started.length, 3);
  await contexts.close();
  t.true(started.every((c) => c.killed || c === started[0]));
});

test('spares: a waiting take gets the next context to become ready', async (t) => {
  const { contexts, started } = source(1);
  const waiting = contexts.take();
  await tick();
  // One spare plus one waiter: two starting.
  t.is(started.length, 2);
  started[1]!.becomeReady();
  t.is((await waiting) as unknown, started[1]);
  await contexts.close();
});

test('spares: a context that cannot start fails one waiter instead of hanging, without a restart loop', async (t) => {
  const { contexts, started } = source(1, 1);
  const waiting = contexts.take();
  started[0]!.failToStart();
  t.is((await t.throwsAsync(waiting, { instanceOf: CleanroomError })).code, 'INTERNAL');
  await tick();
  t.is(started.length, 1);
  await contexts.close();
});

test('spares: an idle context that died is not handed out', async (t) => {
  const { contexts, started } = source(1);
  started[0]!.becomeReady();
  await tick();
  started[0]!.kill();
  const next = contexts.take();
  await tick();
  started.at(-1)!.becomeReady();
  t.not((await next) as unknown, started[0]);
  await contexts.close();
});

test('spares: aborting a waiting take rejects it; close refuses further takes', async (t) => {
  const { contexts } = source(0);
  const controller = new AbortController();
  const waiting = contexts.take(controller.signal);
  controller.abort(new Error('gone'));
  await t.throwsAsync(waiting, { message: 'gone' });
  await contexts.close();
  t.is((await t.throwsAsync(contexts.take(), { instanceOf: CleanroomError })).code, 'EXECUTOR_BUSY');
});
