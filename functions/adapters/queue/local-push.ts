import type { ClaimedTask } from './local-table.ts';

/** What one push got back: an HTTP status (0 when nothing answered) and its `Retry-After`. */
export interface PushResult {
  status: number;
  retryAfter: string | null;
}

/** Where and how one dispatch goes. */
export interface PushOptions {
  url: string;
  queueName: string;
  tokenSource: () => Promise<string>;
  /** Aborted at the dispatch deadline or when the queue stops. */
  signal: AbortSignal;
  fetch?: typeof fetch;
}

/**
 * One dispatch of a task, as Cloud Tasks makes it: POST of the body with the OIDC bearer token
 * and Cloud Tasks' request headers. Never throws: a refused, reset or aborted request is status 0.
 */
export async function pushTask(task: ClaimedTask, options: PushOptions): Promise<PushResult> {
  try {
    // The token source has no signal of its own; the deadline must still bound it.
    const token = await untilAborted(options.tokenSource(), options.signal);
    const response = await (options.fetch ?? fetch)(options.url, {
      method: 'POST',
      headers: cloudTasksHeaders(task, options.queueName, token),
      body: task.body,
      signal: options.signal,
      redirect: 'manual',
    });
    // The whole answer counts: a worker that stalls mid-body has not answered.
    await response.arrayBuffer();
    return { status: response.status, retryAfter: response.headers.get('retry-after') };
  } catch {
    return { status: 0, retryAfter: null };
  }
}

/** The headers Cloud Tasks sends with an HTTP-target task (its names, its meanings). */
export function cloudTasksHeaders(task: ClaimedTask, queueName: string, token: string): Record<string, string> {
  const headers: Record<string, string> = {
    authorization: `Bearer ${token}`,
    'content-type': 'application/jose',
    'user-agent': 'Google-Cloud-Tasks',
    'x-cloudtasks-queuename': queueName,
    'x-cloudtasks-taskname': task.name,
    // Dispatches before this one, and answers below 500 among them.
    'x-cloudtasks-taskretrycount': String(task.attempts - 1),
    'x-cloudtasks-taskexecutioncount': String(task.responses),
    'x-cloudtasks-tasketa': (task.scheduledAt / 1000).toFixed(6),
  };
  if (task.lastStatus !== null && task.lastStatus > 0) headers['x-cloudtasks-taskpreviousresponse'] = String(task.lastStatus);
  return headers;
}

function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}
