import { CleanroomError, ERROR_STATUS, isErrorCode } from '../../../protocol/errors.ts';
import { readCappedBytes, utf8OrUndefined } from '../../../runtime/read-body.ts';
import type { WorkerClient } from '../../core/ports.ts';

export interface HttpWorkerClientOptions {
  /** The worker's base URL (`TEE_SERVICE_ENDPOINT`); its load balancer in GCP. */
  url: string;
  /**
   * The control plane's bearer token for `audience`: locally a dev identity provider token for
   * the control plane's email (as the local queue pushes tasks with), in GCP a Google ID token of
   * its service account.
   */
  tokenSource: (audience: string) => Promise<string>;
  /** Deadline of one call, the token included (default 20 s: the worker may create the key first). */
  timeoutMs?: number;
  fetch?: typeof fetch;
}

/** The largest answer accepted: a bundle is a few kilobytes (two JWKs, a certificate, a token). */
const MAX_ANSWER_BYTES = 128 * 1024;
const RETRY_AFTER_SECONDS = 5;

/**
 * The worker's endpoints over HTTP, authenticated like task pushes: `Authorization: Bearer` with
 * the control plane's identity for the endpoint's URL as audience. Unreachable, timed out or 5xx
 * is `WORKER_UNAVAILABLE` (503, with the worker's `Retry-After` if it sent one). A 4xx carries the
 * worker's code when it is one of ours and a 4xx one, except a refusal of our own credentials
 * (401/403), which is a deployment fault the caller cannot fix: logged by the app as a 503.
 */
export class HttpWorkerClient implements WorkerClient {
  readonly #base: string;
  readonly #options: HttpWorkerClientOptions;

  constructor(options: HttpWorkerClientOptions) {
    this.#base = new URL(options.url).href.replace(/\/+$/, '');
    this.#options = options;
  }

  async sessionKey(jws: string): Promise<string> {
    const url = `${this.#base}/session-keys`;
    const signal = AbortSignal.timeout(this.#options.timeoutMs ?? 20_000);
    let response: Response;
    try {
      const token = await this.#options.tokenSource(url);
      response = await (this.#options.fetch ?? fetch)(url, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/jose', accept: 'application/json' },
        body: jws,
        signal,
        redirect: 'error',
      });
    } catch (cause) {
      throw unavailable('the worker is unreachable', cause);
    }
    let text: string | undefined;
    try {
      text = utf8OrUndefined(await readCappedBytes(response, MAX_ANSWER_BYTES));
    } catch (cause) {
      throw unavailable("the worker's answer could not be read", cause);
    }
    if (response.status === 200 && text !== undefined) return text;
    if (response.status >= 400 && response.status < 500) throw refusal(response.status, text, response.headers.get('retry-after'));
    throw unavailable(`the worker answered ${response.status}`, undefined, retryAfter(response.headers.get('retry-after')));
  }
}

/** The worker's refusal as our error: its code if known and a 4xx of ours, otherwise unavailable. */
function refusal(status: number, text: string | undefined, retryAfterHeader: string | null): CleanroomError {
  let code: unknown;
  try {
    code = (JSON.parse(text ?? '') as { error?: { code?: unknown } })?.error?.code;
  } catch {
    code = undefined;
  }
  if (isErrorCode(code) && ERROR_STATUS[code] >= 400 && ERROR_STATUS[code] < 500 && status !== 401 && status !== 403) {
    // The worker's message is not relayed: a fixed one names the code.
    return new CleanroomError(code, `the worker refused the request (${code})`, status === 429 ? { retryAfter: retryAfter(retryAfterHeader) } : undefined);
  }
  return unavailable(`the worker refused the control plane's request (${status})`);
}

function unavailable(message: string, cause?: unknown, after = RETRY_AFTER_SECONDS): CleanroomError {
  return new CleanroomError('WORKER_UNAVAILABLE', message, { retryAfter: after, ...(cause === undefined ? {} : { cause }) });
}

function retryAfter(header: string | null): number {
  const seconds = header !== null && /^\d{1,4}$/.test(header) ? Number(header) : RETRY_AFTER_SECONDS;
  return Math.max(1, Math.min(seconds, 3600));
}
