import test, { type ExecutionContext } from 'ava';
import type { TaskQueue } from '../../../../functions/core/ports.ts';
import { taskName } from '../../../../protocol/task.ts';
import { TestEndpoint } from './endpoint.ts';

/** A queue adapter opened against one endpoint, able to restart on the same durable state. */
export interface QueueUnderTest {
  readonly queue: TaskQueue;
  /** Stops the queue and its handles, then opens a new one on the same state (a process restart). */
  restart(): Promise<void>;
  close(): Promise<void>;
}

/** How the suite drives one adapter; a fresh harness per test. */
export interface QueueHarness {
  /** Opens the adapter pushing to `url` (the endpoint the suite started). */
  open(url: string): Promise<QueueUnderTest>;
  /** Harness time in ms (fake for the local queue, real for a cloud queue). */
  now(): number;
  /** Lets `stepMs` of harness time pass. */
  step(): Promise<void>;
  stepMs: number;
  /** The retry and rate settings in force, so assertions match the configuration. */
  minBackoffMs: number;
  dispatchDeadlineMs: number;
  maxConcurrentDispatches: number;
  queueName: string;
  /** Longest the suite waits for one expected event, in harness time. */
  patienceMs: number;
  /** Checks the `Authorization` header the endpoint saw. */
  checkAuthorization(header: string | undefined): Promise<boolean>;
  /** A fixed port for the endpoint (a tunnel from a public URL points there); any port otherwise. */
  endpointPort?: number;
  teardown?(): Promise<void>;
}

async function until(h: QueueHarness, condition: () => boolean, what: string): Promise<void> {
  const start = h.now();
  while (!condition()) {
    if (h.now() - start > h.patienceMs) throw new Error(`timed out waiting for ${what}`);
    await h.step();
  }
}

/** Lets `ms` of harness time pass. */
async function wait(h: QueueHarness, ms: number): Promise<void> {
  const end = h.now() + ms;
  while (h.now() < end) await h.step();
}

async function task(label: string): Promise<{ name: string; body: string }> {
  const name = await taskName(crypto.randomUUID(), 1);
  // Any compact-JWS-shaped text: the queue carries it without reading it.
  return { name, body: `${Buffer.from(`{"label":"${label}"}`).toString('base64url')}.${Buffer.from(name).toString('base64url')}.c2ln` };
}

/**
 * The TaskQueue contract every adapter passes: delivery with Cloud Tasks' headers, named-task
 * de-duplication, Retry-After, growing back-off, a worker that is down, the dispatch deadline,
 * a restart of the queue with tasks pending or in flight, and the concurrency cap.
 */
