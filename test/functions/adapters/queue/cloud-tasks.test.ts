import test from 'ava';
import { protos } from '@google-cloud/tasks';
import { CloudTasksQueue, type CloudTasksCreateClient } from '../../../../functions/adapters/queue/cloud-tasks.ts';
import { CleanroomError } from '../../../../protocol/errors.ts';
import { googleCallerVerifier } from '../../../../enclave-worker/intake/caller.ts';
import { taskQueueContract } from './contract.ts';

const QUEUE = 'projects/p/locations/europe-west1/queues/cleanroom-tasks';
const URL_ = 'https://worker.example.com/tasks';
const SA = 'control-plane@p.iam.gserviceaccount.com';
const JWS = 'eyJhbGciOiJFUzI1NiJ9.eyJ2IjoxfQ.c2ln';

function fakeClient(fail?: { code: number }) {
  const calls: Array<{ request: protos.google.cloud.tasks.v2.ICreateTaskRequest; options: unknown }> = [];
  const client: CloudTasksCreateClient = {
    async createTask(request, options) {
      calls.push({ request, options });
      if (fail) throw Object.assign(new Error(`fake ${fail.code}`), fail);
      return [request.task ?? {}];
    },
  };
  return { client, calls };
}

test('cloud tasks: a named HTTP task with an OIDC token, the JWS as body and a dispatch deadline', async (t) => {
  const { client, calls } = fakeClient();
  const queue = new CloudTasksQueue({ queuePath: QUEUE, url: URL_, serviceAccountEmail: SA, dispatchDeadlineSeconds: 900, timeoutMs: 7000, client });
  t.is(await queue.enqueue({ name: 'q-abc', body: JWS }), 'enqueued');
  const [call] = calls;
  t.deepEqual(call!.request, {
    parent: QUEUE,
    task: {
      name: `${QUEUE}/tasks/q-abc`,
      httpRequest: {
        httpMethod: 'POST',
        url: URL_,
        headers: { 'content-type': 'application/jose' },
        body: Buffer.from(JWS).toString('base64'),
        oidcToken: { serviceAccountEmail: SA, audience: URL_ },
      },
      dispatchDeadline: { seconds: 900 },
    },
  });
  t.deepEqual(call!.options, { timeout: 7000 });
});

test('cloud tasks: the request encodes as the library does, the body as the JWS bytes', (t) => {
  const { client, calls } = fakeClient();
  void new CloudTasksQueue({ queuePath: QUEUE, url: URL_, serviceAccountEmail: SA, client }).enqueue({ name: 'q-abc', body: JWS });
  // The same conversion gax applies before sending (protobufjs fromObject: bytes from base64).
  const message = protos.google.cloud.tasks.v2.CreateTaskRequest.fromObject(calls[0]!.request as Record<string, unknown>);
  const decoded = protos.google.cloud.tasks.v2.CreateTaskRequest.decode(protos.google.cloud.tasks.v2.CreateTaskRequest.encode(message).finish());
  t.is(Buffer.from(decoded.task!.httpRequest!.body!).toString('utf8'), JWS);
  t.is(decoded.task!.httpRequest!.httpMethod, protos.google.cloud.tasks.v2.HttpMethod.POST);
  t.is(decoded.task!.httpRequest!.oidcToken!.audience, URL_);
  t.is(Number(decoded.task!.dispatchDeadline!.seconds), 600);
});

test('cloud tasks: ALREADY_EXISTS is a duplicate, not an error', async (t) => {
  const queue = new CloudTasksQueue({ queuePath: QUEUE, url: URL_, serviceAccountEmail: SA, client: fakeClient({ code: 6 }).client });
  t.is(await queue.enqueue({ name: 'q-abc', body: JWS }), 'duplicate');
});

for (const [code, expected] of [
  [14, 'QUEUE_UNAVAILABLE'],
  [4, 'QUEUE_UNAVAILABLE'],
  [8, 'QUEUE_UNAVAILABLE'],
  [7, 'INTERNAL'],
  [5, 'INTERNAL'],
  [3, 'INTERNAL'],
] as const) {
  test(`cloud tasks: gRPC code ${code} becomes ${expected}`, async (t) => {
    const queue = new CloudTasksQueue({ queuePath: QUEUE, url: URL_, serviceAccountEmail: SA, client: fakeClient({ code }).client });
    const error = await t.throwsAsync(queue.enqueue({ name: 'q-abc', body: JWS }), { instanceOf: CleanroomError });
    t.is(error?.code, expected);
    if (expected === 'QUEUE_UNAVAILABLE') t.is(error?.retryAfter, 5);
  });
}

