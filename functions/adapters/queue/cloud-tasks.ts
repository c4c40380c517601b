import { CloudTasksClient, type protos } from '@google-cloud/tasks';
import { CleanroomError } from '../../../protocol/errors.ts';
import type { QueuedTask, TaskQueue } from '../../core/ports.ts';

type CreateTaskRequest = protos.google.cloud.tasks.v2.ICreateTaskRequest;
type Task = protos.google.cloud.tasks.v2.ITask;

/** The one call this adapter makes; `CloudTasksClient` satisfies it, tests pass a fake. */
export interface CloudTasksCreateClient {
  createTask(request: CreateTaskRequest, options?: { timeout?: number }): Promise<[Task, ...unknown[]]>;
}

/** Where tasks go and under which identity Cloud Tasks delivers them. */
export interface CloudTasksQueueOptions {
  /** `projects/P/locations/L/queues/Q`; its `retryConfig` and rate limits live on the queue itself. */
  queuePath: string;
  /** The worker's task intake behind its load balancer (an external HTTPS URL). */
  url: string;
  /** The control plane's service account: Cloud Tasks mints the OIDC token the worker checks. */
  serviceAccountEmail: string;
  /** The token's audience; defaults to `url`, which is what the worker verifies against. */
  audience?: string;
  /** How long Cloud Tasks waits for the worker's answer: 15 to 1800 s (default 600). */
  dispatchDeadlineSeconds?: number;
  /** Deadline of the `createTask` call itself (default 10 s). */
  timeoutMs?: number;
  /** Defaults to a `CloudTasksClient` with application default credentials. */
  client?: CloudTasksCreateClient;
}

const QUEUE_PATH = /^projects\/[^/]+\/locations\/[^/]+\/queues\/[A-Za-z0-9-]{1,100}$/;
const TASK_NAME = /^[A-Za-z0-9_-]{1,500}$/;
// gRPC status codes, as the SDK reports them on `error.code`.
const ALREADY_EXISTS = 6;
const TRANSIENT = new Set([4 /* DEADLINE_EXCEEDED */, 8 /* RESOURCE_EXHAUSTED */, 10 /* ABORTED */, 13 /* INTERNAL */, 14 /* UNAVAILABLE */]);
const RETRY_AFTER_SECONDS = 5;

/**
 * Tasks as Cloud Tasks HTTP-target tasks: POST of the JWS to the worker with an OIDC token of
 * the control plane's service account. The task is named, so Cloud Tasks refuses the same name
 * (`ALREADY_EXISTS`, for about an hour after it ran), which is reported as `duplicate`.
 */
export class CloudTasksQueue implements TaskQueue {
  readonly #options: CloudTasksQueueOptions;
  readonly #client: CloudTasksCreateClient;

  constructor(options: CloudTasksQueueOptions) {
    if (!QUEUE_PATH.test(options.queuePath)) throw new TypeError('queuePath must be projects/P/locations/L/queues/Q');
    const deadline = options.dispatchDeadlineSeconds ?? 600;
    if (!Number.isInteger(deadline) || deadline < 15 || deadline > 1800) throw new TypeError('dispatchDeadlineSeconds must be 15 to 1800');
    this.#options = options;
    this.#client = options.client ?? new CloudTasksClient();
  }

  async enqueue(task: QueuedTask): Promise<'enqueued' | 'duplicate'> {
    if (!TASK_NAME.test(task.name)) throw new TypeError('task names use [A-Za-z0-9_-], at most 500 characters');
    const { queuePath, url, serviceAccountEmail } = this.#options;
    const request: CreateTaskRequest = {
      parent: queuePath,
      task: {
        name: `${queuePath}/tasks/${task.name}`,
        httpRequest: {
          httpMethod: 'POST',
          url,
          headers: { 'content-type': 'application/jose' },
          // A proto `bytes` field: the client takes base64 text (as Google's own samples do).
          body: Buffer.from(task.body, 'utf8').toString('base64'),
          oidcToken: { serviceAccountEmail, audience: this.#options.audience ?? url },
        },
        dispatchDeadline: { seconds: this.#options.dispatchDeadlineSeconds ?? 600 },
      },
    };
    try {
      await this.#client.createTask(request, { timeout: this.#options.timeoutMs ?? 10_000 });
      return 'enqueued';
    } catch (error) {
      if (grpcCode(error) === ALREADY_EXISTS) return 'duplicate';
      throw translateCloudTasksError(error);
    }
  }
}

/** Maps a Cloud Tasks failure to the queue's codes: an outage is retryable, the rest is a bug in config. */
export function translateCloudTasksError(error: unknown): CleanroomError {
  if (error instanceof CleanroomError) return error;
  const code = grpcCode(error);
  if (code !== undefined && TRANSIENT.has(code)) {
    return new CleanroomError('QUEUE_UNAVAILABLE', 'the task queue is unavailable', { cause: error, retryAfter: RETRY_AFTER_SECONDS });
  }
  return new CleanroomError('INTERNAL', 'the task queue refused the task', { cause: error });
}

function grpcCode(error: unknown): number | undefined {
  const code = typeof error === 'object' && error !== null && 'code' in error ? error.code : undefined;
  return typeof code === 'number' ? code : undefined;
}