export function taskQueueContract(label: string, makeHarness: () => Promise<QueueHarness>, options: { serial?: boolean } = {}): void {
  const define = options.serial ? test.serial : test;
  const scenario = (title: string, body: (t: ExecutionContext, h: QueueHarness, endpoint: TestEndpoint, q: QueueUnderTest) => Promise<void>) =>
    define(`${label}: ${title}`, async (t) => {
      const h = await makeHarness();
      const endpoint = await new TestEndpoint(() => h.now()).start(h.endpointPort ?? 0);
      const q = await h.open(endpoint.url);
      try {
        await body(t, h, endpoint, q);
      } finally {
        await q.close();
        await endpoint.stop();
        await h.teardown?.();
      }
    });

  scenario('an enqueued task is POSTed with its body intact and Cloud Tasks headers', async (t, h, endpoint, q) => {
    const { name, body } = await task('headers');
    t.is(await q.queue.enqueue({ name, body }), 'enqueued');
    await until(h, () => endpoint.arrivals.length === 1, 'the delivery');
    const [arrival] = endpoint.arrivals;
    t.is(arrival!.body, body);
    t.is(arrival!.headers['content-type'], 'application/jose');
    t.is(arrival!.headers['x-cloudtasks-taskname'], name);
    t.is(arrival!.headers['x-cloudtasks-queuename'], h.queueName);
    t.is(arrival!.headers['x-cloudtasks-taskretrycount'], '0');
    t.is(arrival!.headers['x-cloudtasks-taskexecutioncount'], '0');
    t.regex(String(arrival!.headers['x-cloudtasks-tasketa']), /^\d+(\.\d+)?$/);
    t.true(await h.checkAuthorization(arrival!.headers.authorization), 'the bearer token verifies');
  });

  scenario('the same name twice is a duplicate and is delivered once', async (t, h, endpoint, q) => {
    const first = await task('dup');
    t.is(await q.queue.enqueue(first), 'enqueued');
    t.is(await q.queue.enqueue({ name: first.name, body: 'another.body.x' }), 'duplicate');
    await until(h, () => endpoint.arrivals.length === 1, 'the delivery');
    t.is(await q.queue.enqueue(first), 'duplicate', 'still a duplicate after delivery');
    await wait(h, h.minBackoffMs * 4);
    t.is(endpoint.arrivals.length, 1);
    t.is(endpoint.arrivals[0]!.body, first.body);
  });

  scenario('a 503 with Retry-After is retried after that delay', async (t, h, endpoint, q) => {
    const retryAfterSeconds = Math.max(2, Math.ceil((h.minBackoffMs * 8) / 1000));
    endpoint.script = (i) => (i === 0 ? { status: 503, headers: { 'retry-after': String(retryAfterSeconds) } } : { status: 200 });
    await q.queue.enqueue(await task('503'));
    await until(h, () => endpoint.arrivals.length === 2, 'the retry');
    const gap = endpoint.arrivals[1]!.at - endpoint.arrivals[0]!.at;
    t.true(gap >= retryAfterSeconds * 1000, `retried after ${gap} ms, asked for ${retryAfterSeconds} s`);
    t.true(gap < retryAfterSeconds * 1000 + h.minBackoffMs * 4 + h.stepMs * 10, `retried after ${gap} ms`);
    t.is(endpoint.arrivals[1]!.headers['x-cloudtasks-taskretrycount'], '1');
    t.is(endpoint.arrivals[1]!.body, endpoint.arrivals[0]!.body);
    await wait(h, h.minBackoffMs * 4);
    t.is(endpoint.arrivals.length, 2, 'nothing after the 2xx');
  });

  scenario('a 500 is retried with growing back-off', async (t, h, endpoint, q) => {
    endpoint.script = (i) => (i < 4 ? { status: 500 } : { status: 200 });
    await q.queue.enqueue(await task('500'));
    await until(h, () => endpoint.arrivals.length === 5, 'four retries');
    const at = endpoint.arrivals.map((a) => a.at);
    const gaps = at.slice(1).map((x, i) => x - at[i]!);
    t.log(`gaps between attempts: ${gaps.join(', ')} ms`);
    t.true(gaps[0]! >= h.minBackoffMs, 'the first retry waits at least minBackoff');
    for (let i = 1; i < gaps.length; i++) t.true(gaps[i]! > gaps[i - 1]!, 'each wait is longer than the one before');
    t.true(gaps[3]! >= gaps[0]! * 3, 'the back-off grows exponentially');
    t.deepEqual(
      endpoint.arrivals.map((a) => a.headers['x-cloudtasks-taskretrycount']),
      ['0', '1', '2', '3', '4'],
    );
  });

  scenario('a worker that is down is retried until it comes up', async (t, h, endpoint, q) => {
    const port = endpoint.port;
    await endpoint.stop();
    await q.queue.enqueue(await task('down'));
    await wait(h, h.minBackoffMs * 6);
    t.is(endpoint.arrivals.length, 0);
    await endpoint.start(port);
    await until(h, () => endpoint.arrivals.length === 1, 'the delivery once the worker is up');
    t.true(Number(endpoint.arrivals[0]!.headers['x-cloudtasks-taskretrycount']) >= 1, 'earlier attempts were counted');
  });

  scenario('a dispatch past the deadline is aborted and retried', async (t, h, endpoint, q) => {
    endpoint.script = (i) => (i === 0 ? 'hold' : { status: 200 });
    await q.queue.enqueue(await task('deadline'));
    await until(h, () => endpoint.arrivals.length === 2, 'the retry after the deadline');
    t.true(endpoint.arrivals[0]!.closedEarly, 'the first request was closed by the queue');
    t.true(endpoint.arrivals[1]!.at - endpoint.arrivals[0]!.at >= h.dispatchDeadlineMs);
  });

  scenario('a task pending when the queue restarts is delivered after the restart', async (t, h, endpoint, q) => {
    endpoint.script = (i) => (i === 0 ? { status: 500 } : { status: 200 });
    const { name, body } = await task('pending');
    await q.queue.enqueue({ name, body });
    await until(h, () => endpoint.arrivals.length === 1, 'the first, failing, attempt');
    await q.restart();
    await until(h, () => endpoint.arrivals.length === 2, 'the delivery after the restart');
    t.is(endpoint.arrivals[1]!.body, body);
  });

  scenario('a task in flight when the queue restarts is delivered after the restart', async (t, h, endpoint, q) => {
    endpoint.script = (i) => (i === 0 ? 'hold' : { status: 200 });
    const { name, body } = await task('in-flight');
    await q.queue.enqueue({ name, body });
    await until(h, () => endpoint.arrivals.length === 1, 'the first attempt');
    await q.restart();
    await until(h, () => endpoint.arrivals.length === 2, 'the delivery after the restart');
    t.is(endpoint.arrivals[1]!.body, body);
    t.is(endpoint.arrivals[1]!.headers['x-cloudtasks-taskname'], name);
    t.is(await q.queue.enqueue({ name, body }), 'duplicate', 'the restarted queue still knows the name');
  });

  scenario('no more than maxConcurrentDispatches requests are open at once', async (t, h, endpoint, q) => {
    endpoint.script = () => 'hold';
    const count = h.maxConcurrentDispatches + 3;
    for (let i = 0; i < count; i++) await q.queue.enqueue(await task(`cap-${i}`));
    await until(h, () => endpoint.openCount === h.maxConcurrentDispatches, 'the cap to fill');
    await wait(h, h.stepMs * 10);
    t.is(endpoint.openCount, h.maxConcurrentDispatches);
    endpoint.script = () => ({ status: 200 });
    endpoint.release();
    await until(h, () => new Set(endpoint.arrivals.map((a) => a.body)).size === count, 'every task');
    t.is(endpoint.maxOpen, h.maxConcurrentDispatches);
  });
}