test('cloud tasks: misconfiguration and bad names are TypeErrors', async (t) => {
  const client = fakeClient().client;
  t.throws(() => new CloudTasksQueue({ queuePath: 'queues/x', url: URL_, serviceAccountEmail: SA, client }), { instanceOf: TypeError });
  t.throws(() => new CloudTasksQueue({ queuePath: QUEUE, url: URL_, serviceAccountEmail: SA, dispatchDeadlineSeconds: 5, client }), { instanceOf: TypeError });
  t.throws(() => new CloudTasksQueue({ queuePath: QUEUE, url: URL_, serviceAccountEmail: SA, dispatchDeadlineSeconds: 3600, client }), { instanceOf: TypeError });
  const queue = new CloudTasksQueue({ queuePath: QUEUE, url: URL_, serviceAccountEmail: SA, client });
  await t.throwsAsync(queue.enqueue({ name: 'has/slash', body: JWS }), { instanceOf: TypeError });
});

// The contract against the real service. Cloud Tasks only pushes to public URLs, so it needs a
// queue, a public URL tunnelled to a local port, the service account and credentials. The queue
// must be configured as the harness assumes: minBackoff 1s, maxBackoff 20s, maxDoublings 4,
// maxConcurrentDispatches 2; the tasks use a 15 s dispatch deadline.
const env = {
  CLEANROOM_TASKS_QUEUE: process.env.CLEANROOM_TASKS_QUEUE,
  CLEANROOM_TASKS_PUBLIC_URL: process.env.CLEANROOM_TASKS_PUBLIC_URL,
  CLEANROOM_TASKS_LOCAL_PORT: process.env.CLEANROOM_TASKS_LOCAL_PORT,
  CLEANROOM_TASKS_SA_EMAIL: process.env.CLEANROOM_TASKS_SA_EMAIL,
  GOOGLE_APPLICATION_CREDENTIALS: process.env.GOOGLE_APPLICATION_CREDENTIALS,
};
const missing = Object.entries(env)
  .filter(([, value]) => !value)
  .map(([name]) => name);

if (missing.length === 0) {
  const publicUrl = env.CLEANROOM_TASKS_PUBLIC_URL!;
  const verify = googleCallerVerifier({ audience: publicUrl });
  taskQueueContract(
    'cloud tasks (real)',
    async () => ({
      async open() {
        const make = () => new CloudTasksQueue({ queuePath: env.CLEANROOM_TASKS_QUEUE!, url: publicUrl, serviceAccountEmail: env.CLEANROOM_TASKS_SA_EMAIL!, dispatchDeadlineSeconds: 15 });
        let queue = make();
        return {
          get queue() {
            return queue;
          },
          async restart() {
            queue = make(); // the queue's state lives in Cloud Tasks; a restart is a new client
          },
          async close() {},
        };
      },
      now: () => Date.now(),
      step: () => new Promise((resolve) => setTimeout(resolve, 250)),
      stepMs: 250,
      minBackoffMs: 1000,
      dispatchDeadlineMs: 15_000,
      maxConcurrentDispatches: 2,
      queueName: env.CLEANROOM_TASKS_QUEUE!.split('/').pop()!,
      patienceMs: 180_000,
      endpointPort: Number(env.CLEANROOM_TASKS_LOCAL_PORT),
      async checkAuthorization(header) {
        return (await verify(header ?? null)).email === env.CLEANROOM_TASKS_SA_EMAIL!.toLowerCase();
      },
    }),
    { serial: true },
  );
} else {
  console.warn(`cloud-tasks.test.ts: the Cloud Tasks contract suite is SKIPPED: ${missing.join(', ')} not set`);
  test.skip(`cloud tasks (real): contract suite SKIPPED, ${missing.join(', ')} not set`, () => {});
}
